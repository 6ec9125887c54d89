//! Spawning the Hub under test: the `jecp-hub` binary on a fresh temporary
//! data directory, port 0, and the flags a benchmark needs (billed calls from
//! the first one, registration not rate limited). The port comes from the
//! `listening on` log line. Dropping [`SpawnedHub`] stops the process
//! (SIGTERM, then SIGKILL after a grace period) and deletes the directory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::args::DurabilityArg;

/// Longest wait for the `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a graceful exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Log lines kept to explain a failed start.
const LOG_TAIL_LINES: usize = 20;
/// The highest per-IP registration rate the Hub accepts (its `RPM_MAX`).
const REGISTRATION_PER_MINUTE_MAX: u32 = 1_000_000;

#[derive(Debug)]
pub struct HubOptions {
    pub hub_bin: PathBuf,
    pub durability: DurabilityArg,
    pub fsync_interval_ms: Option<u32>,
    pub admin_token: String,
    pub max_connections: usize,
}

/// A running `jecp-hub serve` child.
#[derive(Debug)]
pub struct SpawnedHub {
    child: Child,
    data_dir: PathBuf,
    pub base_url: String,
    log_tail: Arc<Mutex<Vec<String>>>,
}

/// The `jecp-hub` binary next to this executable (same cargo target dir).
pub fn sibling_hub_bin() -> Result<PathBuf, String> {
    let current = std::env::current_exe()
        .map_err(|error| format!("cannot locate this executable: {error}"))?;
    let candidate = current.with_file_name(format!("jecp-hub{}", std::env::consts::EXE_SUFFIX));
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "no jecp-hub binary at {}; build it (cargo build --release --bins) or pass --hub-bin",
            candidate.display()
        ))
    }
}

/// The address in a `listening on 127.0.0.1:NNNN` log line.
pub fn parse_listening_line(line: &str) -> Option<std::net::SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    let address = rest.split_whitespace().next()?;
    address.parse().ok()
}

fn unique_data_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("jecp-bench-{}-{nanos}", std::process::id()))
}

impl SpawnedHub {
    /// The Hub's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(options: &HubOptions) -> Result<SpawnedHub, String> {
        let data_dir = unique_data_dir();
        let mut command = Command::new(&options.hub_bin);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--durability")
            .arg(options.durability.as_flag())
            .arg("--free-calls-per-agent")
            .arg("0")
            .arg("--registration-per-minute-per-ip")
            .arg(REGISTRATION_PER_MINUTE_MAX.to_string())
            .arg("--max-connections")
            .arg(options.max_connections.to_string())
            .arg("--log-format")
            .arg("text")
            // The token goes through the environment, not the process list.
            .env("JECP_ADMIN_TOKEN", &options.admin_token)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(interval) = options.fsync_interval_ms {
            command.arg("--fsync-interval-ms").arg(interval.to_string());
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", options.hub_bin.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log_tail = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let tail = Arc::clone(&log_tail);
        // Drains the Hub's log for its whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = parse_listening_line(&line)
                    && let Some(sender) = address_tx.take()
                {
                    let _ = sender.send(address);
                }
                let mut tail = tail.lock().expect("log tail lock");
                if tail.len() == LOG_TAIL_LINES {
                    tail.remove(0);
                }
                tail.push(line);
            }
        });
        let mut hub = SpawnedHub {
            child,
            data_dir,
            base_url: String::new(),
            log_tail,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match address_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(address) => {
                    hub.base_url = format!("http://{address}");
                    return Ok(hub);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = hub.child.try_wait() {
                        return Err(format!(
                            "jecp-hub exited ({status}) before listening:\n{}",
                            hub.log_tail()
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "jecp-hub did not report its address within {START_TIMEOUT:?}:\n{}",
                            hub.log_tail()
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The reader ended: the Hub closed stderr, i.e. it exited.
                    let _ = hub.child.wait();
                    return Err(format!(
                        "jecp-hub stopped before listening:\n{}",
                        hub.log_tail()
                    ));
                }
            }
        }
    }

    pub fn log_tail(&self) -> String {
        self.log_tail.lock().expect("log tail lock").join("\n")
    }

    /// SIGTERM, wait for the graceful exit, SIGKILL if it takes too long.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpawnedHub {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_yields_the_address() {
        let line = "2026-11-25T13:00:00Z  INFO jecp_hub: listening on 127.0.0.1:41234 data_dir=/tmp/x durability=immediate";
        assert_eq!(
            parse_listening_line(line),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(parse_listening_line("store loaded agents=0"), None);
        assert_eq!(parse_listening_line("listening on nowhere"), None);
    }

    #[test]
    fn data_dirs_are_unique_under_the_temp_dir() {
        let first = unique_data_dir();
        std::thread::sleep(Duration::from_millis(1));
        let second = unique_data_dir();
        assert_ne!(first, second);
        assert!(first.starts_with(std::env::temp_dir()));
    }
}
