//! Reading criterion's saved results (`<dir>/**/new/{benchmark,estimates}.json`)
//! so the micro-benchmark figures in `BENCHMARKS.md` come straight from the
//! runs, never typed by hand.

use std::path::Path;

use serde_json::Value;

/// Directory levels searched below the criterion dir (group/function/value/new).
const SEARCH_DEPTH_MAX: usize = 6;

/// One benchmark's time per iteration, in nanoseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct CriterionEstimate {
    pub id: String,
    pub median_ns: f64,
    pub median_low_ns: f64,
    pub median_high_ns: f64,
    /// Elements per iteration when the bench declared a throughput.
    pub elements: Option<u64>,
}

impl CriterionEstimate {
    /// Operations per second (elements per second when declared).
    pub fn ops_per_s(&self) -> f64 {
        if self.median_ns <= 0.0 {
            return 0.0;
        }
        self.elements.unwrap_or(1) as f64 * 1e9 / self.median_ns
    }

    /// Time per element.
    pub fn per_op_ns(&self) -> f64 {
        self.median_ns / self.elements.unwrap_or(1).max(1) as f64
    }
}

/// Per-operation latencies of one durable charge at a time and of a raw
/// 4 KiB `fdatasync`, measured interleaved in one run by the ledger bench
/// (`single-charge-latency.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct SingleChargeLatency {
    pub samples: u64,
    pub charge_p50_ns: f64,
    pub charge_p99_ns: f64,
    pub fdatasync_p50_ns: f64,
    pub fdatasync_p99_ns: f64,
}

pub fn parse_single_charge(json: &str) -> Result<SingleChargeLatency, String> {
    let value: Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    let number = |section: &str, field: &str| {
        value
            .get(section)
            .and_then(|s| s.get(field))
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("no {section}.{field}"))
    };
    Ok(SingleChargeLatency {
        samples: number("charge", "samples")? as u64,
        charge_p50_ns: number("charge", "p50_ns")?,
        charge_p99_ns: number("charge", "p99_ns")?,
        fdatasync_p50_ns: number("fdatasync_4k", "p50_ns")?,
        fdatasync_p99_ns: number("fdatasync_4k", "p99_ns")?,
    })
}

/// Parses one benchmark's pair of files.
pub fn parse_pair(benchmark_json: &str, estimates_json: &str) -> Result<CriterionEstimate, String> {
    let benchmark: Value =
        serde_json::from_str(benchmark_json).map_err(|error| format!("benchmark.json: {error}"))?;
    let estimates: Value =
        serde_json::from_str(estimates_json).map_err(|error| format!("estimates.json: {error}"))?;
    let id = benchmark
        .get("full_id")
        .and_then(Value::as_str)
        .ok_or("benchmark.json has no full_id")?
        .to_owned();
    let elements = benchmark
        .get("throughput")
        .and_then(|throughput| throughput.get("Elements"))
        .and_then(Value::as_u64);
    let median = estimates
        .get("median")
        .ok_or("estimates.json has no median")?;
    let number = |value: Option<&Value>, what: &str| {
        value
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("estimates.json: median has no {what}"))
    };
    let interval = median.get("confidence_interval");
    Ok(CriterionEstimate {
        id,
        median_ns: number(median.get("point_estimate"), "point_estimate")?,
        median_low_ns: number(interval.and_then(|i| i.get("lower_bound")), "lower_bound")?,
        median_high_ns: number(interval.and_then(|i| i.get("upper_bound")), "upper_bound")?,
        elements,
    })
}

/// Every benchmark under `dir`, sorted by id.
pub fn load_dir(dir: &Path) -> Result<Vec<CriterionEstimate>, String> {
    let mut found = Vec::new();
    visit(dir, 0, &mut found)?;
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn visit(dir: &Path, depth: usize, found: &mut Vec<CriterionEstimate>) -> Result<(), String> {
    if depth > SEARCH_DEPTH_MAX {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|error| format!("reading {}: {error}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name() == "new" {
            let benchmark = path.join("benchmark.json");
            let estimates = path.join("estimates.json");
            if let (Ok(benchmark), Ok(estimates)) = (
                std::fs::read_to_string(&benchmark),
                std::fs::read_to_string(&estimates),
            ) {
                found.push(
                    parse_pair(&benchmark, &estimates)
                        .map_err(|error| format!("{}: {error}", path.display()))?,
                );
            }
        } else if entry.file_name() != "base" && entry.file_name() != "report" {
            visit(&path, depth + 1, found)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCHMARK: &str = r#"{"group_id":"store_durable/immediate","function_id":null,"value_str":"4096","throughput":{"Elements":1},"full_id":"store_durable/immediate/4096","directory_name":"store_durable_immediate/4096","title":"store_durable/immediate/4096"}"#;
    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0},"point_estimate":10.0,"standard_error":0.5},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":7.5,"upper_bound":8.5},"point_estimate":8.0,"standard_error":0.2},"median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":0.1,"upper_bound":0.3},"point_estimate":0.2,"standard_error":0.05},"slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1}}"#;

    #[test]
    fn single_charge_latency_reads_both_percentiles() {
        let json = r#"{"charge":{"samples":3000,"p50_ns":110000,"p99_ns":220000},"fdatasync_4k":{"samples":3000,"p50_ns":88000,"p99_ns":170000}}"#;
        let latency = parse_single_charge(json).unwrap();
        assert_eq!(
            (
                latency.samples,
                latency.charge_p50_ns,
                latency.fdatasync_p99_ns
            ),
            (3000, 110_000.0, 170_000.0)
        );
        assert!(
            parse_single_charge("{}")
                .unwrap_err()
                .contains("charge.samples")
        );
    }

    #[test]
    fn pair_gives_median_interval_and_throughput() {
        let estimate = parse_pair(BENCHMARK, ESTIMATES).unwrap();
        assert_eq!(estimate.id, "store_durable/immediate/4096");
        assert_eq!(estimate.median_ns, 8.0);
        assert_eq!(
            (estimate.median_low_ns, estimate.median_high_ns),
            (7.5, 8.5)
        );
        assert_eq!(estimate.elements, Some(1));
        assert_eq!(estimate.ops_per_s(), 125_000_000.0);
        assert_eq!(estimate.per_op_ns(), 8.0);
    }

    #[test]
    fn broken_files_are_reported() {
        assert!(parse_pair("{}", ESTIMATES).unwrap_err().contains("full_id"));
        assert!(parse_pair(BENCHMARK, "{}").unwrap_err().contains("median"));
        assert!(parse_pair("not json", ESTIMATES).is_err());
    }

    #[test]
    fn directory_walk_finds_new_results_only() {
        let root =
            std::env::temp_dir().join(format!("jecp-bench-criterion-test-{}", std::process::id()));
        let new_dir = root.join("store_durable_immediate/4096/new");
        let base_dir = root.join("store_durable_immediate/4096/base");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::create_dir_all(&base_dir).unwrap();
        std::fs::write(new_dir.join("benchmark.json"), BENCHMARK).unwrap();
        std::fs::write(new_dir.join("estimates.json"), ESTIMATES).unwrap();
        std::fs::write(base_dir.join("benchmark.json"), "garbage").unwrap();
        std::fs::write(base_dir.join("estimates.json"), "garbage").unwrap();
        let found = load_dir(&root);
        std::fs::remove_dir_all(&root).unwrap();
        let found = found.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "store_durable/immediate/4096");
    }
}
