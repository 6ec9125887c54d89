//! Smoke test of the `jecp-bench` load generator end to end: a tiny run
//! against a Hub it spawns itself, and one against an in-process Hub given by
//! URL, checking the JSON report's counts exactly.

use std::process::Command;

use jecp_hub::config::Config;
use jecp_hub::runtime::Running;
use serde_json::Value;

const REQUESTS: u64 = 200;
const ADMIN_TOKEN: &str = "bench-smoke-admin-token-0123456789";

fn run_bench(extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_jecp-bench"))
        .args([
            "run",
            "--requests",
            &REQUESTS.to_string(),
            "--concurrency",
            "4",
            "--agents",
            "3",
            "--warmup-s",
            "0",
            // The request cap ends each scenario; the duration only bounds a stall.
            "--duration-s",
            "60",
            "--timeout-ms",
            "20000",
            "--json",
            "--quiet",
        ])
        .args(extra)
        .output()
        .expect("jecp-bench runs");
    assert!(
        output.status.success(),
        "jecp-bench failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON document")
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .expect("scenarios array")
        .iter()
        .find(|result| result["scenario"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn spawned_hub_runs_every_scenario_with_exact_counts() {
    let report = run_bench(&[
        "--scenario",
        "health,invoke-echo,invoke-replay,invoke-mixed,register",
        "--hub-bin",
        env!("CARGO_BIN_EXE_jecp-hub"),
    ]);
    assert_eq!(report["target"], "spawned");
    assert_eq!(report["hub_durability"], "immediate");
    assert_eq!(report["agents"], 3);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    for name in ["health", "invoke-echo", "invoke-replay", "register"] {
        let result = scenario(&report, name);
        assert_eq!(result["requests"], REQUESTS, "{name}: {result}");
        assert_eq!(result["ok"], REQUESTS, "{name}: {result}");
        assert_eq!(result["errors"], 0, "{name}: {result}");
        assert_eq!(result["load"]["concurrency"], 4);
        let latency = &result["latency_us"];
        let p50 = latency["p50_us"].as_u64().unwrap();
        let p99 = latency["p99_us"].as_u64().unwrap();
        assert!(p50 >= 1 && p50 <= p99, "{name}: {latency}");
        assert!(result["throughput_per_s"].as_f64().unwrap() > 0.0);
    }
    // One request in ten is invalid; each is refused with a JECP code and none
    // of the valid ones fails.
    let mixed = scenario(&report, "invoke-mixed");
    assert_eq!(mixed["requests"], REQUESTS);
    assert_eq!(mixed["errors"], REQUESTS / 10, "{mixed}");
    assert_eq!(mixed["unexpected"], 0, "{mixed}");
    let by_code = mixed["errors_by_code"].as_object().unwrap();
    let counted: u64 = by_code.values().map(|count| count.as_u64().unwrap()).sum();
    assert_eq!(counted, REQUESTS / 10);
    assert!(by_code.len() >= 4, "several kinds of refusal: {by_code:?}");
    assert!(
        by_code.keys().all(|code| !code.starts_with("HTTP_")),
        "{by_code:?}"
    );
}

#[test]
fn given_url_is_driven_through_the_operator_api_in_open_loop() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        public_url: "http://127.0.0.1".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        registration_per_minute_per_ip: 1_000,
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime
        .block_on(Running::start(config))
        .expect("hub starts");
    let url = format!("http://{}", running.addr);
    let report = run_bench(&[
        "--scenario",
        "invoke-echo",
        "--url",
        &url,
        "--admin-token",
        ADMIN_TOKEN,
        "--rate",
        "400",
    ]);
    runtime.block_on(running.stop()).unwrap();
    assert_eq!(report["target"], "url");
    let echo = scenario(&report, "invoke-echo");
    assert_eq!(echo["load"]["mode"], "open");
    assert_eq!(echo["load"]["rate_per_s"], 400);
    assert_eq!(echo["requests"], REQUESTS);
    assert_eq!(echo["ok"], REQUESTS, "{echo}");
    // 200 arrivals at 400/s take about half a second.
    let measured_s = echo["measured_s"].as_f64().unwrap();
    assert!((0.4..5.0).contains(&measured_s), "{measured_s}");
}
