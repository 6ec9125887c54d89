//! The invoke pipeline over real HTTP: the spec's wire conformance
//! assertions (`conformance/v1.0/JECP-WIRE-MUST-*`, adapted to this Hub's
//! registration and built-ins), billing, idempotency and concurrency.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::TestHub;
use jecp_hub::money::Micros;
use serde_json::{Value, json};

const ECHO_PRICE: Micros = match Micros::new(1_000) {
    Some(price) => price,
    None => panic!(),
};

/// No free calls and generous rate limits, so billing is what is measured.
async fn paid_hub() -> TestHub {
    TestHub::start(paid_config).await
}

fn paid_config(config: &mut jecp_hub::config::Config) {
    config.free_calls_per_agent = 0;
    config.tier_rpm.bronze = 100_000;
}

/// [`paid_hub`] whose idempotency table keeps no response body in memory, so
/// every replay is read back from the store.
async fn paid_hub_keeping_no_bodies() -> TestHub {
    let seams = jecp_hub::hub::HubSeams {
        idempotency_response_bytes_max: Some(0),
        ..Default::default()
    };
    TestHub::start_with(paid_config, seams).await
}

/// `utility/echo` of `{"text": text}` under request id `id`.
async fn echo(hub: &TestHub, agent: &(String, String), id: &str, text: &str) -> common::Response {
    hub.invoke(agent, id, "utility", "echo", json!({ "text": text }))
        .await
}

// JECP-WIRE-MUST-415
#[tokio::test]
async fn wire_415_on_non_json_media_types() {
    let hub = TestHub::start(|_| {}).await;
    for path in ["/v1/invoke", "/v1/jecp"] {
        let response = hub
            .post(path, &[("content-type", "text/plain")], "garbage-not-json")
            .await;
        assert_eq!(response.status, 415);
        assert!(
            response
                .header("content-type")
                .unwrap()
                .contains("application/json")
        );
        let body = response.json();
        assert_eq!(body["jecp"], "1.0");
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(body["error"]["details"]["received"], "text/plain");
        assert_eq!(body["error"]["details"]["expected"], "application/json");
        assert!(
            body["error"]["details"]["documentation_url"]
                .as_str()
                .unwrap()
                .contains("/errors/unsupported_media_type")
        );
    }
    let xml = hub
        .post("/v1/jecp", &[("content-type", "application/xml")], "<x/>")
        .await;
    assert_eq!(xml.status, 415);
    // Negative cases: a missing Content-Type and a charset parameter are not 415.
    assert_ne!(hub.post("/v1/invoke", &[], "{}").await.status, 415);
    let charset = hub
        .post(
            "/v1/invoke",
            &[("content-type", "application/json; charset=utf-8")],
            "{}",
        )
        .await;
    assert_ne!(charset.status, 415);
}

// JECP-WIRE-MUST-409-DUP-DIFFERENT-INPUT and -409-DUP-IDEMPOTENT-NO-CONFLICT
#[tokio::test]
async fn wire_409_only_for_a_different_request_under_the_same_id() {
    let hub = paid_hub().await;
    let agent = hub.register("dup-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let first = hub
        .invoke(
            &agent,
            "conformance-409-1",
            "utility",
            "echo",
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );

    let same = hub
        .invoke(
            &agent,
            "conformance-409-1",
            "utility",
            "echo",
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(
        same.body, first.body,
        "an idempotent replay is byte for byte the first answer"
    );

    let altered = hub
        .invoke(
            &agent,
            "conformance-409-1",
            "utility",
            "echo",
            json!({"text": "ALTERED"}),
        )
        .await;
    assert_eq!(altered.status, 409);
    let body = altered.json();
    assert_eq!(body["jecp"], "1.0");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["code"], "DUPLICATE_REQUEST");
    assert!(
        body["error"]["details"]["documentation_url"]
            .as_str()
            .unwrap()
            .contains("/errors/duplicate_request")
    );

    // Exactly one charge happened.
    assert_eq!(
        hub.available(&agent.0),
        Micros::from_usdc(1).checked_sub(ECHO_PRICE).unwrap()
    );
    assert_eq!(hub.ledger_violations(), 0);
}

/// Response bodies beyond the memory bound are read back from the store:
/// the replay is still byte for byte, a different request still gets 409,
/// and nothing is charged twice.
#[tokio::test]
async fn replays_whose_body_left_memory_are_read_back_from_the_store() {
    // No body stays in memory: every replay reads the store.
    let hub = paid_hub_keeping_no_bodies().await;
    let agent = hub.register("bounded-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let first = echo(&hub, &agent, "bounded-0001", "kept on disk").await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    for id in ["bounded-0002", "bounded-0003", "bounded-0004"] {
        let later = echo(&hub, &agent, id, "kept on disk").await;
        assert_eq!(later.status, 200);
    }
    let table = &hub.hub().idempotency;
    assert_eq!(table.len(), 0, "no answer is held in memory");
    assert_eq!(table.response_bytes(), 0);
    let index = hub.hub().store.idempotency_index();
    for id in [
        "bounded-0001",
        "bounded-0002",
        "bounded-0003",
        "bounded-0004",
    ] {
        assert!(
            index.is_live(index.key_of(&agent.0, id), 0),
            "the store's index knows {id}"
        );
    }

    let again = echo(&hub, &agent, "bounded-0001", "kept on disk").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "byte for byte, from the store");
    assert_eq!(again.header("x-idempotent-replay").as_deref(), Some("true"));
    // The read-back is not kept either; the next replay reads again.
    echo(&hub, &agent, "bounded-0005", "kept on disk").await;
    assert_eq!(table.response_bytes(), 0);
    let third = echo(&hub, &agent, "bounded-0002", "kept on disk").await;
    assert_eq!(third.status, 200);
    assert_eq!(third.header("x-idempotent-replay").as_deref(), Some("true"));

    let altered = echo(&hub, &agent, "bounded-0003", "other").await;
    assert_eq!(altered.status, 409);
    assert_eq!(altered.json()["error"]["code"], "DUPLICATE_REQUEST");

    // Five calls charged, no replay charged again.
    let five_calls = Micros::new(5 * ECHO_PRICE.get()).unwrap();
    assert_eq!(
        hub.available(&agent.0),
        Micros::from_usdc(1).checked_sub(five_calls).unwrap()
    );
    assert_eq!(hub.ledger_violations(), 0);
}

/// After a restart that keeps no body in memory, every earlier answer is
/// still known: replays come from the store byte for byte, a different
/// request under a used id is still 409, and nothing is charged again.
#[tokio::test]
async fn after_a_restart_answers_whose_bodies_stayed_on_disk_still_replay() {
    let hub = paid_hub().await;
    let agent = hub.register("restart-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let mut first = Vec::new();
    for id in ["restart-0001", "restart-0002"] {
        let response = echo(&hub, &agent, id, id).await;
        assert_eq!(response.status, 200);
        first.push(response.body);
    }
    let seams = jecp_hub::hub::HubSeams {
        idempotency_response_bytes_max: Some(0),
        ..Default::default()
    };
    let hub = hub.restart_with(paid_config, seams).await;
    // No body stays in memory; the store's index knows both keys.
    assert_eq!(hub.hub().idempotency.len(), 0);
    assert_eq!(hub.hub().idempotency.response_bytes(), 0);
    assert!(hub.hub().store.idempotency_index().len() >= 2);
    for (id, body) in ["restart-0001", "restart-0002"].into_iter().zip(&first) {
        let again = echo(&hub, &agent, id, id).await;
        assert_eq!(&again.body, body, "{id} replays byte for byte");
        assert_eq!(again.header("x-idempotent-replay").as_deref(), Some("true"));
    }
    let altered = echo(&hub, &agent, "restart-0001", "other").await;
    assert_eq!(altered.status, 409);
    let two_calls = Micros::new(2 * ECHO_PRICE.get()).unwrap();
    assert_eq!(
        hub.available(&agent.0),
        Micros::from_usdc(1).checked_sub(two_calls).unwrap()
    );
}

// JECP-WIRE-MUST-410-SUNSET and the 30-day notice on successes.
#[tokio::test]
async fn wire_410_after_sunset_and_notice_before() {
    let hub = TestHub::start(|config| {
        let mut catalog = toml::Table::new();
        let mut deprecations = toml::Table::new();
        let mut past = toml::Table::new();
        past.insert("sunset_at".into(), "2020-01-01T00:00:00Z".into());
        past.insert("successor_version".into(), "2.0.0".into());
        deprecations.insert("document-pipeline".into(), past.into());
        let mut soon = toml::Table::new();
        let in_ten_days = time::OffsetDateTime::now_utc() + time::Duration::days(10);
        soon.insert(
            "sunset_at".into(),
            in_ten_days
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
                .into(),
        );
        deprecations.insert("utility".into(), soon.into());
        catalog.insert("deprecations".into(), deprecations.into());
        config.catalog = catalog;
    })
    .await;
    let agent = hub.register("sunset-agent").await;
    let gone = hub
        .invoke(
            &agent,
            "sunset-0001",
            "document-pipeline",
            "generate-receipt",
            json!({}),
        )
        .await;
    assert_eq!(gone.status, 410, "{}", String::from_utf8_lossy(&gone.body));
    assert_eq!(
        gone.header("sunset").as_deref(),
        Some("Wed, 01 Jan 2020 00:00:00 GMT")
    );
    assert_eq!(gone.header("deprecation").as_deref(), Some("true"));
    let links = gone.header_all("link");
    assert!(
        links
            .iter()
            .any(|link| link.contains("rel=\"deprecation\"")),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|link| link.contains("rel=\"successor-version\"")),
        "{links:?}"
    );
    let body = gone.json();
    assert_eq!(body["error"]["code"], "CAPABILITY_DEPRECATED");
    assert_eq!(
        body["error"]["details"]["sunset_at"],
        "2020-01-01T00:00:00Z"
    );
    assert_eq!(body["error"]["details"]["successor_version"], "2.0.0");

    let fine = hub
        .invoke(
            &agent,
            "sunset-0002",
            "utility",
            "echo",
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.header("deprecation").as_deref(), Some("true"));
    assert!(fine.header("sunset").is_some());
}

// JECP-WIRE-MUST-429-RETRY-AFTER
#[tokio::test]
async fn wire_429_with_integer_retry_after() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("burst-agent").await;
    let mut limited = None;
    for iteration in 0..15 {
        let response = hub
            .invoke(
                &agent,
                &format!("burst-{iteration:04}"),
                "utility",
                "echo",
                json!({"text": "hi"}),
            )
            .await;
        if response.status == 429 {
            limited = Some((iteration, response));
            break;
        }
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
    }
    let (iteration, response) = limited.expect("a bronze agent is limited at 10 rpm");
    assert_eq!(iteration, 10, "exactly the tier's 10 requests pass");
    let retry_after: u64 = response
        .header("retry-after")
        .unwrap()
        .parse()
        .expect("integer seconds");
    assert!((1..=600).contains(&retry_after));
    assert_eq!(response.header("x-ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(
        response.header("x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert!(response.header("x-ratelimit-reset").is_some());
    let body = response.json();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert_eq!(body["error"]["details"]["retry_after_seconds"], retry_after);
    assert_eq!(body["error"]["details"]["tier"], "bronze");
    assert_eq!(body["error"]["details"]["limit_rpm"], 10);
    assert!(body["error"]["details"]["reset_at"].is_string());
    assert_eq!(body["next_action"]["type"], "retry_after");
}

// JECP-WIRE-MUST-400-INPUT-SCHEMA
#[tokio::test]
async fn wire_400_input_schema_violation() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("schema-agent").await;
    let response = hub
        .invoke(
            &agent,
            "schema-0001",
            "utility",
            "hash",
            json!({"unexpected": 42}),
        )
        .await;
    assert_eq!(response.status, 400);
    let body = response.json();
    assert_eq!(body["error"]["code"], "INPUT_SCHEMA_VIOLATION");
    let errors = body["error"]["details"]["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for error in errors {
        assert!(
            error["instance_path"].is_string()
                && error["schema_path"].is_string()
                && error["reason"].is_string()
        );
    }
    assert!(
        body["error"]["details"]["schema_url"]
            .as_str()
            .unwrap()
            .ends_with("#input_schema")
    );
    // Nothing was charged and no free call was used.
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["total_calls"], 0);
    assert_eq!(me["free_calls_remaining"], 100);
}

#[tokio::test]
async fn success_body_has_sdk_and_spec_fields() {
    let hub = paid_hub().await;
    let agent = hub.register("shape-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(20)).await;
    let body = json!({"jecp": "1.0", "id": "shape-0001", "capability": "hub/utility", "action": "echo",
                      "input": {"text": "hello"}, "metadata": {"session": "s1"}});
    let mut headers = common::agent_headers(&agent);
    headers.push(("x-request-id", "trace-123"));
    let response = hub.post("/v1/invoke", &headers, &body.to_string()).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("no-store")
    );
    let exposed = response.header("access-control-expose-headers").unwrap();
    for header in [
        "X-Payment-Response",
        "X-Request-Id",
        "Retry-After",
        "WWW-Authenticate",
    ] {
        assert!(exposed.contains(header), "{exposed}");
    }
    assert_eq!(
        response.header("x-request-id").as_deref(),
        Some("trace-123")
    );
    let json = response.json();
    assert_eq!(json["jecp"], "1.0");
    assert_eq!(json["id"], "shape-0001");
    assert_eq!(json["status"], "completed");
    assert_eq!(json["result"], json!({"text": "hello"}));
    assert_eq!(json["provider"]["namespace"], "hub");
    assert_eq!(json["provider"]["capability"], "hub/utility");
    assert!(json["provider"]["version"].is_string());
    let billing = &json["billing"];
    assert_eq!(billing["charged"], true);
    assert_eq!(billing["amount_usdc"], json!(0.001));
    assert_eq!(billing["cost_usdc"], json!(0.001));
    assert_eq!(billing["method"], "wallet");
    assert_eq!(billing["balance_after"], json!(19.999));
    assert_eq!(json["wallet_balance_after"], json!(19.999));
    assert!(uuid::Uuid::parse_str(billing["transaction_id"].as_str().unwrap()).is_ok());
    // 85/10/5 of 1,000 micros.
    assert_eq!(billing["provider_share_usdc"], json!(0.00085));
    assert_eq!(billing["hub_fee_usdc"], json!(0.0001));
    assert_eq!(billing["payment_fee_usdc"], json!(0.00005));
    assert_eq!(json["execution"]["trust_tier"], "bronze");
    assert!(json["execution"]["duration_ms"].is_u64());
    assert_eq!(json["metadata"], json!({"session": "s1"}));
}

#[tokio::test]
async fn legacy_alias_has_spec_shape_and_deprecation_headers() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("legacy-agent").await;
    let body = json!({"jecp": "1.0", "id": "legacy-0001", "capability": "utility", "action": "echo", "input": {"a": 1}});
    let response = hub
        .post(
            "/v1/jecp",
            &common::agent_headers(&agent),
            &body.to_string(),
        )
        .await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("deprecation").as_deref(), Some("true"));
    assert_eq!(
        response.header("sunset").as_deref(),
        Some("Sat, 01 Jan 2028 00:00:00 GMT")
    );
    assert!(
        response
            .header("link")
            .unwrap()
            .contains("#21-legacy-alias")
    );
    let json = response.json();
    assert_eq!(json["result"]["capability"], "hub/utility");
    assert_eq!(json["result"]["action"], "echo");
    assert_eq!(json["result"]["output"], json!({"a": 1}));
    assert_eq!(json["billing"]["method"], "free_call");
    // Errors on the alias carry the headers too.
    let error = hub
        .post("/v1/jecp", &[("content-type", "application/json")], "{}")
        .await;
    assert_eq!(error.header("deprecation").as_deref(), Some("true"));
}

#[tokio::test]
async fn free_calls_come_first_and_are_booked_to_promotions() {
    let hub = TestHub::start(|config| config.free_calls_per_agent = 2).await;
    let agent = hub.register("free-agent").await;
    for index in 0..2 {
        let response = hub
            .invoke(
                &agent,
                &format!("free-{index:04}"),
                "utility",
                "echo",
                json!({}),
            )
            .await;
        assert_eq!(response.status, 200);
        let billing = &response.json()["billing"];
        assert_eq!(billing["method"], "free_call");
        assert_eq!(billing["charged"], false);
        assert_eq!(billing["amount_usdc"], json!(0));
        assert_eq!(billing["cost_usdc"], json!(0.001));
    }
    let broke = hub
        .invoke(&agent, "free-0002", "utility", "echo", json!({}))
        .await;
    assert_eq!(broke.status, 402);
    let body = broke.json();
    assert_eq!(body["error"]["code"], "INSUFFICIENT_BALANCE");
    assert_eq!(body["error"]["details"]["required_usdc"], json!(0.001));
    assert_eq!(body["error"]["details"]["remaining_usdc"], json!(0));
    assert_eq!(body["next_action"]["type"], "topup");
    assert_eq!(
        body["next_action"]["allowed_amounts_usd"],
        json!([5, 20, 100])
    );
    // A 402 is not stored: the same id succeeds once the wallet is funded.
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let paid = hub
        .invoke(&agent, "free-0002", "utility", "echo", json!({}))
        .await;
    assert_eq!(paid.status, 200);
    assert_eq!(paid.json()["billing"]["method"], "wallet");
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["total_calls"], 3);
    assert_eq!(me["free_calls_remaining"], 0);
    assert_eq!(hub.ledger_violations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_on_a_wallet_funded_for_fifty() {
    let hub = Arc::new(paid_hub().await);
    let agent = hub.register("race-agent").await;
    hub.credit(&agent.0, Micros::new(50 * ECHO_PRICE.get()).unwrap())
        .await;
    let tasks: Vec<_> = (0..200)
        .map(|index| {
            let hub = hub.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                hub.invoke(
                    &agent,
                    &format!("race-{index:04}"),
                    "utility",
                    "echo",
                    json!({"n": index}),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut payment_required = 0;
    let mut transactions = HashSet::new();
    for task in tasks {
        let response = task.await.unwrap();
        match response.status {
            200 => {
                ok += 1;
                assert!(
                    transactions.insert(
                        response.json()["billing"]["transaction_id"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    )
                );
            }
            402 => {
                payment_required += 1;
                assert_eq!(response.json()["error"]["code"], "INSUFFICIENT_BALANCE");
            }
            other => panic!(
                "unexpected {other}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(payment_required, 150);
    assert_eq!(hub.available(&agent.0), Micros::ZERO);
    assert_eq!(hub.ledger_violations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_with_one_id_charge_once() {
    fifty_concurrent_calls_with_one_id(paid_hub().await).await;
}

/// The same with no response body kept in memory: the twins that waited for
/// the leader read its answer back from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_with_one_id_charge_once_when_bodies_live_on_disk_only() {
    let hub = paid_hub_keeping_no_bodies().await;
    fifty_concurrent_calls_with_one_id(hub).await;
}

async fn fifty_concurrent_calls_with_one_id(hub: TestHub) {
    let hub = Arc::new(hub);
    let agent = hub.register("single-flight-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let hub = hub.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                hub.invoke(&agent, "same-id-0001", "utility", "echo", json!({"x": 1}))
                    .await
            })
        })
        .collect();
    let mut bodies = HashSet::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        bodies.insert(response.body.clone());
    }
    assert_eq!(bodies.len(), 1, "every caller sees the same body");
    assert_eq!(
        hub.available(&agent.0),
        Micros::from_usdc(1).checked_sub(ECHO_PRICE).unwrap()
    );
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["total_calls"], 1);
}

#[tokio::test]
async fn failed_handlers_cost_nothing() {
    let hub = paid_hub().await;
    let agent = hub.register("failing-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(5)).await;
    let before = hub.available(&agent.0);
    // A floor of silver lets this bronze agent call data-insight.
    let mut record = hub.hub().directory.get(&agent.0).unwrap().as_ref().clone();
    record.tier_floor = Some(jecp_hub::gate::Tier::Silver.as_u8());
    hub.hub().directory.put(record);
    // Valid by the schema (a string), refused by the handler (not base64).
    let response = hub
        .invoke(
            &agent,
            "fail-0001",
            "utility",
            "hash",
            json!({"base64": "!!! not base64 !!!"}),
        )
        .await;
    assert_eq!(
        response.status,
        400,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["error"]["code"], "INPUT_SCHEMA_VIOLATION");
    // A CSV the analyzer accepts but whose columns are text still succeeds; a
    // silver-only action runs thanks to the floor, and costs exactly its price.
    let paid = hub
        .invoke(
            &agent,
            "fail-0002",
            "data-insight",
            "analyze-csv",
            json!({"csv": "a,b\n1,2\n"}),
        )
        .await;
    assert_eq!(paid.status, 200, "{}", String::from_utf8_lossy(&paid.body));
    let before = before.checked_sub(Micros::new(10_000).unwrap()).unwrap();
    assert_eq!(hub.available(&agent.0), before);
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["total_calls"], 1);
    assert_eq!(me["pending_usdc"], json!(0));
    assert_eq!(hub.ledger_violations(), 0);
}

#[tokio::test]
async fn authentication_errors() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("auth-agent").await;
    let envelope = json!({"jecp": "1.0", "id": "auth-0001", "capability": "utility", "action": "echo", "input": {}}).to_string();
    let none = hub
        .post(
            "/v1/invoke",
            &[("content-type", "application/json")],
            &envelope,
        )
        .await;
    assert_eq!(none.status, 401);
    let body = none.json();
    assert_eq!(body["error"]["code"], "AUTH_REQUIRED");
    assert_eq!(body["next_action"]["type"], "register");
    assert_eq!(body["id"], "auth-0001");

    let wrong_key = hub
        .post(
            "/v1/invoke",
            &[
                ("x-agent-id", agent.0.as_str()),
                ("x-api-key", "hub_ak_wrong"),
            ],
            &envelope,
        )
        .await;
    let unknown_agent = hub
        .post(
            "/v1/invoke",
            &[
                ("x-agent-id", "hub_ag_nobodynobodynobody00"),
                ("x-api-key", "hub_ak_wrong"),
            ],
            &envelope,
        )
        .await;
    assert_eq!(wrong_key.status, 401);
    assert_eq!(
        wrong_key.body, unknown_agent.body,
        "unknown agent and wrong key are indistinguishable"
    );
    assert_eq!(wrong_key.json()["error"]["code"], "INVALID_API_KEY");

    // Mandate fields win over headers.
    let mandate = json!({"jecp": "1.0", "id": "auth-0002", "capability": "utility", "action": "echo", "input": {},
                         "mandate": {"agent_id": agent.0, "api_key": agent.1}});
    let via_mandate = hub
        .post(
            "/v1/invoke",
            &[
                ("x-agent-id", "hub_ag_someoneelse00000000000"),
                ("x-api-key", "nope"),
            ],
            &mandate.to_string(),
        )
        .await;
    assert_eq!(
        via_mandate.status,
        200,
        "{}",
        String::from_utf8_lossy(&via_mandate.body)
    );
    assert_eq!(via_mandate.json()["billing"]["method"], "free_call");
}

#[tokio::test]
async fn mandate_expiry_budget_and_provenance() {
    let hub = paid_hub().await;
    let agent = hub.register("mandate-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let call = |id: &str, mandate: Value| {
        json!({"jecp": "1.0", "id": id, "capability": "utility", "action": "echo", "input": {}, "mandate": mandate})
            .to_string()
    };
    let expired = hub
        .post(
            "/v1/invoke",
            &[],
            &call("mandate-0001", json!({"agent_id": agent.0, "api_key": agent.1, "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["error"]["code"], "MANDATE_EXPIRED");
    assert_eq!(expired.json()["next_action"]["type"], "renew_mandate");

    let poor = hub
        .post(
            "/v1/invoke",
            &[],
            &call(
                "mandate-0002",
                json!({"agent_id": agent.0, "api_key": agent.1, "budget_usdc": 0.0001}),
            ),
        )
        .await;
    assert_eq!(poor.status, 402);
    let body = poor.json();
    assert_eq!(body["error"]["code"], "INSUFFICIENT_BUDGET");
    assert_eq!(body["error"]["details"]["required_usdc"], json!(0.001));

    let rich = hub
        .post(
            "/v1/invoke",
            &[],
            &call(
                "mandate-0003",
                json!({"agent_id": agent.0, "api_key": agent.1, "budget_usdc": 0.01}),
            ),
        )
        .await;
    assert_eq!(rich.status, 200);
    assert_eq!(rich.json()["billing"]["method"], "mandate");

    let now = jecp_hub::hub::now_s();
    let provenance = jecp_hub::auth::provenance::compute_v2(
        &agent.0,
        &agent.1,
        now,
        "00112233445566778899aabbccddeeff",
    );
    let mandate = json!({"agent_id": agent.0, "api_key": agent.1, "provenance_hash": provenance});
    let first = hub
        .post("/v1/invoke", &[], &call("mandate-0004", mandate.clone()))
        .await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    // Same nonce again, even under the same id: the replay gate fires first (ADR-0001).
    let replayed = hub
        .post("/v1/invoke", &[], &call("mandate-0004", mandate))
        .await;
    assert_eq!(replayed.status, 403);
    assert_eq!(replayed.json()["error"]["code"], "PROVENANCE_MISMATCH");
    assert_eq!(
        replayed.json()["error"]["details"]["subcause"],
        "nonce_replay"
    );
}

#[tokio::test]
async fn trust_gate_and_operator_floor() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("bronze-agent").await;
    let input =
        json!({"line_items": [{"description": "Widget", "quantity": 1, "unit_price": "0.10"}]});
    let denied = hub
        .invoke(
            &agent,
            "trust-0001",
            "document-pipeline",
            "generate-receipt",
            input.clone(),
        )
        .await;
    assert_eq!(denied.status, 403);
    let body = denied.json();
    assert_eq!(body["error"]["code"], "INSUFFICIENT_TRUST");
    assert_eq!(body["error"]["details"]["required"], "silver");
    assert_eq!(body["error"]["details"]["current"], "bronze");
    assert_eq!(body["next_action"]["type"], "earn_trust");
    let mut record = hub.hub().directory.get(&agent.0).unwrap().as_ref().clone();
    record.tier_floor = Some(jecp_hub::gate::Tier::Silver.as_u8());
    hub.hub().directory.put(record);
    let allowed = hub
        .invoke(
            &agent,
            "trust-0002",
            "document-pipeline",
            "generate-receipt",
            input,
        )
        .await;
    assert_ne!(
        allowed.status,
        403,
        "{}",
        String::from_utf8_lossy(&allowed.body)
    );
}

#[tokio::test]
async fn routing_errors() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("routing-agent").await;
    let unknown = hub
        .invoke(&agent, "route-0001", "nope", "echo", json!({}))
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "CAPABILITY_NOT_FOUND");
    let provider = hub
        .invoke(&agent, "route-0002", "deepl/translate", "run", json!({}))
        .await;
    assert_eq!(provider.status, 404);
    assert_eq!(provider.json()["error"]["code"], "PROVIDER_NOT_FOUND");
    let action = hub
        .invoke(&agent, "route-0003", "utility", "nope", json!({}))
        .await;
    assert_eq!(action.status, 404);
    let body = action.json();
    assert_eq!(body["error"]["code"], "ACTION_NOT_FOUND");
    assert_eq!(body["next_action"]["type"], "lookup_schema");
}

#[tokio::test]
async fn a_stream_request_for_a_non_streaming_action_gets_406() {
    let hub = TestHub::start(|_| {}).await;
    let agent = hub.register("stream-agent").await;
    // The SDK's invokeStream body: the A3 body plus `"streaming": true`.
    let body = json!({"jecp": "1.0", "id": "stream-0001", "capability": "hub/utility", "action": "echo",
                      "input": {"text": "hi"}, "streaming": true});
    let mut headers = common::agent_headers(&agent);
    headers.push(("accept", "text/event-stream"));
    let response = hub.post("/v1/invoke", &headers, &body.to_string()).await;
    assert_eq!(response.status, 406);
    assert_eq!(response.json()["error"]["code"], "NOT_STREAMABLE");
    // The same body with a JSON-accepting client is an ordinary call.
    let mut headers = common::agent_headers(&agent);
    headers.push(("accept", "*/*"));
    assert_eq!(
        hub.post("/v1/invoke", &headers, &body.to_string())
            .await
            .status,
        200
    );
}

/// A handler whose output breaks its own output schema: 502 OUTPUT_INVALID,
/// the hold is voided, the wallet and the call count are untouched, and the
/// same id can be retried (nothing was stored).
#[tokio::test]
async fn schema_invalid_output_costs_nothing() {
    fn broken_hash(_: &Value) -> Result<Value, jecp_hub::catalog::HandlerError> {
        Ok(json!({"not": "what the output schema promises"}))
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.free_calls_per_agent = 0;
    let mut catalog =
        jecp_hub::catalog::Catalog::builtin("hub", "http://127.0.0.1", &Default::default())
            .unwrap();
    assert!(catalog.replace_handler("hub/utility", "hash", broken_hash));
    let running = jecp_hub::runtime::Running::start_with(
        config,
        jecp_hub::hub::HubSeams {
            catalog: Some(catalog),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let hub = TestHub {
        running,
        client,
        dir,
    };
    let agent = hub.register("broken-output-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    for _ in 0..2 {
        let response = hub
            .invoke(
                &agent,
                "broken-0001",
                "utility",
                "hash",
                json!({"text": "abc"}),
            )
            .await;
        assert_eq!(
            response.status,
            502,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json()["error"]["code"], "OUTPUT_INVALID");
    }
    assert_eq!(hub.available(&agent.0), Micros::from_usdc(1));
    let me = hub
        .get("/v1/agents/me", &common::agent_headers(&agent))
        .await
        .json();
    assert_eq!(me["total_calls"], 0);
    assert_eq!(me["pending_usdc"], json!(0));
    assert_eq!(hub.ledger_violations(), 0);
    // The untouched action still works and charges.
    assert_eq!(
        hub.invoke(&agent, "broken-0002", "utility", "echo", json!({}))
            .await
            .status,
        200
    );
}
