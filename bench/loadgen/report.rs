//! `jecp-bench run`: executes a [`RunPlan`] and prints its [`RunReport`] as
//! text or JSON. One report covers every scenario run against one Hub, so the
//! ratios between them (billed invoke vs health) come from the same server in
//! the same run.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::args::{RunPlan, Target};
use crate::client::HttpClient;
use crate::driver::{self, Budget, ScenarioResult};
use crate::hub_process::{self, HubOptions, SpawnedHub};
use crate::machine::Machine;
use crate::progress;
use crate::scenario::{Agent, RequestFactory, ScenarioName};
use crate::setup;

/// Bumped when the JSON shape changes incompatibly.
pub const REPORT_FORMAT: u32 = 1;
/// Connections the spawned Hub accepts at most (above any concurrency allowed).
const SPAWNED_MAX_CONNECTIONS: usize = 70_000;

/// Everything one `jecp-bench run` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub format: u32,
    /// RFC 3339 UTC start time.
    pub started_at: String,
    /// `spawned` (temporary data dir) or `url`.
    pub target: String,
    /// The Hub's own `/health` durability report.
    pub hub_durability: String,
    pub agents: u32,
    pub client_threads: usize,
    pub machine: Machine,
    pub scenarios: Vec<ScenarioResult>,
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|now| {
            now.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A short tag that keeps ids and names of this run apart from earlier runs
/// against the same Hub.
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()))
}

/// A random admin token for a spawned Hub (never printed).
fn generated_admin_token() -> String {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the OS random source is available");
    hex::encode(bytes)
}

pub fn run_plan(plan: RunPlan) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.client_threads)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let mut spawned = None;
    let (base_url, admin_token, target) = match &plan.target {
        Target::Url(url) => (url.clone(), plan.admin_token.clone(), "url"),
        Target::Spawn {
            hub_bin,
            durability,
            fsync_interval_ms,
        } => {
            let hub_bin = match hub_bin {
                Some(path) => path.clone(),
                None => hub_process::sibling_hub_bin()?,
            };
            let admin_token = plan
                .admin_token
                .clone()
                .unwrap_or_else(generated_admin_token);
            let hub = SpawnedHub::start(&HubOptions {
                hub_bin,
                durability: *durability,
                fsync_interval_ms: *fsync_interval_ms,
                admin_token: admin_token.clone(),
                max_connections: SPAWNED_MAX_CONNECTIONS,
            })?;
            let base_url = hub.base_url.clone();
            spawned = Some(hub);
            (base_url, Some(admin_token), "spawned")
        }
    };
    let hub_pid = spawned.as_ref().map(SpawnedHub::pid);
    let result = runtime.block_on(execute(
        &plan,
        &base_url,
        admin_token.as_deref(),
        target,
        hub_pid,
    ));
    if let (Err(_), Some(hub)) = (&result, &spawned) {
        eprintln!("jecp-bench: the Hub's last log lines:\n{}", hub.log_tail());
    }
    drop(spawned);
    let report = result?;
    if plan.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|error| format!("cannot serialise the report: {error}"))?;
        println!("{text}");
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}

async fn execute(
    plan: &RunPlan,
    base_url: &str,
    admin_token: Option<&str>,
    target: &str,
    hub_pid: Option<u32>,
) -> Result<RunReport, String> {
    let started_at = rfc3339_now();
    let machine = Machine::detect();
    let client = HttpClient::new(base_url, plan.shape.pool_size(), plan.timeout);
    let hub_durability = setup::hub_durability(&client).await?;
    let tag = run_tag();
    let needs_agents = plan.scenarios.iter().any(|s| s.needs_agents());
    let agents: Arc<Vec<Agent>> = if needs_agents {
        let token = admin_token.ok_or("the invoke scenarios need an admin token")?;
        Arc::new(setup::prepare_agents(&client, token, &tag, plan.agents).await?)
    } else {
        Arc::new(Vec::new())
    };
    let show_progress = progress::enabled(plan.quiet);
    let budget = Budget {
        warmup: plan.warmup,
        duration: plan.duration,
        requests_max: plan.requests_max,
        timeout: plan.timeout,
    };
    let mut scenarios = Vec::with_capacity(plan.scenarios.len() * plan.rounds as usize);
    let rounds = (0..plan.rounds).flat_map(|round| {
        plan.scenarios
            .iter()
            .enumerate()
            .map(move |(position, &scenario)| (round, position, scenario))
    });
    for (round, position, scenario) in rounds {
        let replay_ids = if scenario == ScenarioName::InvokeReplay {
            setup::prime_replays(&client, &agents, &tag).await?
        } else {
            Vec::new()
        };
        let factory = RequestFactory::new(
            scenario,
            Arc::clone(&agents),
            Arc::new(replay_ids),
            // Fresh request ids in every round.
            format!("{tag}{round}x{position}"),
        );
        let result = driver::run_scenario(
            client.clone(),
            factory,
            scenario,
            plan.shape,
            budget,
            show_progress,
            hub_pid,
        )
        .await;
        let result = ScenarioResult { round, ..result };
        if !plan.quiet {
            eprintln!(
                "{:<14} {:>9.0} req/s  p50 {}  p99 {}  errors {}  cpu µs/req {}",
                result.label(),
                result.throughput_per_s,
                format_us(result.latency_us.p50_us),
                format_us(result.latency_us.p99_us),
                result.errors,
                result.cpu_text()
            );
        }
        scenarios.push(result);
        // Let the writer settle between scenarios so one does not bill the next.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(RunReport {
        format: REPORT_FORMAT,
        started_at,
        target: target.to_owned(),
        hub_durability,
        agents: if needs_agents { plan.agents } else { 0 },
        client_threads: plan.client_threads,
        machine,
        scenarios,
    })
}

/// `850 µs`, `1.25 ms`, `2.0 s`.
pub fn format_us(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.2} ms", micros as f64 / 1_000.0)
    } else {
        format!("{:.1} s", micros as f64 / 1_000_000.0)
    }
}

/// The human-readable report.
pub fn render_text(report: &RunReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "jecp-bench {} | hub durability {} | {} | {} cores, {}, kernel {}\n",
        report.started_at,
        report.hub_durability,
        report.target,
        report.machine.cores,
        report.machine.cpu_model,
        report.machine.kernel
    ));
    out.push_str(&format!(
        "{:<14} {:<14} {:>9} {:>11} {:>10} {:>10} {:>10} {:>10} {:>8}  {}\n",
        "scenario",
        "load",
        "requests",
        "req/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "errors",
        "cpu µs/req hub / client"
    ));
    for result in &report.scenarios {
        let latency = &result.latency_us;
        out.push_str(&format!(
            "{:<14} {:<14} {:>9} {:>11.0} {:>10} {:>10} {:>10} {:>10} {:>8}  {}\n",
            result.label(),
            result.load.short(),
            result.requests,
            result.throughput_per_s,
            format_us(latency.p50_us),
            format_us(latency.p90_us),
            format_us(latency.p99_us),
            format_us(latency.p999_us),
            result.errors,
            result.cpu_text(),
        ));
        for (code, count) in &result.errors_by_code {
            out.push_str(&format!("    {code}: {count}\n"));
        }
        if result.unexpected > 0 {
            out.push_str(&format!(
                "    {} answers were not what the scenario intended\n",
                result.unexpected
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::driver::LoadDescription;
    use crate::stats::LatencySummary;

    fn sample_report() -> RunReport {
        let mut errors_by_code = BTreeMap::new();
        errors_by_code.insert("INVALID_REQUEST".to_owned(), 7);
        RunReport {
            format: REPORT_FORMAT,
            started_at: "2026-11-25T13:00:00Z".into(),
            target: "spawned".into(),
            hub_durability: "immediate".into(),
            agents: 32,
            client_threads: 1,
            machine: Machine {
                cores: 2,
                kernel: "6.1.0".into(),
                cpu_model: "Example CPU".into(),
                os: "linux".into(),
                load_average_1m: Some(0.5),
            },
            scenarios: vec![ScenarioResult {
                scenario: ScenarioName::InvokeMixed,
                round: 0,
                load: LoadDescription::of(crate::args::LoadShape::Closed { concurrency: 256 }),
                warmup_s: 1.0,
                measured_s: 5.0,
                requests: 70,
                ok: 63,
                errors: 7,
                unexpected: 0,
                throughput_per_s: 14.0,
                latency_us: LatencySummary {
                    p50_us: 850,
                    p90_us: 1_250,
                    p99_us: 2_000_000,
                    p999_us: 2_500_000,
                    max_us: 3_000_000,
                    mean_us: 900.0,
                },
                errors_by_code,
                hub_cpu_us_per_request: None,
                client_cpu_us_per_request: Some(21.5),
            }],
        }
    }

    #[test]
    fn microseconds_render_in_a_readable_unit() {
        assert_eq!(format_us(850), "850 µs");
        assert_eq!(format_us(1_250), "1.25 ms");
        assert_eq!(format_us(2_000_000), "2.0 s");
    }

    #[test]
    fn text_report_lists_scenarios_and_error_codes() {
        let text = render_text(&sample_report());
        assert!(text.contains("hub durability immediate"), "{text}");
        assert!(text.contains("invoke-mixed"), "{text}");
        assert!(text.contains("256 conns"), "{text}");
        assert!(
            text.contains("850 µs") && text.contains("1.25 ms"),
            "{text}"
        );
        assert!(text.contains("INVALID_REQUEST: 7"), "{text}");
        // CPU per request: the Hub's unknown (given by --url), the client's read.
        assert!(text.contains("? / 21.5"), "{text}");
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = sample_report();
        let text = serde_json::to_string(&report).unwrap();
        assert!(text.contains(r#""scenario":"invoke-mixed""#), "{text}");
        let back: RunReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        // Reports saved before CPU time was read still load.
        let mut older: serde_json::Value = serde_json::from_str(&text).unwrap();
        for result in older["scenarios"].as_array_mut().unwrap() {
            let result = result.as_object_mut().unwrap();
            result.remove("hub_cpu_us_per_request");
            result.remove("client_cpu_us_per_request");
        }
        let older: RunReport = serde_json::from_value(older).unwrap();
        assert_eq!(older.scenarios[0].client_cpu_us_per_request, None);
    }

    #[test]
    fn run_tags_and_tokens_are_valid_id_material() {
        let tag = run_tag();
        assert!(!tag.is_empty() && tag.len() <= 16);
        assert!(tag.chars().all(|c| c.is_ascii_hexdigit()));
        let token = generated_admin_token();
        assert_eq!(token.len(), 48);
        assert_ne!(token, generated_admin_token());
    }
}
