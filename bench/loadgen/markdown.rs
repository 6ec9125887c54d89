//! `jecp-bench report`: the Markdown tables of `BENCHMARKS.md`, rendered from
//! `run --json` documents and criterion's saved estimates, including the
//! issue targets and whether each is met. Nothing here is typed by hand: a
//! figure that was not measured says so.

use std::fmt::Write as _;

use crate::args::ReportArgs;
use crate::criterion_data::{self, CriterionEstimate, SingleChargeLatency};
use crate::driver::ScenarioResult;
use crate::report::{RunReport, format_us};
use crate::scenario::ScenarioName;

pub fn run_report(args: &ReportArgs) -> Result<(), String> {
    let mut runs = Vec::with_capacity(args.runs.len());
    for path in &args.runs {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        let run: RunReport = serde_json::from_str(&text)
            .map_err(|error| format!("{} is not a jecp-bench report: {error}", path.display()))?;
        runs.push(run);
    }
    let criterion = match &args.criterion_dir {
        Some(dir) if dir.is_dir() => criterion_data::load_dir(dir)?,
        _ => Vec::new(),
    };
    let latency = match &args.single_charge_latency {
        Some(path) if path.is_file() => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("reading {}: {error}", path.display()))?;
            Some(
                criterion_data::parse_single_charge(&text)
                    .map_err(|error| format!("{}: {error}", path.display()))?,
            )
        }
        _ => None,
    };
    let generated = render(
        &runs,
        &criterion,
        latency.as_ref(),
        args.commit.as_deref(),
        args.command.as_deref(),
    );
    match &args.into {
        None => print!("{generated}"),
        Some(path) => {
            let document = std::fs::read_to_string(path)
                .map_err(|error| format!("reading {}: {error}", path.display()))?;
            let updated = splice(&document, &generated)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            std::fs::write(path, updated)
                .map_err(|error| format!("writing {}: {error}", path.display()))?;
        }
    }
    Ok(())
}

pub const BEGIN_MARKER: &str = "<!-- BEGIN GENERATED -->";
pub const END_MARKER: &str = "<!-- END GENERATED -->";

/// Replaces what lies between the markers (exclusive) with `generated`,
/// leaving the hand-written text around them untouched.
pub fn splice(document: &str, generated: &str) -> Result<String, String> {
    let begin = document
        .find(BEGIN_MARKER)
        .ok_or(format!("no {BEGIN_MARKER} line"))?;
    let after_begin = begin + BEGIN_MARKER.len();
    let end = document[after_begin..]
        .find(END_MARKER)
        .map(|offset| after_begin + offset)
        .ok_or(format!("no {END_MARKER} after {BEGIN_MARKER}"))?;
    if document[end + END_MARKER.len()..].contains(BEGIN_MARKER) {
        return Err("more than one generated section".into());
    }
    Ok(format!(
        "{}\n\n{}\n{}",
        &document[..after_begin],
        generated.trim_end(),
        &document[end..]
    ))
}

/// `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `386 ns`, `1.25 µs`, `3.10 ms`.
pub fn format_ns(nanos: f64) -> String {
    if nanos < 1_000.0 {
        format!("{nanos:.0} ns")
    } else if nanos < 1_000_000.0 {
        format!("{:.2} µs", nanos / 1_000.0)
    } else {
        format!("{:.2} ms", nanos / 1_000_000.0)
    }
}

fn mode_of(run: &RunReport) -> &str {
    if run.hub_durability.starts_with("batched") {
        "batched"
    } else if run.hub_durability.starts_with("immediate") {
        "immediate"
    } else {
        "unknown"
    }
}

fn find(run: &RunReport, scenario: ScenarioName) -> Option<&ScenarioResult> {
    median_results(run)
        .into_iter()
        .find(|result| result.scenario == scenario)
}

/// How many times the run repeated its scenario list (`--rounds`).
fn rounds(run: &RunReport) -> u32 {
    run.scenarios
        .iter()
        .map(|result| result.round + 1)
        .max()
        .unwrap_or(0)
}

/// One result per scenario and load, in run order: with several rounds, the
/// round with the median throughput (the lower middle for an even count).
fn median_results(run: &RunReport) -> Vec<&ScenarioResult> {
    let mut groups: Vec<Vec<&ScenarioResult>> = Vec::new();
    for result in &run.scenarios {
        let same = |other: &&ScenarioResult| {
            other.scenario == result.scenario && other.load == result.load
        };
        match groups
            .iter_mut()
            .find(|group| group.first().is_some_and(same))
        {
            Some(group) => group.push(result),
            None => groups.push(vec![result]),
        }
    }
    groups
        .into_iter()
        .map(|mut group| {
            group.sort_by(|a, b| a.throughput_per_s.total_cmp(&b.throughput_per_s));
            group[(group.len() - 1) / 2]
        })
        .collect()
}

/// Billed invoke over health throughput, per round that measured both with
/// every answer as the scenario intended, and how many rounds were left out
/// for unintended answers: a round whose wallets ran dry answered fast 402s,
/// not billed calls, and would flatter the ratio.
fn round_ratios(run: &RunReport) -> (Vec<f64>, usize) {
    let mut left_out = 0;
    let ratios = (0..rounds(run))
        .filter_map(|round| {
            let in_round = |scenario| {
                run.scenarios
                    .iter()
                    .find(|result| result.round == round && result.scenario == scenario)
            };
            let (health, echo) = (
                in_round(ScenarioName::Health)?,
                in_round(ScenarioName::InvokeEcho)?,
            );
            if health.unexpected > 0 || echo.unexpected > 0 {
                left_out += 1;
                return None;
            }
            (health.throughput_per_s > 0.0).then(|| echo.throughput_per_s / health.throughput_per_s)
        })
        .collect();
    (ratios, left_out)
}

fn estimate<'a>(criterion: &'a [CriterionEstimate], id: &str) -> Option<&'a CriterionEstimate> {
    criterion.iter().find(|estimate| estimate.id == id)
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

/// One row of the targets table.
#[derive(Debug, PartialEq)]
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    pub verdict: String,
}

fn row(
    target: impl Into<String>,
    measured: impl Into<String>,
    verdict: impl Into<String>,
) -> TargetRow {
    TargetRow {
        target: target.into(),
        measured: measured.into(),
        verdict: verdict.into(),
    }
}

const NOT_MEASURED: &str = "not measured in this run";

/// The median-round `health` and `invoke-echo` results of the first run in
/// durability `mode` that measured both.
fn health_and_echo<'a>(
    runs: &'a [RunReport],
    mode: &str,
) -> Option<(&'a ScenarioResult, &'a ScenarioResult)> {
    runs.iter()
        .filter(|run| mode_of(run) == mode)
        .find_map(|run| {
            Some((
                find(run, ScenarioName::Health)?,
                find(run, ScenarioName::InvokeEcho)?,
            ))
        })
}

/// What a billed call costs the Hub in CPU against a health check, in
/// `immediate` mode: the quantity behind the throughput ratio, which the
/// cores shared with the load generator and other tenants move less.
fn cpu_row(runs: &[RunReport]) -> TargetRow {
    let target = "Hub CPU per billed `invoke-echo` vs per `GET /health`, `immediate` (context for the ratio)";
    let measured = health_and_echo(runs, "immediate").and_then(|(health, echo)| {
        let (health_us, echo_us) = (health.hub_cpu_us_per_request?, echo.hub_cpu_us_per_request?);
        let client = match (
            echo.client_cpu_us_per_request,
            health.client_cpu_us_per_request,
        ) {
            (Some(echo_client), Some(health_client)) => {
                format!("; load generator {echo_client:.1} vs {health_client:.1} µs")
            }
            _ => String::new(),
        };
        (health_us > 0.0).then(|| {
            format!(
                "{echo_us:.1} µs vs {health_us:.1} µs ({:.2}×{client})",
                echo_us / health_us
            )
        })
    });
    match measured {
        Some(measured) => row(target, measured, "reported"),
        None => row(target, NOT_MEASURED, "—"),
    }
}

/// Issue 5: billed `invoke-echo` throughput over `GET /health` throughput.
const BILLED_TO_HEALTH_MIN: f64 = 0.5;

/// [`BILLED_TO_HEALTH_MIN`] as the report writes it: "≥ 50%".
fn target_text() -> String {
    format!("≥ {:.0}%", BILLED_TO_HEALTH_MIN * 100.0)
}

/// Chance a run of rounds may have of reading as "met" (or "not met") when
/// the billed path in truth sits on the line.
const CHANCE_MAX: f64 = 0.05;

/// The chance of `reached` or more heads in `rounds` fair coin flips.
fn chance_of_at_least(rounds: usize, reached: usize) -> f64 {
    let mut ways = 1.0_f64; // C(rounds, 0)
    let mut total = 0.0;
    for heads in 0..=rounds {
        if heads >= reached {
            total += ways;
        }
        ways = ways * (rounds - heads) as f64 / (heads + 1) as f64;
    }
    total / 2f64.powi(i32::try_from(rounds).unwrap_or(i32::MAX))
}

/// How many per-round ratios reach the issue-5 target on their own.
fn rounds_at_target(ratios: &[f64]) -> usize {
    ratios
        .iter()
        .filter(|&&ratio| ratio >= BILLED_TO_HEALTH_MIN)
        .count()
}

/// The issue-5 verdict over the per-round ratios. One round is judged by
/// its value. Over several, the median alone flips with the noise when the
/// path sits near 50% (one published run read "met" at 51.5% with 4 of 10
/// rounds below), so it is a sign test: **met** when so many rounds reach
/// the target that rounds landing on either side of it by chance would
/// reach it that often less than [`CHANCE_MAX`] of the time (which is also
/// when the median's 95% lower confidence bound clears it), **not met**
/// when that few do, and otherwise on the line, which is not met either.
fn ratio_verdict(ratios: &[f64]) -> String {
    let rounds = ratios.len();
    let reached = rounds_at_target(ratios);
    if rounds == 1 {
        return verdict(reached == 1).to_owned();
    }
    if chance_of_at_least(rounds, reached) <= CHANCE_MAX {
        return verdict(true).to_owned();
    }
    // At most `reached` heads is as likely as at least `rounds - reached` tails.
    if chance_of_at_least(rounds, rounds - reached) <= CHANCE_MAX {
        return verdict(false).to_owned();
    }
    match (reached..=rounds).find(|&count| chance_of_at_least(rounds, count) <= CHANCE_MAX) {
        Some(needed) => format!(
            "{} (on the line: it takes {needed} of {rounds} rounds at {})",
            verdict(false),
            target_text()
        ),
        None => {
            let rounds_min = (1..)
                .find(|&count| chance_of_at_least(count, count) <= CHANCE_MAX)
                .unwrap_or(rounds + 1);
            format!(
                "{} ({rounds} rounds cannot show it; run {rounds_min} or more)",
                verdict(false)
            )
        }
    }
}

/// The issue 3/4/5 targets against what was measured.
pub fn target_rows(
    runs: &[RunReport],
    criterion: &[CriterionEstimate],
    latency: Option<&SingleChargeLatency>,
) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    for mode in ["immediate", "batched"] {
        let pair = health_and_echo(runs, mode);
        let target = if mode == "immediate" {
            format!(
                "Billed `invoke-echo` {} of `GET /health` throughput, 256 keep-alive conns, `immediate`, same server and run (issue 5)",
                target_text()
            )
        } else {
            "Same ratio in `batched` mode (for comparison)".to_owned()
        };
        let (mut ratios, left_out) = runs
            .iter()
            .find(|run| mode_of(run) == mode)
            .map(round_ratios)
            .unwrap_or_default();
        ratios.sort_by(f64::total_cmp);
        match pair {
            Some((health, echo)) if !ratios.is_empty() => {
                // The median of the per-round ratios: each round measures
                // both scenarios minutes apart on the same Hub.
                let ratio = ratios[(ratios.len() - 1) / 2];
                let at_256 = echo.load.concurrency == Some(256);
                // How many rounds reach the target on their own: a median a
                // hair above 50% with half the rounds below it is not the
                // same result as one with every round above.
                let spread = if ratios.len() > 1 {
                    format!(
                        "median of {} rounds, {:.0}–{:.0}%, {} of {} at {}; ",
                        ratios.len(),
                        ratios[0] * 100.0,
                        ratios[ratios.len() - 1] * 100.0,
                        rounds_at_target(&ratios),
                        ratios.len(),
                        target_text()
                    )
                } else {
                    String::new()
                };
                let spread = if left_out > 0 {
                    format!("{spread}{left_out} more left out for unintended answers; ")
                } else {
                    spread
                };
                // One decimal: a median of 49.8% must not read as "50%" beside "not met".
                let measured = format!(
                    "{:.1}% ({spread}{} vs {} req/s, {})",
                    ratio * 100.0,
                    thousands(echo.throughput_per_s as u64),
                    thousands(health.throughput_per_s as u64),
                    echo.load.short()
                );
                let judged = if mode != "immediate" {
                    "—".to_owned()
                } else if at_256 {
                    ratio_verdict(&ratios)
                } else {
                    format!("{} (not at 256 conns)", ratio_verdict(&ratios))
                };
                rows.push(row(target, measured, judged));
            }
            _ => rows.push(row(target, NOT_MEASURED, "—")),
        }
    }
    rows.push(cpu_row(runs));
    for mode in ["immediate", "batched"] {
        let echo = runs
            .iter()
            .filter(|run| mode_of(run) == mode)
            .find_map(|run| find(run, ScenarioName::InvokeEcho));
        let target = format!("Billed `invoke-echo` p50 / p99, `{mode}` (issue 5)");
        match echo {
            Some(echo) => rows.push(row(
                target,
                format!(
                    "{} / {} ({})",
                    format_us(echo.latency_us.p50_us),
                    format_us(echo.latency_us.p99_us),
                    echo.load.short()
                ),
                "reported",
            )),
            None => rows.push(row(target, NOT_MEASURED, "—")),
        }
    }
    let throughput_target =
        |rows: &mut Vec<TargetRow>, target: &str, id: &str, minimum: f64| match estimate(
            criterion, id,
        ) {
            Some(found) => rows.push(row(
                target,
                format!("{}/s (`{id}`)", thousands(found.ops_per_s() as u64)),
                verdict(found.ops_per_s() >= minimum),
            )),
            None => rows.push(row(target, format!("{NOT_MEASURED} (`{id}`)"), "—")),
        };
    throughput_target(
        &mut rows,
        "In-memory hold+post ≥ 1,000,000/s on one core (issue 3)",
        "ledger_in_memory/hold_post",
        1_000_000.0,
    );
    throughput_target(
        &mut rows,
        "Durable charges ≥ 100,000/s with 4,096 submitters, `immediate` (issue 3)",
        "store_durable/immediate/4096",
        100_000.0,
    );
    throughput_target(
        &mut rows,
        "Same with `batched` (2 ms fsync interval), for comparison",
        "store_durable/batched_2ms/4096",
        100_000.0,
    );
    let single = "Single durable charge p50 ≤ 1.5 × raw 4 KiB fdatasync p50 (issue 3)";
    match latency {
        Some(latency) if latency.fdatasync_p50_ns > 0.0 => {
            let ratio = latency.charge_p50_ns / latency.fdatasync_p50_ns;
            rows.push(row(
                single,
                format!(
                    "{ratio:.2} × ({} vs {}; p99 {} vs {}; {} of each, interleaved)",
                    format_ns(latency.charge_p50_ns),
                    format_ns(latency.fdatasync_p50_ns),
                    format_ns(latency.charge_p99_ns),
                    format_ns(latency.fdatasync_p99_ns),
                    thousands(latency.samples)
                ),
                verdict(ratio <= 1.5),
            ));
        }
        _ => rows.push(row(
            single,
            format!("{NOT_MEASURED} (`single-charge-latency.json` of the ledger bench)"),
            "—",
        )),
    }
    let medians = "Same, as criterion medians of per-sample means (checkpoint stalls included)";
    match (
        estimate(criterion, "store_durable/immediate/1"),
        estimate(criterion, "disk/fdatasync_4k"),
    ) {
        (Some(charge), Some(sync)) if sync.per_op_ns() > 0.0 => {
            let ratio = charge.per_op_ns() / sync.per_op_ns();
            rows.push(row(
                medians,
                format!(
                    "{ratio:.2} × ({} vs {})",
                    format_ns(charge.per_op_ns()),
                    format_ns(sync.per_op_ns())
                ),
                "reported",
            ));
        }
        _ => rows.push(row(
            medians,
            format!("{NOT_MEASURED} (`store_durable/immediate/1`, `disk/fdatasync_4k`)"),
            "—",
        )),
    }
    for (target, id) in [
        (
            "Key verification per op, 10k agents (issue 4)",
            "authenticate/valid_key_10k_agents",
        ),
        (
            "Provenance v2 verification per op (issue 4)",
            "provenance/verify_v2",
        ),
    ] {
        match estimate(criterion, id) {
            Some(found) => rows.push(row(
                target,
                format!("{} (`{id}`)", format_ns(found.per_op_ns())),
                "reported",
            )),
            None => rows.push(row(target, format!("{NOT_MEASURED} (`{id}`)"), "—")),
        }
    }
    rows
}

/// The whole generated section.
pub fn render(
    runs: &[RunReport],
    criterion: &[CriterionEstimate],
    latency: Option<&SingleChargeLatency>,
    commit: Option<&str>,
    command: Option<&str>,
) -> String {
    let mut out = String::new();
    let started = runs
        .iter()
        .map(|run| run.started_at.as_str())
        .min()
        .unwrap_or("no load runs");
    let _ = writeln!(
        out,
        "_Generated from the runs started {started}{}{}._\n",
        commit
            .map(|c| format!(", commit `{c}`"))
            .unwrap_or_default(),
        command.map(|c| format!(", by `{c}`")).unwrap_or_default(),
    );
    if let Some(run) = runs.first() {
        let machine = &run.machine;
        let loads: Vec<String> = runs
            .iter()
            .filter_map(|run| run.machine.load_average_1m)
            .map(|load| format!("{load:.2}"))
            .collect();
        let load_note = if loads.is_empty() {
            String::new()
        } else {
            format!(
                " 1-minute load average as each load run started: {}.",
                loads.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "**Machine:** {} cores, {}, kernel {} ({}). The load generator ({} client thread{}) and the Hub share these cores.{load_note}\n",
            machine.cores,
            machine.cpu_model,
            machine.kernel,
            machine.os,
            run.client_threads,
            if run.client_threads == 1 { "" } else { "s" }
        );
    }

    out.push_str("### Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    for target in target_rows(runs, criterion, latency) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            target.target, target.measured, target.verdict
        );
    }

    out.push_str("\n### HTTP scenarios (`jecp-bench run`)\n\n");
    if let Some(most) = runs.iter().map(rounds).max().filter(|most| *most > 1) {
        let _ = writeln!(
            out,
            "Runs with several rounds repeated their scenario list up to {most} times on the same Hub; \
             each row is the round with the median throughput.\n"
        );
    }
    out.push_str("CPU µs/req is CPU time (user + system, all threads) over the measured window per measured request, for the Hub and for the load generator.\n\n");
    out.push_str("| durability | scenario | load | requests | req/s | p50 | p90 | p99 | p99.9 | CPU µs/req (Hub / client) | errors by code |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for run in runs {
        for result in median_results(run) {
            let latency = &result.latency_us;
            let errors = if result.errors_by_code.is_empty() {
                "none".to_owned()
            } else {
                result
                    .errors_by_code
                    .iter()
                    .map(|(code, count)| format!("{code} {}", thousands(*count)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let unexpected = if result.unexpected > 0 {
                format!(" ({} unexpected)", thousands(result.unexpected))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {errors}{unexpected} |",
                run.hub_durability,
                result.scenario.as_str(),
                result.load.short(),
                thousands(result.requests),
                thousands(result.throughput_per_s as u64),
                format_us(latency.p50_us),
                format_us(latency.p90_us),
                format_us(latency.p99_us),
                format_us(latency.p999_us),
                result.cpu_text(),
            );
        }
    }

    out.push_str("\n### Micro-benchmarks (criterion, median per iteration [95% CI])\n\n");
    if criterion.is_empty() {
        out.push_str("No criterion results were found.\n");
    } else {
        out.push_str("| benchmark | median | 95% CI | ops/s |\n|---|---:|---|---:|\n");
        for found in criterion {
            let _ = writeln!(
                out,
                "| `{}` | {} | [{}, {}] | {} |",
                found.id,
                format_ns(found.median_ns),
                format_ns(found.median_low_ns),
                format_ns(found.median_high_ns),
                thousands(found.ops_per_s() as u64)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::args::LoadShape;
    use crate::driver::LoadDescription;
    use crate::machine::Machine;
    use crate::stats::LatencySummary;

    fn result(scenario: ScenarioName, throughput_per_s: f64) -> ScenarioResult {
        ScenarioResult {
            scenario,
            round: 0,
            load: LoadDescription::of(LoadShape::Closed { concurrency: 256 }),
            warmup_s: 1.0,
            measured_s: 5.0,
            requests: (throughput_per_s * 5.0) as u64,
            ok: (throughput_per_s * 5.0) as u64,
            errors: 0,
            unexpected: 0,
            throughput_per_s,
            latency_us: LatencySummary {
                p50_us: 900,
                p90_us: 1_500,
                p99_us: 4_000,
                p999_us: 9_000,
                max_us: 12_000,
                mean_us: 1_000.0,
            },
            errors_by_code: BTreeMap::new(),
            hub_cpu_us_per_request: Some(if scenario == ScenarioName::Health {
                11.0
            } else {
                48.0
            }),
            client_cpu_us_per_request: Some(if scenario == ScenarioName::Health {
                13.0
            } else {
                18.0
            }),
        }
    }

    fn run(durability: &str, health: f64, echo: f64) -> RunReport {
        RunReport {
            format: crate::report::REPORT_FORMAT,
            started_at: "2026-11-25T13:30:00Z".into(),
            target: "spawned".into(),
            hub_durability: durability.into(),
            agents: 32,
            client_threads: 1,
            machine: Machine {
                cores: 2,
                kernel: "6.1".into(),
                cpu_model: "Example CPU".into(),
                os: "linux".into(),
                load_average_1m: Some(1.25),
            },
            scenarios: vec![
                result(ScenarioName::Health, health),
                result(ScenarioName::InvokeEcho, echo),
            ],
        }
    }

    fn criterion_entry(id: &str, median_ns: f64) -> CriterionEstimate {
        CriterionEstimate {
            id: id.into(),
            median_ns,
            median_low_ns: median_ns * 0.9,
            median_high_ns: median_ns * 1.1,
            elements: Some(1),
        }
    }

    #[test]
    fn splice_replaces_only_the_generated_section() {
        let document = "# Title\n\nintro\n<!-- BEGIN GENERATED -->\nold table\n<!-- END GENERATED -->\n\noutro\n";
        let updated = splice(document, "new table\n").unwrap();
        assert_eq!(
            updated,
            "# Title\n\nintro\n<!-- BEGIN GENERATED -->\n\nnew table\n<!-- END GENERATED -->\n\noutro\n"
        );
        // Splicing again gives the same document (stable regeneration).
        assert_eq!(splice(&updated, "new table").unwrap(), updated);
        assert!(splice("no markers", "x").unwrap_err().contains("BEGIN"));
        assert!(
            splice("<!-- BEGIN GENERATED -->", "x")
                .unwrap_err()
                .contains("END")
        );
        let twice = format!("{document}{document}");
        assert!(splice(&twice, "x").unwrap_err().contains("more than one"));
    }

    #[test]
    fn numbers_are_grouped_and_times_scaled() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(format_ns(386.4), "386 ns");
        assert_eq!(format_ns(1_250.0), "1.25 µs");
        assert_eq!(format_ns(3_100_000.0), "3.10 ms");
    }

    #[test]
    fn throughput_ratio_target_is_judged_per_mode() {
        let runs = [
            run("immediate", 10_000.0, 6_000.0),
            run("batched(5ms)", 10_000.0, 4_000.0),
        ];
        let rows = target_rows(&runs, &[], None);
        assert_eq!(rows[0].measured, "60.0% (6,000 vs 10,000 req/s, 256 conns)");
        assert_eq!(rows[0].verdict, "**met**");
        assert!(rows[1].measured.starts_with("40.0%"), "{:?}", rows[1]);
        assert_eq!(rows[1].verdict, "—");
        assert_eq!(rows[3].measured, "900 µs / 4.00 ms (256 conns)");

        let slow = [run("immediate", 10_000.0, 4_000.0)];
        assert_eq!(target_rows(&slow, &[], None)[0].verdict, "**not met**");
    }

    #[test]
    fn rounds_are_tabled_by_their_median_round_and_judged_by_how_many_reach_the_target() {
        let mut run = run("immediate", 10_000.0, 4_000.0);
        for (round, health, echo) in [(1, 10_000.0, 6_000.0), (2, 8_000.0, 4_400.0)] {
            for (scenario, throughput) in [
                (ScenarioName::Health, health),
                (ScenarioName::InvokeEcho, echo),
            ] {
                run.scenarios.push(ScenarioResult {
                    round,
                    ..result(scenario, throughput)
                });
            }
        }
        // Ratios 40%, 60%, 55%: the median is 55%; the median rounds are
        // health 10,000 and echo 4,400.
        let rows = target_rows(std::slice::from_ref(&run), &[], None);
        assert_eq!(
            rows[0].measured,
            "55.0% (median of 3 rounds, 40–60%, 2 of 3 at ≥ 50%; 4,400 vs 10,000 req/s, 256 conns)"
        );
        // A median above the line, but three rounds cannot tell it from chance.
        assert_eq!(
            rows[0].verdict,
            "**not met** (3 rounds cannot show it; run 5 or more)"
        );
        let picked: Vec<f64> = median_results(&run)
            .iter()
            .map(|result| result.throughput_per_s)
            .collect();
        assert_eq!(picked, [10_000.0, 4_400.0]);
    }

    #[test]
    fn rounds_with_unintended_answers_are_left_out_of_the_ratio() {
        let mut run = run("immediate", 10_000.0, 6_000.0);
        // Wallets ran dry in round 1: fast 402s would read as a 90% ratio.
        for (scenario, throughput, unexpected) in [
            (ScenarioName::Health, 10_000.0, 0),
            (ScenarioName::InvokeEcho, 9_000.0, 40_000),
        ] {
            run.scenarios.push(ScenarioResult {
                round: 1,
                unexpected,
                ..result(scenario, throughput)
            });
        }
        assert_eq!(round_ratios(&run), (vec![0.6], 1));
        let rows = target_rows(std::slice::from_ref(&run), &[], None);
        assert!(
            rows[0]
                .measured
                .starts_with("60.0% (1 more left out for unintended answers; "),
            "{:?}",
            rows[0]
        );
    }

    #[test]
    fn sign_test_chances_are_binomial_tails() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(chance_of_at_least(10, 9), 11.0 / 1024.0));
        assert!(close(chance_of_at_least(10, 8), 56.0 / 1024.0));
        assert!(close(chance_of_at_least(10, 0), 1.0));
        assert!(close(chance_of_at_least(3, 2), 0.5));
        assert!(close(chance_of_at_least(5, 5), 1.0 / 32.0));
        assert!(close(chance_of_at_least(20, 15), 21_700.0 / 1_048_576.0));
    }

    #[test]
    fn ratio_verdicts_need_rounds_that_chance_would_rarely_give() {
        let rounds = |reached: usize, total: usize| -> Vec<f64> {
            (0..total)
                .map(|round| if round < reached { 0.52 } else { 0.48 })
                .collect()
        };
        assert_eq!(ratio_verdict(&rounds(9, 10)), "**met**");
        assert_eq!(ratio_verdict(&rounds(10, 10)), "**met**");
        assert_eq!(ratio_verdict(&rounds(1, 10)), "**not met**");
        // The published run of cbf747a: a median of 51.5% with 6 of 10.
        assert_eq!(
            ratio_verdict(&rounds(6, 10)),
            "**not met** (on the line: it takes 9 of 10 rounds at ≥ 50%)"
        );
        assert_eq!(
            ratio_verdict(&rounds(12, 20)),
            "**not met** (on the line: it takes 15 of 20 rounds at ≥ 50%)"
        );
        assert_eq!(ratio_verdict(&rounds(5, 5)), "**met**");
        assert_eq!(ratio_verdict(&[0.6]), "**met**");
        assert_eq!(ratio_verdict(&[0.4]), "**not met**");
    }

    #[test]
    fn criterion_targets_use_the_named_benchmarks() {
        let criterion = [
            criterion_entry("ledger_in_memory/hold_post", 500.0),
            criterion_entry("store_durable/immediate/4096", 20_000.0),
            criterion_entry("store_durable/immediate/1", 1_200_000.0),
            criterion_entry("disk/fdatasync_4k", 1_000_000.0),
            criterion_entry("authenticate/valid_key_10k_agents", 386.0),
        ];
        let latency = SingleChargeLatency {
            samples: 3_000,
            charge_p50_ns: 120_000.0,
            charge_p99_ns: 250_000.0,
            fdatasync_p50_ns: 100_000.0,
            fdatasync_p99_ns: 200_000.0,
        };
        let rows = target_rows(&[], &criterion, Some(&latency));
        let by_target = |prefix: &str| {
            rows.iter()
                .find(|row| row.target.starts_with(prefix))
                .unwrap_or_else(|| panic!("no row {prefix}"))
        };
        let memory = by_target("In-memory");
        assert_eq!(
            memory.measured,
            "2,000,000/s (`ledger_in_memory/hold_post`)"
        );
        assert_eq!(memory.verdict, "**met**");
        let durable = by_target("Durable charges");
        assert_eq!(durable.verdict, "**not met**");
        let single = by_target("Single durable");
        assert!(
            single
                .measured
                .starts_with("1.20 × (120.00 µs vs 100.00 µs; p99 250.00 µs"),
            "{single:?}"
        );
        assert_eq!(single.verdict, "**met**");
        let medians = by_target("Same, as criterion medians");
        assert!(medians.measured.starts_with("1.20 ×"), "{medians:?}");
        assert!(
            by_target("Same with `batched`")
                .measured
                .starts_with(NOT_MEASURED)
        );
        assert_eq!(
            by_target("Key verification").measured,
            "386 ns (`authenticate/valid_key_10k_agents`)"
        );
        assert!(by_target("Provenance").measured.starts_with(NOT_MEASURED));
        assert!(
            by_target("Billed `invoke-echo` ≥")
                .measured
                .starts_with(NOT_MEASURED)
        );
    }

    #[test]
    fn hub_cpu_per_billed_call_is_set_against_health_when_both_were_read() {
        let cpu_of = |runs: &[RunReport]| {
            target_rows(runs, &[], None)
                .into_iter()
                .find(|row| row.target.starts_with("Hub CPU per billed"))
                .map(|row| (row.measured, row.verdict))
        };
        assert_eq!(
            cpu_of(&[run("immediate", 10_000.0, 6_000.0)]),
            Some((
                "48.0 µs vs 11.0 µs (4.36×; load generator 18.0 vs 13.0 µs)".to_owned(),
                "reported".to_owned()
            ))
        );
        // Against a Hub given by --url its pid is unknown: no figure, no guess.
        let mut by_url = run("immediate", 10_000.0, 6_000.0);
        for result in &mut by_url.scenarios {
            result.hub_cpu_us_per_request = None;
        }
        assert_eq!(
            cpu_of(&[by_url]),
            Some((NOT_MEASURED.to_owned(), "—".to_owned()))
        );
        // Only immediate mode is compared.
        assert_eq!(
            cpu_of(&[run("batched(5ms)", 10_000.0, 6_000.0)]),
            Some((NOT_MEASURED.to_owned(), "—".to_owned()))
        );
    }

    #[test]
    fn rendered_section_has_every_table_and_the_provenance_line() {
        let runs = [run("immediate", 10_000.0, 6_000.0)];
        let criterion = [criterion_entry("envelope/parse_valid", 1_500.0)];
        let text = render(
            &runs,
            &criterion,
            None,
            Some("abc1234"),
            Some("bench/run.sh"),
        );
        assert!(text.starts_with("_Generated from the runs started 2026-11-25T13:30:00Z, commit `abc1234`, by `bench/run.sh`._"), "{text}");
        assert!(
            text.contains("**Machine:** 2 cores, Example CPU, kernel 6.1"),
            "{text}"
        );
        assert!(text.contains("### Targets"), "{text}");
        assert!(text.contains("| immediate | invoke-echo | 256 conns | 30,000 | 6,000 | 900 µs | 1.50 ms | 4.00 ms | 9.00 ms | 48.0 / 18.0 | none |"), "{text}");
        assert!(
            text.contains("| `envelope/parse_valid` | 1.50 µs | [1.35 µs, 1.65 µs] | 666,666 |"),
            "{text}"
        );
    }
}
