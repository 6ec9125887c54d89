//! Driving one scenario: closed loop (a fixed number of workers, each sending
//! its next request when the previous answer arrives) or open loop (requests
//! released on a fixed schedule whatever the latency).
//!
//! In the open loop, latency is measured from each request's *intended* send
//! time, so when the server (or the in-flight bound) delays sends, the delay
//! shows up in the percentiles instead of being silently omitted
//! (HdrHistogram's coordinated-omission correction, done at the source).
//! The open-loop schedule runs on a dedicated thread with `std::thread::sleep`,
//! not tokio's 1 ms timer, so send times are within tens of µs of the plan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::args::LoadShape;
use crate::client::HttpClient;
use crate::cpu_time::{self, CpuClock};
use crate::progress::{self, Counters};
use crate::scenario::{RequestFactory, ScenarioName};
use crate::stats::{LatencySummary, Recorder, classify};

/// Extra time allowed after the schedule ends for in-flight requests (on top
/// of the per-request timeout) before the run gives up on them.
const DRAIN_SLACK: Duration = Duration::from_secs(2);

/// How long a scenario runs and how much it may send.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub warmup: Duration,
    pub duration: Duration,
    pub requests_max: Option<u64>,
    pub timeout: Duration,
}

/// The load as it appears in reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadDescription {
    /// `closed` or `open`.
    pub mode: String,
    pub concurrency: Option<u32>,
    pub rate_per_s: Option<u64>,
    pub max_in_flight: Option<u32>,
}

impl LoadDescription {
    pub fn of(shape: LoadShape) -> LoadDescription {
        match shape {
            LoadShape::Closed { concurrency } => LoadDescription {
                mode: "closed".into(),
                concurrency: Some(concurrency),
                rate_per_s: None,
                max_in_flight: None,
            },
            LoadShape::Open {
                rate_per_s,
                max_in_flight,
            } => LoadDescription {
                mode: "open".into(),
                concurrency: None,
                rate_per_s: Some(rate_per_s),
                max_in_flight: Some(max_in_flight),
            },
        }
    }

    /// `256 conns` or `2000/s open`.
    pub fn short(&self) -> String {
        match (self.concurrency, self.rate_per_s) {
            (Some(concurrency), _) => format!("{concurrency} conns"),
            (None, Some(rate)) => format!("{rate}/s open"),
            (None, None) => self.mode.clone(),
        }
    }
}

/// The measured result of one scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: ScenarioName,
    /// Which repetition of the scenario list (`--rounds`), from 0.
    #[serde(default)]
    pub round: u32,
    pub load: LoadDescription,
    pub warmup_s: f64,
    /// From the first measured send to the last measured answer.
    pub measured_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Answers other than the scenario intended (valid requests not 2xx,
    /// invalid ones not 4xx, timeouts, transport errors).
    pub unexpected: u64,
    /// Measured answers per second.
    pub throughput_per_s: f64,
    pub latency_us: LatencySummary,
    pub errors_by_code: std::collections::BTreeMap<String, u64>,
    /// CPU time the Hub used over the measured window per measured request
    /// (known when this run spawned the Hub, on Linux).
    #[serde(default)]
    pub hub_cpu_us_per_request: Option<f64>,
    /// The same for this load generator.
    #[serde(default)]
    pub client_cpu_us_per_request: Option<f64>,
}

impl ScenarioResult {
    /// The scenario's name, with its round when there are several.
    pub fn label(&self) -> String {
        if self.round == 0 {
            self.scenario.as_str().to_owned()
        } else {
            format!("{}#{}", self.scenario.as_str(), self.round + 1)
        }
    }

    /// CPU µs per request as `hub / client`, `?` for a side not measured.
    pub fn cpu_text(&self) -> String {
        let side = |value: Option<f64>| value.map_or("?".to_owned(), |us| format!("{us:.1}"));
        format!(
            "{} / {}",
            side(self.hub_cpu_us_per_request),
            side(self.client_cpu_us_per_request)
        )
    }
}

/// When the `index`-th open-loop request should leave, from the start. Exact
/// integer arithmetic, so the schedule does not drift over long runs.
pub fn intended_offset(index: u64, rate_per_s: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate_per_s.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

struct Shared {
    client: HttpClient,
    factory: RequestFactory,
    recorder: Mutex<Recorder>,
    counters: Arc<Counters>,
    sequence: AtomicU64,
    /// Measured requests started so far (for `requests_max`).
    measured_started: AtomicU64,
    measure_start: Instant,
    deadline: Instant,
    requests_max: Option<u64>,
    /// Nanoseconds after `measure_start` of the last measured answer.
    last_answer_ns: AtomicU64,
}

impl Shared {
    /// Claims the right to send one more request intended at `intended`:
    /// `None` when the run is over, `Some(measured)` otherwise.
    fn admit(&self, intended: Instant) -> Option<bool> {
        if intended >= self.deadline {
            return None;
        }
        let measured = intended >= self.measure_start;
        if measured && let Some(max) = self.requests_max {
            let started = self.measured_started.fetch_add(1, Ordering::Relaxed);
            if started >= max {
                return None;
            }
        }
        Some(measured)
    }

    async fn exchange(&self, intended: Instant, measured: bool) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let planned = self.factory.request(sequence);
        let result = self.client.send(&planned).await;
        let answered = Instant::now();
        let outcome = classify(planned.expect, &result);
        self.counters.add(outcome.ok);
        if measured {
            let latency = answered.saturating_duration_since(intended);
            self.recorder
                .lock()
                .expect("recorder lock")
                .record(latency, &outcome);
            let since_start = answered.saturating_duration_since(self.measure_start);
            self.last_answer_ns.fetch_max(
                u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
}

/// CPU time used by the Hub (when its pid is known) and by this process.
#[derive(Clone, Copy, Debug)]
struct CpuReading {
    hub: Option<Duration>,
    client: Option<Duration>,
}

impl CpuReading {
    fn take(clock: &CpuClock, hub_pid: Option<u32>) -> CpuReading {
        CpuReading {
            hub: hub_pid.and_then(|pid| clock.used(pid)),
            client: clock.used(std::process::id()),
        }
    }
}

/// Runs one scenario to completion and summarises the measured part.
/// `hub_pid`, when known, adds the Hub's CPU time per request.
pub async fn run_scenario(
    client: HttpClient,
    factory: RequestFactory,
    scenario: ScenarioName,
    shape: LoadShape,
    budget: Budget,
    show_progress: bool,
    hub_pid: Option<u32>,
) -> ScenarioResult {
    let start = Instant::now();
    let measure_start = start + budget.warmup;
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        client,
        factory,
        recorder: Mutex::new(Recorder::new()),
        counters: Arc::clone(&counters),
        sequence: AtomicU64::new(0),
        measured_started: AtomicU64::new(0),
        measure_start,
        deadline: measure_start + budget.duration,
        requests_max: budget.requests_max,
        last_answer_ns: AtomicU64::new(0),
    });
    // CPU time from the start of the measured window to the last answer.
    let cpu_clock = CpuClock::new();
    let cpu_before = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start).await;
        CpuReading::take(&cpu_clock, hub_pid)
    });
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let display = show_progress.then(|| {
        tokio::spawn(progress::display(
            scenario.as_str().to_owned(),
            budget.warmup + budget.duration,
            counters,
            done_rx,
        ))
    });
    match shape {
        LoadShape::Closed { concurrency } => closed_loop(&shared, concurrency, budget).await,
        LoadShape::Open {
            rate_per_s,
            max_in_flight,
        } => open_loop(&shared, start, rate_per_s, max_in_flight, budget).await,
    }
    let _ = done_tx.send(true);
    if let Some(display) = display {
        let _ = display.await;
    }
    let cpu_after = CpuReading::take(&cpu_clock, hub_pid);
    let cpu_before = if cpu_before.is_finished() {
        cpu_before.await.ok()
    } else {
        // The run ended before its measured window began.
        cpu_before.abort();
        None
    };
    let recorder = shared.recorder.lock().expect("recorder lock").clone();
    let per_request = |side: fn(&CpuReading) -> Option<Duration>| {
        cpu_time::us_per_request(side(&cpu_before?)?, side(&cpu_after)?, recorder.requests)
    };
    let measured_s =
        Duration::from_nanos(shared.last_answer_ns.load(Ordering::Relaxed)).as_secs_f64();
    ScenarioResult {
        scenario,
        round: 0,
        load: LoadDescription::of(shape),
        warmup_s: budget.warmup.as_secs_f64(),
        measured_s,
        requests: recorder.requests,
        ok: recorder.ok,
        errors: recorder.errors(),
        unexpected: recorder.unexpected,
        throughput_per_s: if measured_s > 0.0 {
            recorder.requests as f64 / measured_s
        } else {
            0.0
        },
        latency_us: recorder.latency(),
        errors_by_code: recorder.errors_by_code.clone(),
        hub_cpu_us_per_request: per_request(|reading| reading.hub),
        client_cpu_us_per_request: per_request(|reading| reading.client),
    }
}

async fn closed_loop(shared: &Arc<Shared>, concurrency: u32, budget: Budget) {
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                loop {
                    let intended = Instant::now();
                    let Some(measured) = shared.admit(intended) else {
                        break;
                    };
                    shared.exchange(intended, measured).await;
                }
            })
        })
        .collect();
    // Every worker stops at the deadline plus at most one request timeout.
    let give_up = shared.deadline + budget.timeout + DRAIN_SLACK;
    for worker in workers {
        if tokio::time::timeout_at(give_up, worker).await.is_err() {
            break;
        }
    }
}

async fn open_loop(
    shared: &Arc<Shared>,
    start: Instant,
    rate_per_s: u64,
    max_in_flight: u32,
    budget: Budget,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight as usize));
    let runtime = tokio::runtime::Handle::current();
    // The schedule runs on its own thread with `std::thread::sleep`
    // (tens of µs of slack) because tokio's timer rounds every wake-up up to
    // the next millisecond, which would add up to 1 ms to every latency.
    let scheduler = {
        let shared = Arc::clone(shared);
        let in_flight = Arc::clone(&in_flight);
        tokio::task::spawn_blocking(move || {
            let mut index = 0u64;
            loop {
                let intended = start + intended_offset(index, rate_per_s);
                let Some(measured) = shared.admit(intended) else {
                    break;
                };
                index += 1;
                let wait = intended.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                // Waiting here delays later sends too; their latency still
                // counts from their intended time, so the wait is measured.
                let Ok(permit) = runtime.block_on(Arc::clone(&in_flight).acquire_owned()) else {
                    break;
                };
                let shared = Arc::clone(&shared);
                runtime.spawn(async move {
                    shared.exchange(intended, measured).await;
                    drop(permit);
                });
            }
        })
    };
    let _ = scheduler.await;
    let give_up = Instant::now().max(shared.deadline) + budget.timeout + DRAIN_SLACK;
    let _ = tokio::time::timeout_at(give_up, in_flight.acquire_many(max_in_flight)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule_is_evenly_spaced_without_drift() {
        assert_eq!(intended_offset(0, 1_000), Duration::ZERO);
        assert_eq!(intended_offset(1, 1_000), Duration::from_millis(1));
        assert_eq!(intended_offset(1_000, 1_000), Duration::from_secs(1));
        // 3/s: 333_333_333 ns steps, and the 3,000,000th lands exactly on 1,000,000 s.
        assert_eq!(intended_offset(1, 3), Duration::from_nanos(333_333_333));
        assert_eq!(
            intended_offset(3_000_000, 3),
            Duration::from_secs(1_000_000)
        );
        // Past u64 nanoseconds (584 years) the offset saturates instead of wrapping.
        assert_eq!(intended_offset(u64::MAX, 1), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn load_descriptions_render_short_labels() {
        let closed = LoadDescription::of(LoadShape::Closed { concurrency: 256 });
        assert_eq!(closed.short(), "256 conns");
        let open = LoadDescription::of(LoadShape::Open {
            rate_per_s: 2_000,
            max_in_flight: 64,
        });
        assert_eq!(open.short(), "2000/s open");
        assert_eq!(open.mode, "open");
    }
}
