//! Storage faults under a running HTTP Hub (issue 9): with the store's I/O
//! failing (disk full, write error, fsync error) a billed call answers 503
//! `SERVICE_DEGRADED` with `Retry-After` and is not charged, reads keep
//! working, nothing unacknowledged reaches the ledger, and the Hub recovers by
//! itself once the fault clears — including after a restart from disk.

mod common;

use std::time::{Duration, Instant};

use common::{Response, TestHub, test_config};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jecp_hub::money::Micros;
use jecp_hub::runtime::Running;
use jecp_hub::store::{FaultKind, FaultSwitch};
use serde_json::json;

/// How long the Hub may take to become healthy again after the fault clears.
const RECOVERY_S_MAX: u64 = 10;

async fn start_faulty(dir: tempfile::TempDir, fault: Option<FaultSwitch>) -> TestHub {
    let mut config = test_config(dir.path());
    config.free_calls_per_agent = 0;
    config.tier_rpm.bronze = 100_000;
    let running = Running::start_with_fault(config, fault)
        .await
        .expect("hub starts");
    TestHub {
        running,
        client: Client::builder(TokioExecutor::new()).build_http(),
        dir,
    }
}

async fn me(hub: &TestHub, agent: &(String, String)) -> serde_json::Value {
    let response = hub
        .get(
            "/v1/agents/me",
            &[("x-agent-id", &agent.0), ("x-api-key", &agent.1)],
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.json()
}

async fn echo(hub: &TestHub, agent: &(String, String), id: &str) -> Response {
    hub.invoke(agent, id, "utility", "echo", json!({"text": id}))
        .await
}

fn assert_degraded(response: &Response) {
    assert_eq!(
        response.status,
        503,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.json()["error"]["code"],
        "SERVICE_DEGRADED",
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let retry_after: u64 = response
        .header("retry-after")
        .expect("503 carries Retry-After")
        .parse()
        .expect("Retry-After is delta-seconds");
    assert!(retry_after >= 1);
}

/// Retries `id` until it succeeds (the fault has cleared) or the deadline passes.
async fn echo_until_ok(hub: &TestHub, agent: &(String, String), id: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(RECOVERY_S_MAX);
    loop {
        let response = echo(hub, agent, id).await;
        if response.status == 200 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_until(hub: &TestHub, status: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(RECOVERY_S_MAX);
    loop {
        let got = hub.get("/health", &[]).await.status;
        if got == status || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `exactly_once`: also require that the call refused during the fault is
/// charged exactly once after its retry (see the fsync test for why that is
/// separate).
async fn fault_round_trip(kind: FaultKind, exactly_once: bool) {
    let switch = FaultSwitch::new();
    let hub = start_faulty(tempfile::tempdir().unwrap(), Some(switch.clone())).await;
    let agent = hub.register("fault-agent").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;

    let before_fault = echo(&hub, &agent, "before-fault").await;
    assert_eq!(before_fault.status, 200);
    let funded = me(&hub, &agent).await;
    assert_eq!(funded["total_calls"], 1);

    switch.arm_with(kind);
    // A billed call during the fault: 503 + Retry-After, not charged.
    let during = echo(&hub, &agent, "during-fault").await;
    assert_degraded(&during);
    assert!(switch.injected_failures() > 0, "{kind:?} never fired");
    // Registering writes too: refused the same way, no agent is handed out.
    let register = hub
        .post(
            "/api/agents/register",
            &[("content-type", "application/json")],
            r#"{"name":"during-fault","agent_type":"test"}"#,
        )
        .await;
    // The legacy registration route answers in its own `{"error": "..."}` shape.
    assert_eq!(register.status, 503);
    assert!(register.header("retry-after").is_some());
    assert!(register.json().get("api_key").is_none());

    // Reads keep working while the store cannot write.
    assert_eq!(hub.get("/health", &[]).await.status, 503);
    let during_me = me(&hub, &agent).await;
    assert_eq!(
        during_me["total_calls"], 1,
        "{kind:?}: unacknowledged call counted"
    );
    assert_eq!(during_me["balance_usdc"], funded["balance_usdc"]);
    assert_eq!(hub.get("/v1/capabilities", &[]).await.status, 200);
    let replay = echo(&hub, &agent, "before-fault").await;
    assert_eq!(replay.status, 200);
    assert_eq!(
        replay.body, before_fault.body,
        "stored response replays byte for byte"
    );
    assert_eq!(hub.ledger_violations(), 0);

    // The fault clears: the same id now succeeds exactly once, health returns.
    switch.disarm();
    let after = echo_until_ok(&hub, &agent, "during-fault").await;
    assert_eq!(
        after.status,
        200,
        "{kind:?}: no recovery: {}",
        String::from_utf8_lossy(&after.body)
    );
    assert_eq!(
        health_until(&hub, 200).await,
        200,
        "{kind:?}: /health stays 503"
    );
    let recovered = me(&hub, &agent).await;
    if exactly_once {
        assert_eq!(recovered["total_calls"], 2, "{kind:?}: {recovered}");
    }
    assert_eq!(hub.ledger_violations(), 0);

    // What is on disk is exactly what was acknowledged.
    let TestHub { running, dir, .. } = hub;
    running.stop().await.expect("clean stop");
    let reopened = start_faulty(dir, None).await;
    let on_disk = me(&reopened, &agent).await;
    // Memory and disk agree on every call.
    assert_eq!(on_disk["total_calls"], recovered["total_calls"], "{kind:?}");
    assert_eq!(on_disk["balance_usdc"], recovered["balance_usdc"]);
    let replay = echo(&reopened, &agent, "during-fault").await;
    assert_eq!(replay.body, after.body);
    assert_eq!(reopened.ledger_violations(), 0);
    assert_eq!(
        me(&reopened, &agent).await["total_calls"],
        recovered["total_calls"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_degrades_and_recovers() {
    fault_round_trip(FaultKind::DiskFull, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_degrades_and_recovers() {
    fault_round_trip(FaultKind::WriteError, true).await;
}

/// fsync failures: 503, reads served, recovery, memory equal to disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_error_degrades_and_recovers() {
    fault_round_trip(FaultKind::SyncError, false).await;
}

/// When a commit's fsync fails, the batch's pages may still reach the file:
/// the caller was answered 503, and the reopen after the fault clears finds
/// the charge on disk. The store knows the stored idempotency key and answers
/// the retry with the stored response instead of charging again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_error_charges_a_retried_call_exactly_once() {
    fault_round_trip(FaultKind::SyncError, true).await;
}
