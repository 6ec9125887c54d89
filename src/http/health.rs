//! `/health` (spec 05 §8): what the Hub reports about itself, and the [`HealthProbe`] the
//! storage layer implements so this module never depends on it.
//!
//! The report states the durability mode and its loss window (DESIGN §4) so an operator or a
//! benchmark can see what an acknowledgement means on this Hub.

use std::time::Instant;

use hyper::StatusCode;
use serde_json::{Value, json};

/// What `/health` asks the storage layer.
pub trait HealthProbe: Send + Sync {
    /// `Ok` when the store can serve reads and take writes; `Err` names the fault (logged,
    /// never sent to clients).
    fn database(&self) -> Result<(), String>;
    /// `"immediate"` or `"batched(5ms)"`.
    fn durability(&self) -> String;
    /// Longest window of acknowledged writes a crash can lose (0 in immediate mode).
    fn loss_window_ms(&self) -> u64;
}

/// Runs the probe and renders the report: 200 when the database is up, 503 when it is down.
pub fn report(probe: &dyn HealthProbe, started_at: Instant) -> (StatusCode, Value) {
    let probe_started = Instant::now();
    let database = probe.database();
    let response_ms = probe_started.elapsed().as_millis() as u64;
    let (status_code, status, database_status) = match &database {
        Ok(()) => (StatusCode::OK, "ok", "ok"),
        Err(cause) => {
            tracing::warn!(cause = %cause, "health check: database is down");
            (StatusCode::SERVICE_UNAVAILABLE, "down", "down")
        }
    };
    let body = json!({
        "status": status,
        "engine": "jecp-v1",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": started_at.elapsed().as_secs(),
        "checks": {
            "database": database_status,
            "response_ms": response_ms,
        },
        "durability": probe.durability(),
        "loss_window_ms": probe.loss_window_ms(),
    });
    (status_code, body)
}

/// The running Hub answers from its store: down after a failed commit until the next
/// successful one (the writer retries by itself).
impl HealthProbe for crate::hub::Hub {
    fn database(&self) -> Result<(), String> {
        let health = self.store.health();
        if health.ok {
            Ok(())
        } else {
            Err(health
                .last_error
                .unwrap_or_else(|| "the last commit failed".into()))
        }
    }

    fn durability(&self) -> String {
        self.config.durability_label()
    }

    fn loss_window_ms(&self) -> u64 {
        self.store.health().loss_window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<(), String>);

    impl HealthProbe for Fixed {
        fn database(&self) -> Result<(), String> {
            self.0.clone()
        }
        fn durability(&self) -> String {
            "batched(7ms)".into()
        }
        fn loss_window_ms(&self) -> u64 {
            7
        }
    }

    #[test]
    fn report_follows_the_probe_and_states_the_loss_window() {
        let (status, body) = report(&Fixed(Ok(())), Instant::now());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(body["durability"], "batched(7ms)");
        assert_eq!(body["loss_window_ms"], 7);
        let (status, body) = report(&Fixed(Err("disk unplugged".into())), Instant::now());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["database"], "down");
        assert!(
            !body.to_string().contains("unplugged"),
            "the cause is logged, not sent"
        );
    }
}
