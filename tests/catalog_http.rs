//! The catalog over HTTP (issue 6): listing with the SDK's query parameters,
//! a page walk, detail by plain and qualified id, ETag/304, cache headers, and
//! the live catalog in the discovery documents.

mod common;

use std::collections::HashSet;

use common::TestHub;
use serde_json::json;

#[tokio::test]
async fn listing_walk_detail_and_conditional_get() {
    let hub = TestHub::start(|_| {}).await;
    // The SDK sends Content-Type: application/json even on GETs (CLIENT-COMPAT §0).
    let json_header = [("content-type", "application/json")];
    let all = hub
        .get("/v1/capabilities?paginated=false", &json_header)
        .await;
    assert_eq!(all.status, 200, "{}", String::from_utf8_lossy(&all.body));
    assert_eq!(
        all.header("cache-control").as_deref(),
        Some("public, max-age=300, s-maxage=600")
    );
    assert_eq!(
        all.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let etag = all.header("etag").expect("listing has an ETag");
    let listing = all.json();
    let total = listing["total"].as_u64().unwrap() as usize;
    assert_eq!(listing["capabilities"].as_array().unwrap().len(), total);
    assert!(total >= 3);
    let echo = listing["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|capability| capability["id"] == "hub/utility")
        .expect("utility is listed");
    let echo_action = echo["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|action| action["name"] == "echo")
        .unwrap();
    assert_eq!(echo_action["price_usdc"], json!(0.001));
    assert!(echo_action["input_schema"].is_object() && echo_action["output_schema"].is_object());
    assert!(echo_action["payment_methods"].is_array());

    // Walk with page_size=1: every capability exactly once.
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..=total {
        let path = match &cursor {
            Some(cursor) => format!("/v1/capabilities?page_size=1&cursor={cursor}"),
            None => "/v1/capabilities?page_size=1".to_owned(),
        };
        let page = hub.get(&path, &json_header).await.json();
        for capability in page["capabilities"].as_array().unwrap() {
            assert!(
                seen.insert(capability["id"].as_str().unwrap().to_owned()),
                "visited twice"
            );
        }
        if page["has_more"] != true {
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), total);

    // Conditional GET.
    let not_modified = hub
        .get(
            "/v1/capabilities?paginated=false",
            &[("if-none-match", etag.as_str())],
        )
        .await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    // Detail by plain and qualified id (the qualified one arrives with a `/` or `%2F`).
    for path in [
        "/v1/capabilities/utility",
        "/v1/capabilities/hub/utility",
        "/v1/capabilities/hub%2Futility",
    ] {
        let detail = hub.get(path, &json_header).await;
        assert_eq!(detail.status, 200, "{path}");
        let detail = detail.json();
        assert_eq!(detail["id"], "hub/utility");
        assert!(detail["actions"][0]["examples"].is_array());
    }
    let missing = hub.get("/v1/capabilities/nope", &json_header).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "CAPABILITY_NOT_FOUND");
    let bad = hub.get("/v1/capabilities?page_size=0", &json_header).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "VALIDATION_FAILED");

    // Filters the SDK sends.
    let filtered = hub
        .get(
            "/v1/capabilities?namespace=hub&tier=bronze&page_size=200",
            &json_header,
        )
        .await
        .json();
    assert!(
        filtered["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|capability| capability["id"] == "hub/utility")
    );
}

#[tokio::test]
async fn discovery_documents_list_the_live_catalog_and_a_changed_catalog_changes_the_etag() {
    let plain = TestHub::start(|_| {}).await;
    let guide = plain.get("/.well-known/agent-guide.json", &[]).await.json();
    let supported: Vec<String> = guide["supported_capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert!(
        supported.contains(&"hub/utility".to_owned()),
        "{supported:?}"
    );
    assert!(supported.contains(&"hub/document-pipeline".to_owned()));
    let llms = plain.get("/llms.txt", &[]).await;
    let text = String::from_utf8_lossy(&llms.body).into_owned();
    assert!(text.contains("hub/utility"), "{text}");
    assert!(llms.body.len() <= 50 * 1024);
    let first_etag = plain.get("/v1/capabilities", &[]).await.header("etag");

    let repriced = TestHub::start(|config| {
        let mut prices = toml::Table::new();
        prices.insert("utility/echo".into(), "$0.002".into());
        let mut catalog = toml::Table::new();
        catalog.insert("prices".into(), prices.into());
        config.catalog = catalog;
    })
    .await;
    let listing = repriced.get("/v1/capabilities/hub/utility", &[]).await;
    let echo = listing.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|action| action["name"] == "echo")
        .cloned()
        .unwrap();
    assert_eq!(echo["price_usdc"], json!(0.002));
    assert_ne!(
        repriced.get("/v1/capabilities", &[]).await.header("etag"),
        first_etag
    );
}
