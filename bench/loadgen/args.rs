//! Command-line arguments and their validation into a [`RunPlan`]: every
//! limit is checked here, once, so the driver can trust its inputs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::ScenarioName;

pub const CONCURRENCY_MAX: u32 = 4_096;
pub const RATE_PER_S_MAX: u64 = 1_000_000;
pub const IN_FLIGHT_MAX: u32 = 65_536;
pub const DURATION_S_MAX: u64 = 600;
pub const WARMUP_S_MAX: u64 = 60;
/// Most repetitions of the scenario list (`--rounds`).
pub const ROUNDS_MAX: u32 = 20;
pub const REQUESTS_MAX: u64 = 100_000_000;
pub const AGENTS_MAX: u32 = 10_000;
pub const TIMEOUT_MS_MAX: u64 = 120_000;
pub const CLIENT_THREADS_MAX: usize = 64;
const ADMIN_TOKEN_LEN_MIN: usize = 16;

/// Load generator and report renderer for jecp-hub benchmarks.
#[derive(Debug, Parser)]
#[command(name = "jecp-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive scenarios against a Hub (spawned on a temporary data dir, or --url).
    Run(RunArgs),
    /// Render Markdown tables from `run --json` outputs and criterion estimates.
    Report(ReportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Immediate,
    Batched,
}

impl DurabilityArg {
    pub fn as_flag(self) -> &'static str {
        match self {
            DurabilityArg::Immediate => "immediate",
            DurabilityArg::Batched => "batched",
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenarios to run in order against the same Hub (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub scenario: Vec<ScenarioName>,
    /// Base URL of a running Hub; without it a Hub is spawned on a temporary data dir.
    #[arg(long)]
    pub url: Option<String>,
    /// The `jecp-hub` binary to spawn [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pub hub_bin: Option<PathBuf>,
    /// Operator API token (needed with --url for the invoke scenarios; generated when spawning).
    #[arg(long, env = "JECP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Durability mode of the spawned Hub.
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Batched mode: the spawned Hub's fsync interval.
    #[arg(long)]
    pub fsync_interval_ms: Option<u32>,
    /// Closed loop: requests in flight at all times (= keep-alive connections).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Open loop: arrivals per second, sent on schedule whatever the latency.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Open loop: most requests in flight; later arrivals wait (and that wait counts as latency).
    #[arg(long, default_value_t = 4_096)]
    pub max_in_flight: u32,
    /// Measured time per scenario.
    #[arg(long, default_value_t = 5)]
    pub duration_s: u64,
    /// Unmeasured warm-up before each scenario.
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Runs the whole scenario list this many times against the same Hub;
    /// the report keeps every round (BENCHMARKS.md shows medians).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Stop a scenario after this many measured requests (whichever comes first with --duration-s).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Agents set up for the invoke scenarios (requests spread over them).
    #[arg(long, default_value_t = 32)]
    pub agents: u32,
    /// Per-request timeout; a timed-out request counts as a `TIMEOUT` error.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Tokio worker threads of the load generator (it shares the machine with a spawned Hub).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Print one JSON document on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// `jecp-bench run --json` outputs.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// criterion's output directory (`target/criterion`).
    #[arg(long, value_name = "DIR")]
    pub criterion_dir: Option<PathBuf>,
    /// The ledger bench's `single-charge-latency.json` (per-charge p50 vs fdatasync p50).
    #[arg(long, value_name = "FILE")]
    pub single_charge_latency: Option<PathBuf>,
    /// Git commit the figures were measured on.
    #[arg(long)]
    pub commit: Option<String>,
    /// The command that produced the figures (shown above the tables).
    #[arg(long)]
    pub command: Option<String>,
    /// Rewrite the part of this Markdown file between `<!-- BEGIN GENERATED -->`
    /// and `<!-- END GENERATED -->` instead of printing the tables.
    #[arg(long, value_name = "FILE")]
    pub into: Option<PathBuf>,
}

/// Where the Hub under test comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Spawn {
        hub_bin: Option<PathBuf>,
        durability: DurabilityArg,
        fsync_interval_ms: Option<u32>,
    },
    Url(String),
}

/// How requests are offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadShape {
    Closed { concurrency: u32 },
    Open { rate_per_s: u64, max_in_flight: u32 },
}

impl LoadShape {
    /// Connections the client pool should keep alive.
    pub fn pool_size(self) -> usize {
        match self {
            LoadShape::Closed { concurrency } => concurrency as usize,
            LoadShape::Open { max_in_flight, .. } => max_in_flight as usize,
        }
    }
}

/// Validated arguments.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub scenarios: Vec<ScenarioName>,
    pub target: Target,
    pub admin_token: Option<String>,
    pub shape: LoadShape,
    pub duration: Duration,
    pub warmup: Duration,
    pub requests_max: Option<u64>,
    pub rounds: u32,
    pub agents: u32,
    pub timeout: Duration,
    pub client_threads: usize,
    pub json: bool,
    pub quiet: bool,
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    low: T,
    high: T,
) -> Result<(), String> {
    if value < low || value > high {
        return Err(format!("--{name} must be {low}..={high}, got {value}"));
    }
    Ok(())
}

impl RunArgs {
    pub fn validate(self) -> Result<RunPlan, String> {
        let mut seen = Vec::new();
        for scenario in &self.scenario {
            if seen.contains(scenario) {
                return Err(format!("scenario {} is listed twice", scenario.as_str()));
            }
            seen.push(*scenario);
        }
        check_range("concurrency", self.concurrency, 1, CONCURRENCY_MAX)?;
        check_range("max-in-flight", self.max_in_flight, 1, IN_FLIGHT_MAX)?;
        check_range("duration-s", self.duration_s, 1, DURATION_S_MAX)?;
        check_range("warmup-s", self.warmup_s, 0, WARMUP_S_MAX)?;
        check_range("rounds", self.rounds, 1, ROUNDS_MAX)?;
        check_range("agents", self.agents, 1, AGENTS_MAX)?;
        check_range("timeout-ms", self.timeout_ms, 1, TIMEOUT_MS_MAX)?;
        check_range("client-threads", self.client_threads, 1, CLIENT_THREADS_MAX)?;
        if let Some(requests) = self.requests {
            check_range("requests", requests, 1, REQUESTS_MAX)?;
        }
        let shape = match self.rate {
            Some(rate_per_s) => {
                check_range("rate", rate_per_s, 1, RATE_PER_S_MAX)?;
                LoadShape::Open {
                    rate_per_s,
                    max_in_flight: self.max_in_flight,
                }
            }
            None => LoadShape::Closed {
                concurrency: self.concurrency,
            },
        };
        if let Some(token) = &self.admin_token
            && token.len() < ADMIN_TOKEN_LEN_MIN
        {
            return Err(format!(
                "--admin-token must be at least {ADMIN_TOKEN_LEN_MIN} characters"
            ));
        }
        let target = match self.url {
            Some(url) => {
                if self.durability.is_some() || self.fsync_interval_ms.is_some() {
                    return Err(
                        "--durability and --fsync-interval-ms configure a spawned Hub; \
                         with --url the Hub's own configuration applies"
                            .into(),
                    );
                }
                if self.hub_bin.is_some() {
                    return Err("--hub-bin and --url are exclusive".into());
                }
                let url = url.trim_end_matches('/').to_owned();
                if !url.starts_with("http://") {
                    return Err(format!("--url must be an http:// URL, got {url:?}"));
                }
                let needs_operator = self.scenario.iter().any(|s| s.needs_agents());
                if needs_operator && self.admin_token.is_none() {
                    return Err(
                        "the invoke scenarios set agents up through the operator API: \
                         give --admin-token (or JECP_ADMIN_TOKEN) with --url"
                            .into(),
                    );
                }
                Target::Url(url)
            }
            None => {
                if let Some(interval) = self.fsync_interval_ms {
                    check_range("fsync-interval-ms", interval, 1, 1_000)?;
                    if self.durability != Some(DurabilityArg::Batched) {
                        return Err("--fsync-interval-ms needs --durability batched".into());
                    }
                }
                Target::Spawn {
                    hub_bin: self.hub_bin,
                    durability: self.durability.unwrap_or(DurabilityArg::Immediate),
                    fsync_interval_ms: self.fsync_interval_ms,
                }
            }
        };
        Ok(RunPlan {
            scenarios: self.scenario,
            target,
            admin_token: self.admin_token,
            shape,
            duration: Duration::from_secs(self.duration_s),
            warmup: Duration::from_secs(self.warmup_s),
            requests_max: self.requests,
            rounds: self.rounds,
            agents: self.agents,
            timeout: Duration::from_millis(self.timeout_ms),
            client_threads: self.client_threads,
            json: self.json,
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &[&str]) -> Result<RunPlan, String> {
        let mut argv = vec!["jecp-bench", "run"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|error| error.to_string())?;
        match cli.command {
            Command::Run(run) => run.validate(),
            Command::Report(_) => Err("parsed as report".into()),
        }
    }

    #[test]
    fn defaults_give_a_closed_loop_against_a_spawned_immediate_hub() {
        let plan = plan(&["--scenario", "health,invoke-echo"]).unwrap();
        assert_eq!(
            plan.scenarios,
            vec![ScenarioName::Health, ScenarioName::InvokeEcho]
        );
        assert_eq!(plan.shape, LoadShape::Closed { concurrency: 64 });
        assert_eq!(
            plan.target,
            Target::Spawn {
                hub_bin: None,
                durability: DurabilityArg::Immediate,
                fsync_interval_ms: None
            }
        );
        assert_eq!(plan.duration, Duration::from_secs(5));
        assert_eq!(plan.shape.pool_size(), 64);
    }

    #[test]
    fn rate_selects_the_open_loop() {
        let plan = plan(&["--scenario", "health", "--rate", "2000"]).unwrap();
        assert_eq!(
            plan.shape,
            LoadShape::Open {
                rate_per_s: 2_000,
                max_in_flight: 4_096
            }
        );
    }

    #[test]
    fn out_of_range_values_are_rejected_with_the_flag_name() {
        let error = plan(&["--scenario", "health", "--concurrency", "0"]).unwrap_err();
        assert!(error.contains("--concurrency"), "{error}");
        let error = plan(&["--scenario", "health", "--concurrency", "5000"]).unwrap_err();
        assert!(error.contains("--concurrency"), "{error}");
        let error = plan(&["--scenario", "health", "--duration-s", "601"]).unwrap_err();
        assert!(error.contains("--duration-s"), "{error}");
        let error = plan(&["--scenario", "health", "--rounds", "0"]).unwrap_err();
        assert!(error.contains("--rounds"), "{error}");
        assert_eq!(
            plan(&["--scenario", "health", "--rounds", "3"])
                .unwrap()
                .rounds,
            3
        );
        let error = plan(&["--scenario", "health", "--rate", "0"]).unwrap_err();
        assert!(error.contains("--rate"), "{error}");
        let error = plan(&["--scenario", "health", "--requests", "0"]).unwrap_err();
        assert!(error.contains("--requests"), "{error}");
    }

    #[test]
    fn duplicate_and_unknown_scenarios_are_rejected() {
        let error = plan(&["--scenario", "health,health"]).unwrap_err();
        assert!(error.contains("twice"), "{error}");
        assert!(plan(&["--scenario", "nope"]).is_err());
        assert!(plan(&[]).is_err());
    }

    #[test]
    fn url_mode_needs_a_token_for_invoke_scenarios_and_refuses_spawn_flags() {
        let error =
            plan(&["--scenario", "invoke-echo", "--url", "http://127.0.0.1:1"]).unwrap_err();
        assert!(error.contains("--admin-token"), "{error}");
        assert!(plan(&["--scenario", "health", "--url", "http://127.0.0.1:1"]).is_ok());
        let error = plan(&[
            "--scenario",
            "health",
            "--url",
            "http://127.0.0.1:1",
            "--durability",
            "batched",
        ])
        .unwrap_err();
        assert!(error.contains("--durability"), "{error}");
        let error = plan(&["--scenario", "health", "--url", "https://x"]).unwrap_err();
        assert!(error.contains("http://"), "{error}");
    }

    #[test]
    fn fsync_interval_needs_batched_mode() {
        let error = plan(&["--scenario", "health", "--fsync-interval-ms", "5"]).unwrap_err();
        assert!(error.contains("batched"), "{error}");
        let plan = plan(&[
            "--scenario",
            "health",
            "--durability",
            "batched",
            "--fsync-interval-ms",
            "5",
        ])
        .unwrap();
        assert!(matches!(
            plan.target,
            Target::Spawn {
                fsync_interval_ms: Some(5),
                ..
            }
        ));
    }

    #[test]
    fn short_admin_tokens_are_rejected() {
        let error = plan(&["--scenario", "health", "--admin-token", "short"]).unwrap_err();
        assert!(error.contains("16"), "{error}");
    }
}
