//! `/health` (spec 05 §8): what the Hub reports about itself, and the [`HealthProbe`] the
//! storage layer implements so this module never depends on it.
//!
//! The report states the durability mode and its loss window (DESIGN §4) so an operator or a
//! benchmark can see what an acknowledgement means on this Hub.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::config::Config;

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

/// A probe over the data directory alone: healthy while the directory exists and is a
/// directory. It serves until the store provides its own probe, and reports the configured
/// durability mode.
#[derive(Debug, Clone)]
pub struct DataDirProbe {
    data_dir: PathBuf,
    durability: String,
    loss_window_ms: u64,
}

impl DataDirProbe {
    pub fn new(config: &Config) -> DataDirProbe {
        let loss_window_ms = match config.durability {
            crate::config::DurabilityMode::Immediate => 0,
            crate::config::DurabilityMode::Batched => config.fsync_interval_ms,
        };
        DataDirProbe {
            data_dir: config.data_dir.clone(),
            durability: config.durability_label(),
            loss_window_ms,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl HealthProbe for DataDirProbe {
    fn database(&self) -> Result<(), String> {
        match std::fs::metadata(&self.data_dir) {
            Ok(metadata) if metadata.is_dir() => Ok(()),
            Ok(_) => Err(format!("{} is not a directory", self.data_dir.display())),
            Err(error) => Err(format!("{}: {error}", self.data_dir.display())),
        }
    }

    fn durability(&self) -> String {
        self.durability.clone()
    }

    fn loss_window_ms(&self) -> u64 {
        self.loss_window_ms
    }
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

    #[test]
    fn data_dir_probe_follows_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let probe = DataDirProbe::new(&config);
        assert!(probe.database().is_err());
        let (status, body) = report(&probe, Instant::now());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["database"], "down");
        std::fs::create_dir(probe.data_dir()).unwrap();
        let (status, body) = report(&probe, Instant::now());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["durability"], "immediate");
        assert_eq!(body["loss_window_ms"], 0);
    }

    #[test]
    fn batched_mode_states_its_loss_window() {
        let config = Config {
            durability: crate::config::DurabilityMode::Batched,
            fsync_interval_ms: 7,
            ..Config::default()
        };
        let probe = DataDirProbe::new(&config);
        assert_eq!(probe.durability(), "batched(7ms)");
        assert_eq!(probe.loss_window_ms(), 7);
    }
}
