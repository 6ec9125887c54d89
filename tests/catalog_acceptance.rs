//! The acceptance criteria for the catalog and its built-ins, run
//! through the public API the invoke pipeline and the HTTP layer use.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jecp_hub::catalog::{
    Action, Catalog, CatalogOverrides, DeprecationOverride, ListQuery, Resolution,
};
use serde_json::{Value, json};

fn catalog_with(overrides: &CatalogOverrides) -> Catalog {
    Catalog::builtin("hub", "https://hub.example", overrides).unwrap()
}

fn action<'a>(catalog: &'a Catalog, capability: &str, name: &str) -> &'a Action {
    match catalog.resolve(capability) {
        Resolution::Found(found) => found.action(name).unwrap(),
        other => panic!("{capability}: {other:?}"),
    }
}

/// Validate, run, validate the output: what the pipeline does.
fn invoke(action: &Action, input: &Value) -> Value {
    action
        .validate_input(input)
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let output = action.run(input).unwrap();
    action
        .validate_output(&output)
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    output
}

fn pdf_text(output: &Value) -> String {
    let bytes = STANDARD.decode(output["pdf"].as_str().unwrap()).unwrap();
    assert_eq!(bytes.len() as u64, output["size_bytes"].as_u64().unwrap());
    let document = lopdf::Document::load_mem(&bytes).expect("lopdf opens the invoice");
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    assert_eq!(
        pages.len() as u64,
        output["metadata"]["pages"].as_u64().unwrap()
    );
    document.extract_text(&pages).unwrap()
}

#[test]
fn invoice_pdf_opens_and_shows_an_exact_total() {
    let catalog = catalog_with(&CatalogOverrides::default());
    let invoice = action(&catalog, "hub/document-pipeline", "generate-invoice");
    let output = invoke(
        invoice,
        &json!({
            "client_name": "ACME Corp",
            "client_address": "1 Main St",
            "due_date": "2026-12-31",
            "items": [
                {"description": "Ten cents", "quantity": 1, "unit_price": 0.1},
                {"description": "Twenty cents", "quantity": 1, "unit_price": 0.2}
            ]
        }),
    );
    assert_eq!(output["metadata"]["subtotal"], "0.30");
    assert_eq!(output["metadata"]["tax"], "0.00");
    assert_eq!(output["metadata"]["total"], "0.30");
    assert_eq!(output["metadata"]["total_minor"], 30);
    let text = pdf_text(&output);
    assert!(text.contains("INVOICE"), "{text}");
    assert!(text.contains("ACME Corp"), "{text}");
    assert!(text.contains("Total due"), "{text}");
    assert!(text.contains("USD 0.30"), "{text}");
    assert!(!text.contains("0.30000000000000004"), "{text}");
}

#[test]
fn invoice_totals_with_tax_and_many_lines_stay_exact() {
    let catalog = catalog_with(&CatalogOverrides::default());
    let invoice = action(&catalog, "document-pipeline", "generate-invoice");
    // 100 lines of 0.1 plus 100 of 0.2 at 10%: 30.00 + 3.00.
    let items: Vec<Value> = (0..200)
        .map(|index| {
            let price = if index % 2 == 0 { 0.1 } else { 0.2 };
            json!({"description": format!("line {index}"), "quantity": 1, "unit_price": price, "tax_rate": 10})
        })
        .collect();
    let output = invoke(
        invoice,
        &json!({"client_name": "A", "due_date": "2027-01-01", "items": items}),
    );
    assert_eq!(output["metadata"]["subtotal"], "30.00");
    assert_eq!(output["metadata"]["tax"], "3.00");
    assert_eq!(output["metadata"]["total"], "33.00");
    assert!(pdf_text(&output).contains("USD 33.00"));
}

#[test]
fn forecast_continues_a_noiseless_line_and_intervals_widen() {
    let catalog = catalog_with(&CatalogOverrides::default());
    let forecast = action(&catalog, "data-insight", "forecast");
    let series: Vec<f64> = (0..100).map(|t| -20.0 + 0.75 * t as f64).collect();
    let output = invoke(forecast, &json!({"series": series, "periods": 50}));
    for point in output["forecast"].as_array().unwrap() {
        let step = point["step"].as_f64().unwrap();
        let expected = -20.0 + 0.75 * (99.0 + step);
        assert!(
            (point["value"].as_f64().unwrap() - expected).abs() < 1e-6,
            "{point}"
        );
    }

    let noisy: Vec<f64> = (0..80)
        .map(|t| 50.0 + 2.0 * t as f64 + [3.0, -1.0, 4.0, -1.5, -4.5][t % 5])
        .collect();
    let output = invoke(
        forecast,
        &json!({"series": noisy, "periods": 24, "confidence": 0.9}),
    );
    let widths: Vec<f64> = output["forecast"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point["upper"].as_f64().unwrap() - point["lower"].as_f64().unwrap())
        .collect();
    assert!(widths[0] > 0.0);
    assert!(
        widths.windows(2).all(|pair| pair[1] > pair[0]),
        "{widths:?}"
    );
}

#[test]
fn analyze_csv_reports_per_column_statistics() {
    let catalog = catalog_with(&CatalogOverrides::default());
    let analyze = action(&catalog, "data-insight", "analyze-csv");
    let output = invoke(analyze, &json!({"csv": "x,y\n1,10\n2,\n3,30\n4,40\n"}));
    let x = &output["columns"][0];
    assert_eq!(x["mean"], 2.5);
    assert_eq!(
        x["quantiles"],
        json!([{"p": 0.25, "value": 1.75}, {"p": 0.5, "value": 2.5}, {"p": 0.75, "value": 3.25}])
    );
    let y = &output["columns"][1];
    assert_eq!(y["nulls"], 1);
    assert_eq!(y["count"], 3);
}

/// Walks the catalog page by page the way the SDK's `catalogPages` does.
fn walk(catalog: &Catalog, page_size: &str, filters: ListQuery) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let query = ListQuery {
            page_size: Some(page_size.to_owned()),
            cursor: cursor.clone(),
            ..filters.clone()
        };
        let page = catalog.list(&query).unwrap();
        for capability in page["capabilities"].as_array().unwrap() {
            seen.push(capability["id"].as_str().unwrap().to_owned());
        }
        if !page["has_more"].as_bool().unwrap() || page["next_cursor"].is_null() {
            assert!(page["next_cursor"].is_null());
            return seen;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    panic!("the walk did not end");
}

#[test]
fn walking_with_page_size_one_visits_every_capability_once() {
    let catalog = catalog_with(&CatalogOverrides::default());
    let seen = walk(&catalog, "1", ListQuery::default());
    let all: Vec<String> = catalog
        .capabilities()
        .iter()
        .map(|capability| capability.id.clone())
        .collect();
    assert_eq!(seen, all);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    // Stable under filters: a filtered walk visits exactly the matches.
    let statistics_only = walk(
        &catalog,
        "1",
        ListQuery {
            tags: Some("statistics".into()),
            ..ListQuery::default()
        },
    );
    assert_eq!(statistics_only, ["hub/data-insight"]);
    let two_at_a_time = walk(&catalog, "2", ListQuery::default());
    assert_eq!(two_at_a_time, all);
}

#[test]
fn a_changed_catalog_changes_the_etag() {
    let base = catalog_with(&CatalogOverrides::default());
    let same = catalog_with(&CatalogOverrides::default());
    assert_eq!(base.etag(), same.etag());
    assert!(
        base.etag().starts_with('"')
            && base.etag().ends_with('"')
            && !base.etag().starts_with("W/")
    );
    assert!(base.not_modified(base.etag()));

    let repriced = catalog_with(&CatalogOverrides {
        prices: BTreeMap::from([("utility/echo".to_owned(), "$0.002".to_owned())]),
        ..CatalogOverrides::default()
    });
    let disabled = catalog_with(&CatalogOverrides {
        disabled: vec!["data-insight".into()],
        ..CatalogOverrides::default()
    });
    let deprecated = catalog_with(&CatalogOverrides {
        deprecations: BTreeMap::from([(
            "hub/utility".to_owned(),
            DeprecationOverride {
                sunset_at: "2027-01-01T00:00:00Z".into(),
                successor_version: Some("2.0.0".into()),
            },
        )]),
        ..CatalogOverrides::default()
    });
    let moved =
        Catalog::builtin("hub", "https://other.example", &CatalogOverrides::default()).unwrap();
    let etags: BTreeSet<&str> = [
        base.etag(),
        repriced.etag(),
        disabled.etag(),
        deprecated.etag(),
        moved.etag(),
    ]
    .into();
    assert_eq!(etags.len(), 5, "every change must change the ETag");
    assert!(!repriced.not_modified(base.etag()));
}

#[test]
fn overrides_reprice_disable_and_deprecate() {
    let catalog = catalog_with(&CatalogOverrides {
        disabled: vec!["hub/data-insight".into()],
        prices: BTreeMap::from([("hub/utility/hash".to_owned(), "0.0025".to_owned())]),
        deprecations: BTreeMap::from([(
            "document-pipeline".to_owned(),
            DeprecationOverride {
                sunset_at: "2020-01-01T00:00:00Z".into(),
                successor_version: None,
            },
        )]),
    });
    assert_eq!(catalog.resolve("data-insight"), Resolution::NotFound);
    assert!(catalog.detail("data-insight").is_none());
    assert_eq!(
        catalog.guide_entries(),
        json!(["hub/document-pipeline", "hub/utility"])
    );
    let hash = action(&catalog, "utility", "hash");
    assert_eq!(hash.price.get(), 2_500);
    let listing = catalog.list(&ListQuery::default()).unwrap();
    let utility = &listing["capabilities"][1];
    assert_eq!(utility["actions"][1]["price_usdc"], json!(0.0025));
    assert_eq!(utility["actions"][1]["pricing"]["base"], "$0.0025");
    let document = match catalog.resolve("document-pipeline") {
        Resolution::Found(capability) => capability,
        other => panic!("{other:?}"),
    };
    let deprecation = document.deprecation.as_ref().unwrap();
    assert!(deprecation.is_sunset(time::OffsetDateTime::now_utc()));
    assert_eq!(deprecation.sunset_at_rfc3339(), "2020-01-01T00:00:00Z");
    let detail = catalog.detail("hub/document-pipeline").unwrap();
    assert_eq!(detail["deprecation"]["sunset_at"], "2020-01-01T00:00:00Z");
    assert_eq!(detail["deprecation"]["successor_version"], Value::Null);
    assert!(
        catalog
            .llms_lines()
            .contains("Deprecated; sunset 2020-01-01T00:00:00Z")
    );
}

#[test]
fn bad_overrides_are_refused_by_name() {
    let refuse = |overrides: CatalogOverrides, needle: &str| {
        let error = Catalog::builtin("hub", "https://hub.example", &overrides).unwrap_err();
        assert!(error.contains(needle), "{error} does not mention {needle}");
    };
    refuse(
        CatalogOverrides {
            disabled: vec!["nope".into()],
            ..Default::default()
        },
        "nope",
    );
    refuse(
        CatalogOverrides {
            disabled: vec!["other/utility".into()],
            ..Default::default()
        },
        "other/utility",
    );
    let price = |key: &str, value: &str| CatalogOverrides {
        prices: BTreeMap::from([(key.to_owned(), value.to_owned())]),
        ..Default::default()
    };
    refuse(price("utility/nope", "$1"), "utility/nope");
    refuse(price("nope/echo", "$1"), "nope/echo");
    refuse(price("echo", "$1"), "\"echo\"");
    refuse(price("utility/echo", "cheap"), "utility/echo");
    refuse(price("utility/echo", "$0.0000001"), "utility/echo");
    refuse(price("utility/echo", "$0"), "utility/echo");
    let deprecation = |sunset_at: &str, successor: Option<&str>| CatalogOverrides {
        deprecations: BTreeMap::from([(
            "utility".to_owned(),
            DeprecationOverride {
                sunset_at: sunset_at.into(),
                successor_version: successor.map(str::to_owned),
            },
        )]),
        ..Default::default()
    };
    refuse(deprecation("tomorrow", None), "deprecations.\"utility\"");
    refuse(
        deprecation("2027-01-01T00:00:00Z", Some("two")),
        "successor_version",
    );
    refuse(
        deprecation("2027-01-01T00:00:00Z", Some("1.0.0")),
        "not above",
    );
    refuse(
        deprecation("2027-01-01T00:00:00Z", Some("0.9.0")),
        "not above",
    );
    refuse(
        deprecation("2027-01-01T00:00:00Z", Some("2.0.0-beta")),
        "successor_version",
    );
    assert!(
        Catalog::builtin(
            "hub",
            "https://hub.example",
            &deprecation("2027-01-01T00:00:00Z", Some("1.0.1"))
        )
        .is_ok()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Integer cents in, integer cents out: the total is the exact sum of
    /// quantity × price plus per-rate tax rounded half-up once.
    #[test]
    fn invoice_totals_equal_integer_arithmetic(
        lines in proptest::collection::vec((1u64..1_000, 0u64..10_000_000, 0u64..=2), 1..40)
    ) {
        let catalog = catalog_with(&CatalogOverrides::default());
        let invoice = action(&catalog, "document-pipeline", "generate-invoice");
        let rates = [0u64, 7, 19];
        let items: Vec<Value> = lines
            .iter()
            .map(|(quantity, cents, rate)| json!({
                "description": "x",
                "quantity": quantity,
                "unit_price": format!("{}.{:02}", cents / 100, cents % 100),
                "tax_rate": rates[*rate as usize],
            }))
            .collect();
        let output = invoke(invoice, &json!({"client_name": "A", "due_date": "2027-01-01", "items": items}));
        let mut taxable = [0u64; 3];
        for (quantity, cents, rate) in &lines {
            taxable[*rate as usize] += quantity * cents;
        }
        let subtotal: u64 = taxable.iter().sum();
        let tax: u64 = taxable.iter().zip(rates).map(|(net, rate)| (net * rate + 50) / 100).sum();
        proptest::prop_assert_eq!(output["metadata"]["subtotal_minor"].as_u64(), Some(subtotal));
        proptest::prop_assert_eq!(output["metadata"]["tax_minor"].as_u64(), Some(tax));
        proptest::prop_assert_eq!(output["metadata"]["total_minor"].as_u64(), Some(subtotal + tax));
        proptest::prop_assert_eq!(
            output["metadata"]["total"].as_str().map(str::to_owned),
            Some(format!("{}.{:02}", (subtotal + tax) / 100, (subtotal + tax) % 100))
        );
    }
}
