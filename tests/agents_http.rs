//! Agent registration, key rotation and provenance replay over HTTP
//! (issue 4), including a restart of the Hub between two uses of a nonce.

mod common;

use common::TestHub;
use serde_json::json;

fn headers<'a>(agent_id: &'a str, api_key: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("x-agent-id", agent_id),
        ("x-api-key", api_key),
    ]
}

#[tokio::test]
async fn registration_shape_errors_and_rate_limit() {
    let hub = TestHub::start(|config| config.registration_per_minute_per_ip = 3).await;
    let response = hub
        .post(
            "/api/agent/register",
            &[("content-type", "application/json")],
            r#"{"name":"Shape Agent","agent_type":"test","description":"d","capabilities":["x"],"homepage":"https://a.example"}"#,
        )
        .await;
    assert_eq!(response.status, 201);
    let body = response.json();
    let agent_id = body["agent_id"].as_str().unwrap();
    let api_key = body["api_key"].as_str().unwrap();
    assert!(
        agent_id.starts_with("hub_ag_") && agent_id.len() == "hub_ag_".len() + 24,
        "{agent_id}"
    );
    assert!(api_key.starts_with("hub_ak_") && api_key.len() == "hub_ak_".len() + 48);
    assert!(api_key[7..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(body["name"], "Shape Agent");
    assert_eq!(body["free_calls_remaining"], 100);
    assert!(
        body["endpoints"]["invoke"]
            .as_str()
            .unwrap()
            .ends_with("/v1/invoke")
    );

    // Errors on this endpoint are {"error": "<string>"} (the SDK reads a string).
    let duplicate = hub
        .post("/api/agents/register", &[], r#"{"name":"shape agent"}"#)
        .await;
    assert_eq!(duplicate.status, 409);
    assert!(duplicate.json()["error"].is_string());
    let invalid = hub
        .post(
            "/api/agents/register",
            &[],
            &json!({"name": "x", "description": "d".repeat(501)}).to_string(),
        )
        .await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.json()["error"].is_string());
    // The fourth registration from this address within a minute is limited.
    let limited = hub
        .post("/api/agents/register", &[], r#"{"name":"one more"}"#)
        .await;
    assert_eq!(limited.status, 429);
    assert!(limited.json()["error"].is_string());
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
}

#[tokio::test]
async fn rotation_grace_revoke_and_the_daily_cap() {
    let hub = TestHub::start(|_| {}).await;
    let (agent_id, first_key) = hub.register("rotating-agent").await;

    // The SDK sends {} or {"grace_seconds": n}; grace is clamped to 60..604800.
    let rotated = hub
        .post(
            "/v1/agents/me/rotate-key",
            &headers(&agent_id, &first_key),
            r#"{"grace_seconds": 5}"#,
        )
        .await;
    assert_eq!(
        rotated.status,
        200,
        "{}",
        String::from_utf8_lossy(&rotated.body)
    );
    let body = rotated.json();
    assert_eq!(body["agent_id"], agent_id.as_str());
    assert_eq!(body["grace_seconds"], 60);
    assert!(body["previous_key_valid_until"].is_string());
    let second_key = body["api_key"].as_str().unwrap().to_owned();
    assert_ne!(second_key, first_key);
    // Both keys work during the grace period.
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &first_key))
            .await
            .status,
        200
    );
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &second_key))
            .await
            .status,
        200
    );

    // revoke_old ends the previous key at once.
    let revoked = hub
        .post(
            "/v1/agents/me/rotate-key",
            &headers(&agent_id, &second_key),
            r#"{"revoke_old": true}"#,
        )
        .await;
    assert_eq!(revoked.status, 200);
    let third_key = revoked.json()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &second_key))
            .await
            .status,
        401
    );
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &first_key))
            .await
            .status,
        401
    );
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &third_key))
            .await
            .status,
        200
    );

    // An empty body (no JSON at all) is accepted like {}.
    let third = hub
        .post(
            "/v1/agents/me/rotate-key",
            &headers(&agent_id, &third_key),
            "",
        )
        .await;
    assert_eq!(third.status, 200);
    let fourth_key = third.json()["api_key"].as_str().unwrap().to_owned();
    let capped = hub
        .post(
            "/v1/agents/me/rotate-key",
            &headers(&agent_id, &fourth_key),
            "{}",
        )
        .await;
    assert_eq!(capped.status, 429);
    let body = capped.json();
    assert_eq!(body["error"]["code"], "ROTATION_24H_CAP");
    assert!(body["error"]["details"]["next_slot_at"].is_string());
    assert!(capped.header("retry-after").is_some());

    // The rotated key survives a restart; the revoked ones stay dead.
    let hub = hub.restart(|_| {}).await;
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &fourth_key))
            .await
            .status,
        200
    );
    assert_eq!(
        hub.get("/v1/agents/me", &headers(&agent_id, &first_key))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_provenance_nonce_cannot_be_replayed_across_a_restart() {
    let hub = TestHub::start(|_| {}).await;
    let (agent_id, api_key) = hub.register("nonce-agent").await;
    let now = jecp_hub::hub::now_s();
    let provenance = jecp_hub::auth::provenance::compute_v2(
        &agent_id,
        &api_key,
        now,
        "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    );
    let call = |id: &str| {
        json!({"jecp": "1.0", "id": id, "capability": "utility", "action": "echo", "input": {},
               "mandate": {"agent_id": agent_id, "api_key": api_key, "provenance_hash": provenance}})
        .to_string()
    };
    let first = hub.post("/v1/invoke", &[], &call("nonce-0001")).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );

    let hub = hub.restart(|_| {}).await;
    let replayed = hub.post("/v1/invoke", &[], &call("nonce-0002")).await;
    assert_eq!(
        replayed.status,
        403,
        "{}",
        String::from_utf8_lossy(&replayed.body)
    );
    assert_eq!(
        replayed.json()["error"]["details"]["subcause"],
        "nonce_replay"
    );

    // A wrong key never learns the subcause (spec 03 §3.1 emission policy).
    let wrong = json!({"jecp": "1.0", "id": "nonce-0003", "capability": "utility", "action": "echo", "input": {},
                       "mandate": {"agent_id": agent_id, "api_key": "hub_ak_wrong", "provenance_hash": provenance}});
    let response = hub.post("/v1/invoke", &[], &wrong.to_string()).await;
    assert_eq!(response.status, 401);
    assert!(
        response.json()["error"]["details"]
            .get("subcause")
            .is_none()
    );
}
