//! `GET /v1/capabilities` and `GET /v1/capabilities/{id}` bodies: the fields
//! spec 05 §6–§7 and the SDK (CLIENT-COMPAT A6/A7) read, filters, and the
//! 400s for bad query values.

use jecp_hub::catalog::{CACHE_CONTROL, Catalog, CatalogOverrides, ListQuery};
use jecp_hub::protocol::ErrorCode;
use serde_json::{Value, json};

fn catalog() -> Catalog {
    Catalog::builtin("hub", "https://hub.example", &CatalogOverrides::default()).unwrap()
}

fn ids(page: &Value) -> Vec<&str> {
    page["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|capability| capability["id"].as_str().unwrap())
        .collect()
}

#[test]
fn listing_has_the_spec_and_sdk_fields() {
    let page = catalog().list(&ListQuery::default()).unwrap();
    assert_eq!(page["jecp"], "1.0");
    assert_eq!(page["engine"], "jecp-hub");
    assert_eq!(page["third_party_capabilities"], json!([]));
    assert_eq!(page["third_party_count"], 0);
    assert_eq!(page["total"], 3);
    assert_eq!(page["page_size"], 50);
    assert_eq!(page["paginated"], true);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["has_more"], false);
    assert_eq!(
        ids(&page),
        ["hub/data-insight", "hub/document-pipeline", "hub/utility"]
    );

    let utility = &page["capabilities"][2];
    assert_eq!(utility["namespace"], "hub");
    assert_eq!(utility["provider"], "hub");
    assert_eq!(utility["name"], "utility");
    assert_eq!(utility["version"], "1.0.0");
    assert_eq!(utility["trust_tier_required"], "bronze");
    assert_eq!(utility["deprecation"], Value::Null);
    assert!(
        utility["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("benchmark"))
    );
    let echo = &utility["actions"][0];
    assert_eq!(echo["name"], "echo");
    // Exact JSON number: the serialized text is the decimal, not a float artefact.
    assert_eq!(serde_json::to_string(&echo["price_usdc"]).unwrap(), "0.001");
    assert_eq!(
        echo["pricing"],
        json!({"base": "$0.001", "currency": "USDC", "model": "per_call", "amount_usd": 0.001})
    );
    assert_eq!(echo["payment_methods"], json!(["stripe"]));
    assert_eq!(echo["trust_tier_required"], "bronze");
    assert!(echo["input_schema"].is_object());
    assert!(echo["output_schema"].is_object());
    assert_eq!(echo["side_effects"]["external_api_call"], false);
    assert!(
        echo.get("examples").is_none(),
        "examples belong to the detail view"
    );

    let prices: Vec<(String, String)> = page["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|capability| capability["actions"].as_array().unwrap().iter())
        .map(|action| {
            (
                action["name"].as_str().unwrap().to_owned(),
                serde_json::to_string(&action["price_usdc"]).unwrap(),
            )
        })
        .collect();
    for (name, price) in [
        ("echo", "0.001"),
        ("generate-invoice", "0.005"),
        ("generate-receipt", "0.003"),
        ("analyze-csv", "0.01"),
        ("forecast", "0.02"),
    ] {
        assert!(
            prices.contains(&(name.to_owned(), price.to_owned())),
            "{name} {price} in {prices:?}"
        );
    }
    assert_eq!(CACHE_CONTROL, "public, max-age=300, s-maxage=600");
}

#[test]
fn detail_accepts_plain_and_namespaced_ids_and_carries_examples() {
    let catalog = catalog();
    let plain = catalog.detail("document-pipeline").unwrap();
    let namespaced = catalog.detail("hub/document-pipeline").unwrap();
    assert_eq!(plain, namespaced);
    assert_eq!(plain["id"], "hub/document-pipeline");
    assert_eq!(plain["deprecation"], Value::Null);
    assert_eq!(plain["manifest_url"], Value::Null);
    assert_eq!(plain["trust_tier_required"], "silver");
    for action in plain["actions"].as_array().unwrap() {
        assert!(!action["examples"].as_array().unwrap().is_empty());
    }
    assert!(catalog.detail("acme/document-pipeline").is_none());
    assert!(catalog.detail("nothing").is_none());
}

#[test]
fn filters_by_namespace_tier_and_tags() {
    let catalog = catalog();
    let list = |query: ListQuery| catalog.list(&query).unwrap();
    assert_eq!(
        list(ListQuery {
            namespace: Some("hub".into()),
            ..Default::default()
        })["total"],
        3
    );
    assert_eq!(
        list(ListQuery {
            provider: Some("hub".into()),
            ..Default::default()
        })["total"],
        3
    );
    assert_eq!(
        list(ListQuery {
            namespace: Some("acme".into()),
            ..Default::default()
        })["total"],
        0
    );
    assert_eq!(
        ids(&list(ListQuery {
            tier: Some("bronze".into()),
            ..Default::default()
        })),
        ["hub/utility"]
    );
    assert_eq!(
        list(ListQuery {
            tier: Some("platinum".into()),
            ..Default::default()
        })["total"],
        3
    );
    // The SDK joins tags with commas; every listed tag must match.
    assert_eq!(
        ids(&list(ListQuery {
            tags: Some("pdf".into()),
            ..Default::default()
        })),
        ["hub/document-pipeline"]
    );
    assert_eq!(
        ids(&list(ListQuery {
            tags: Some("PDF,invoice".into()),
            ..Default::default()
        })),
        ["hub/document-pipeline"]
    );
    assert_eq!(
        list(ListQuery {
            tags: Some("pdf,csv".into()),
            ..Default::default()
        })["total"],
        0
    );
    // The total counts every match, not just the page; a silver agent can
    // use the bronze capability too.
    let first = list(ListQuery {
        page_size: Some("1".into()),
        tier: Some("silver".into()),
        ..Default::default()
    });
    assert_eq!(first["total"], 3);
    assert_eq!(first["has_more"], true);
    assert!(first["next_cursor"].is_string());
}

#[test]
fn paginated_false_returns_everything() {
    let page = catalog()
        .list(&ListQuery {
            paginated: Some("false".into()),
            page_size: Some("1".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page["paginated"], false);
    assert_eq!(page["capabilities"].as_array().unwrap().len(), 3);
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[test]
fn limit_is_an_alias_of_page_size() {
    let page = catalog()
        .list(&ListQuery {
            limit: Some("2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page["page_size"], 2);
    assert_eq!(page["capabilities"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_query_values_are_400_validation_failed() {
    let catalog = catalog();
    let cases: Vec<(ListQuery, &str)> = vec![
        (
            ListQuery {
                page_size: Some("0".into()),
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListQuery {
                page_size: Some("201".into()),
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListQuery {
                page_size: Some("1.5".into()),
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListQuery {
                limit: Some("abc".into()),
                ..Default::default()
            },
            "limit",
        ),
        (
            ListQuery {
                cursor: Some("%%%".into()),
                ..Default::default()
            },
            "cursor",
        ),
        (
            ListQuery {
                cursor: Some("aGVsbG8".into()),
                ..Default::default()
            },
            "cursor",
        ),
        (
            ListQuery {
                tier: Some("gold-ish".into()),
                ..Default::default()
            },
            "tier",
        ),
        (
            ListQuery {
                paginated: Some("nope".into()),
                ..Default::default()
            },
            "paginated",
        ),
        (
            ListQuery {
                tags: Some("a,b,c,d,e,f,g,h,i,j".into()),
                ..Default::default()
            },
            "tags",
        ),
        (
            ListQuery {
                namespace: Some("hub".into()),
                provider: Some("acme".into()),
                ..Default::default()
            },
            "namespace",
        ),
    ];
    for (query, parameter) in cases {
        let error = catalog.list(&query).unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed, "{query:?}");
        assert_eq!(error.http_status(), 400);
        assert_eq!(error.details["parameter"], parameter, "{query:?}");
    }
}

#[test]
fn a_cursor_past_the_end_gives_an_empty_last_page() {
    let catalog = catalog();
    let first = catalog
        .list(&ListQuery {
            page_size: Some("3".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first["has_more"], false);
    let last_id = first["capabilities"][2]["id"].as_str().unwrap();
    // A cursor minted by the previous page of a bigger catalog still works.
    let bigger =
        Catalog::builtin("hub", "https://hub.example", &CatalogOverrides::default()).unwrap();
    let page_of_two = bigger
        .list(&ListQuery {
            page_size: Some("2".into()),
            ..Default::default()
        })
        .unwrap();
    let cursor = page_of_two["next_cursor"].as_str().unwrap().to_owned();
    let smaller = Catalog::builtin(
        "hub",
        "https://hub.example",
        &CatalogOverrides {
            disabled: vec!["utility".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let rest = smaller
        .list(&ListQuery {
            cursor: Some(cursor),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rest["capabilities"], json!([]));
    assert_eq!(rest["has_more"], false);
    assert_eq!(last_id, "hub/utility");
}
