//! No key, mandate or secret reaches the logs (DESIGN §3.7, spec 02 §3.3).
//!
//! Installs a TRACE-level subscriber that writes into a buffer, drives every
//! auth path that logs (secret creation, registration, failed and frozen
//! authentication, rotation, provenance and mandate failures), also logs the
//! secret-holding values through their `Debug`, and then scans the text.

use std::io::Write;
use std::sync::{Arc, Mutex};

use jecp_hub::auth::{
    Directory, Mandate, RegisterRequest, ReplayStore, RotateRequest, ServerSecret, compute_v2,
    mismatch_error, resolve_credentials, verify_v2,
};
use jecp_hub::records::AgentRecord;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[test]
fn secrets_never_appear_in_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let data_dir = tempfile::tempdir().unwrap();
    let now = 1_900_000_000;
    let mut secrets: Vec<String> = Vec::new();

    tracing::subscriber::with_default(subscriber, || {
        let secret = ServerSecret::load_or_create(data_dir.path()).unwrap();
        tracing::info!(?secret, "server secret loaded");
        let directory = Directory::new(secret, Vec::new());
        let request = RegisterRequest {
            name: "Logged".into(),
            ..RegisterRequest::default()
        };
        let registered = directory.register(&request, 1, "jh", now).unwrap();
        tracing::info!(?registered, "registration result");
        let agent_id = registered.record.agent_id.clone();
        let old_key = registered.api_key.clone();
        secrets.push(old_key.clone());

        let wrong_key = "jh_ak_WRONGwrongWRONGwrongWRONGwrongWRONGwrongWRONGwr";
        secrets.push(wrong_key.into());
        let _ = directory
            .authenticate(&agent_id, wrong_key, now)
            .unwrap_err();
        let _ = directory
            .authenticate("jh_ag_000000000000000000000000", &old_key, now)
            .unwrap_err();

        let rotated = directory
            .rotate(
                &agent_id,
                &RotateRequest {
                    grace_seconds: Some(60),
                    revoke_old: None,
                },
                now,
            )
            .unwrap();
        tracing::info!(?rotated, "rotation result");
        secrets.push(rotated.api_key.clone());
        directory.put(AgentRecord {
            frozen: true,
            ..rotated.record.clone()
        });
        let _ = directory
            .authenticate(&agent_id, &rotated.api_key, now)
            .unwrap_err();

        let nonce = "0badc0de0badc0de0badc0de0badc0de";
        let wire = compute_v2(&agent_id, &rotated.api_key, now, nonce);
        let hmac_tag = wire.rsplit(':').next().unwrap().to_owned();
        secrets.push(hmac_tag);
        let mandate_json = json!({"agent_id": agent_id, "api_key": rotated.api_key, "provenance_hash": wire, "budget_usdc": 1});
        let mandate = Mandate::from_json(&mandate_json).unwrap();
        tracing::info!(?mandate, "mandate parsed");
        let credentials = resolve_credentials(None, None, Some(&mandate)).unwrap();
        tracing::info!(?credentials, "credentials resolved");
        let replay = ReplayStore::new(10);
        let verified = verify_v2(&wire, &agent_id, &rotated.api_key, now).unwrap();
        replay
            .check_and_insert(&agent_id, &verified.nonce_lower, now)
            .unwrap();
        let replay_error = mismatch_error(
            &replay
                .check_and_insert(&agent_id, &verified.nonce_lower, now)
                .unwrap_err(),
        );
        tracing::warn!(?replay_error, "provenance refused");
        let hmac_error = mismatch_error(&verify_v2(&wire, &agent_id, wrong_key, now).unwrap_err());
        tracing::warn!(?hmac_error, "provenance refused");
        let bad_mandate =
            Mandate::from_json(&json!({"api_key": 12, "provenance_hash": wire})).unwrap_err();
        tracing::warn!(?bad_mandate, "mandate refused");
    });

    let secret_file = std::fs::read_to_string(data_dir.path().join("server.secret")).unwrap();
    secrets.push(secret_file.trim().to_owned());
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture really ran: the module's own events are there.
    for expected in [
        "created a new server secret",
        "agent registered",
        "agent key rotated",
        "frozen agent refused",
        "authentication failed",
    ] {
        assert!(
            logs.contains(expected),
            "missing log line {expected:?} in:\n{logs}"
        );
    }
    assert!(logs.contains("<redacted>"));
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs:\n{logs}"
        );
    }
    // No key prefix of any issued key either (a partial leak is still a leak).
    for secret in &secrets[..3] {
        assert!(
            !logs.contains(&secret[..20]),
            "a key prefix leaked into the logs"
        );
    }
}
