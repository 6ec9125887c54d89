//! Every action's examples validate against its own schemas, and every
//! handler really produces what its examples promise (iterating the live
//! registry, so a new action is covered without touching this file).

use jecp_hub::catalog::{Catalog, CatalogOverrides, HandlerError};
use serde_json::{Value, json};

fn catalog() -> Catalog {
    Catalog::builtin("hub", "https://hub.example", &CatalogOverrides::default()).unwrap()
}

/// The PDF built-ins abbreviate `pdf`/`size_bytes` in their examples; every
/// other field must match exactly.
fn comparable(output: &Value) -> Value {
    let mut output = output.clone();
    if let Some(object) = output.as_object_mut()
        && object.get("content_type") == Some(&json!("application/pdf"))
    {
        object.remove("pdf");
        object.remove("size_bytes");
    }
    output
}

#[test]
fn every_example_validates_against_its_own_schemas() {
    let catalog = catalog();
    let mut checked = 0;
    for capability in catalog.capabilities() {
        assert!(
            !capability.actions.is_empty(),
            "{} has no actions",
            capability.id
        );
        for action in &capability.actions {
            assert!(
                !action.examples.is_empty(),
                "{}/{} has no example",
                capability.id,
                action.name
            );
            for example in &action.examples {
                assert_eq!(
                    action.validate_input(&example.input),
                    Ok(()),
                    "{}/{} input",
                    capability.id,
                    action.name
                );
                assert_eq!(
                    action.validate_output(&example.output),
                    Ok(()),
                    "{}/{} output",
                    capability.id,
                    action.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} examples");
}

#[test]
fn every_handler_produces_its_examples_and_valid_output() {
    let catalog = catalog();
    for capability in catalog.capabilities() {
        for action in &capability.actions {
            for example in &action.examples {
                let output = action.run(&example.input).unwrap_or_else(|error| {
                    panic!(
                        "{}/{} failed on its example: {error}",
                        capability.id, action.name
                    )
                });
                assert_eq!(
                    action.validate_output(&output),
                    Ok(()),
                    "{}/{} real output",
                    capability.id,
                    action.name
                );
                assert_eq!(
                    comparable(&output),
                    comparable(&example.output),
                    "{}/{}",
                    capability.id,
                    action.name
                );
            }
        }
    }
}

#[test]
fn schema_violations_are_reported_with_pointers() {
    let catalog = catalog();
    let document = match catalog.resolve("hub/document-pipeline") {
        jecp_hub::catalog::Resolution::Found(capability) => capability,
        other => panic!("{other:?}"),
    };
    let invoice = document.action("generate-invoice").unwrap();
    // The conformance case: client_name only, then a wrong type and no items.
    let errors = invoice
        .validate_input(&json!({"client_name": "ACME"}))
        .unwrap_err();
    assert!(
        errors.iter().any(|error| error.schema_path == "/required"),
        "{errors:?}"
    );
    let errors = invoice
        .validate_input(&json!({"client_name": 42, "items": [], "due_date": "2026-01-01"}))
        .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|error| error.instance_path == "/client_name"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error.instance_path == "/items"),
        "{errors:?}"
    );
    for error in &errors {
        assert!(error.to_json()["reason"].is_string());
    }
    // Formats are asserted: an impossible date fails the schema.
    let errors = invoice
        .validate_input(&json!({"client_name": "A", "due_date": "2026-13-01",
                                "items": [{"description": "x", "quantity": 1, "unit_price": 1}]}))
        .unwrap_err();
    assert_eq!(errors[0].instance_path, "/due_date");
}

#[test]
fn echo_takes_any_json_within_its_size_cap() {
    let catalog = catalog();
    let utility = match catalog.resolve("utility") {
        jecp_hub::catalog::Resolution::Found(capability) => capability,
        other => panic!("{other:?}"),
    };
    let echo = utility.action("echo").unwrap();
    assert!(!echo.is_heavy());
    for value in [
        json!(null),
        json!(7),
        json!("text"),
        json!([1, 2]),
        json!({"a": {"b": [true]}}),
    ] {
        assert_eq!(echo.validate_input(&value), Ok(()));
        assert_eq!(echo.run(&value).unwrap(), value);
    }
    let too_big = json!("x".repeat(64 * 1024));
    let errors = echo.validate_input(&too_big).unwrap_err();
    assert_eq!(errors[0].schema_path, "/x-max-input-bytes");
}

#[test]
fn heavy_handlers_are_flagged_and_limits_hold_past_the_schema() {
    let catalog = catalog();
    for capability in catalog.capabilities() {
        for action in &capability.actions {
            let expected_heavy = matches!(
                action.name.as_str(),
                "generate-invoice" | "generate-receipt" | "analyze-csv" | "forecast"
            );
            assert_eq!(action.is_heavy(), expected_heavy, "{}", action.name);
            // Handlers never panic on input that skipped validation.
            for junk in [
                json!(null),
                json!([]),
                json!("x"),
                json!({"items": "nope", "series": 5, "csv": []}),
            ] {
                if action.name == "echo" {
                    continue;
                }
                assert!(
                    matches!(action.run(&junk), Err(HandlerError::InvalidInput(_))),
                    "{} on {junk}",
                    action.name
                );
            }
        }
    }
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| json!(number)),
        "\\PC{0,20}".prop_map(Value::from),
        // Field names and values the handlers look at, to get past the
        // first checks more often.
        prop_oneof![
            Just(json!("2026-01-01")),
            Just(json!("a,b\n1,2\n")),
            Just(json!("0.1")),
            Just(json!("USD"))
        ],
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("items".to_owned()),
                    Just("client_name".to_owned()),
                    Just("due_date".to_owned()),
                    Just("quantity".to_owned()),
                    Just("unit_price".to_owned()),
                    Just("tax_rate".to_owned()),
                    Just("description".to_owned()),
                    Just("csv".to_owned()),
                    Just("series".to_owned()),
                    Just("periods".to_owned()),
                    Just("text".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// No input, valid or not, makes validation or a handler panic; a
    /// handler's success always satisfies its output schema.
    #[test]
    fn handlers_never_panic_on_arbitrary_json(input in any_json()) {
        let catalog = catalog();
        for capability in catalog.capabilities() {
            for action in &capability.actions {
                let _ = action.validate_input(&input);
                if let Ok(output) = action.run(&input) {
                    proptest::prop_assert_eq!(action.validate_output(&output), Ok(()), "{}", action.name);
                }
            }
        }
    }
}
