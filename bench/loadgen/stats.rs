//! Outcome classification and the latency recorder (HdrHistogram, µs, 3
//! significant digits) with the per-scenario summary it produces.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::{Answer, SendError};
use crate::scenario::Expect;

/// Highest latency the histogram tracks; anything above is clamped to it.
const LATENCY_US_MAX: u64 = 300_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// What one request came back as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A 2xx answer.
    pub ok: bool,
    /// For anything else: the JECP error code, `HTTP_<status>` when the body
    /// has none, `TIMEOUT` or `TRANSPORT_ERROR`.
    pub error_code: Option<String>,
    /// Whether it is what the scenario intended (2xx for valid requests, a
    /// 4xx for the deliberately invalid ones).
    pub as_expected: bool,
}

/// Classifies a response against what the request expected.
pub fn classify(expect: Expect, result: &Result<Answer, SendError>) -> Outcome {
    match result {
        Ok(answer) => {
            let ok = (200..300).contains(&answer.status);
            let error_code = (!ok).then(|| error_code_of(answer));
            let as_expected = match expect {
                Expect::Success => ok,
                Expect::Refusal => (400..500).contains(&answer.status),
            };
            Outcome {
                ok,
                error_code,
                as_expected,
            }
        }
        Err(error) => Outcome {
            ok: false,
            error_code: Some(
                match error {
                    SendError::Timeout => "TIMEOUT",
                    SendError::Transport(_) => "TRANSPORT_ERROR",
                }
                .to_owned(),
            ),
            as_expected: false,
        },
    }
}

/// The JECP envelope's `error.code`, else `HTTP_<status>`.
fn error_code_of(answer: &Answer) -> String {
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|body| {
            body.get("error")?
                .get("code")?
                .as_str()
                .filter(|code| code.len() <= 64)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("HTTP_{}", answer.status))
}

/// Latency percentiles of one scenario, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// Counts and latencies of the measured requests of one scenario.
#[derive(Clone, Debug)]
pub struct Recorder {
    histogram: Histogram<u64>,
    pub requests: u64,
    pub ok: u64,
    pub unexpected: u64,
    pub errors_by_code: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            histogram: Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            ok: 0,
            unexpected: 0,
            errors_by_code: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, latency: Duration, outcome: &Outcome) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(latency_us.max(1));
        self.requests += 1;
        if outcome.ok {
            self.ok += 1;
        }
        if !outcome.as_expected {
            self.unexpected += 1;
        }
        if let Some(code) = &outcome.error_code {
            *self.errors_by_code.entry(code.clone()).or_insert(0) += 1;
        }
    }

    pub fn errors(&self) -> u64 {
        self.requests - self.ok
    }

    pub fn latency(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50_us: self.histogram.value_at_quantile(0.50),
            p90_us: self.histogram.value_at_quantile(0.90),
            p99_us: self.histogram.value_at_quantile(0.99),
            p999_us: self.histogram.value_at_quantile(0.999),
            max_us: self.histogram.max(),
            mean_us: self.histogram.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn answer(status: u16, body: &str) -> Result<Answer, SendError> {
        Ok(Answer {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut recorder = Recorder::new();
        let ok = classify(Expect::Success, &answer(200, "{}"));
        for micros in 1..=10_000u64 {
            recorder.record(Duration::from_micros(micros), &ok);
        }
        let latency = recorder.latency();
        // 3 significant digits: within 0.1% of the exact rank value.
        let near = |value: u64, exact: u64| value.abs_diff(exact) * 1000 <= exact;
        assert!(near(latency.p50_us, 5_000), "{latency:?}");
        assert!(near(latency.p90_us, 9_000), "{latency:?}");
        assert!(near(latency.p99_us, 9_900), "{latency:?}");
        assert!(near(latency.p999_us, 9_990), "{latency:?}");
        assert!(near(latency.max_us, 10_000), "{latency:?}");
        assert!((latency.mean_us - 5_000.5).abs() < 10.0, "{latency:?}");
        assert_eq!(recorder.requests, 10_000);
        assert_eq!(recorder.errors(), 0);
    }

    #[test]
    fn empty_recorder_reports_zeros() {
        assert_eq!(Recorder::new().latency(), LatencySummary::default());
    }

    #[test]
    fn outcomes_are_classified_by_status_and_expectation() {
        let ok = classify(Expect::Success, &answer(201, "{}"));
        assert!(ok.ok && ok.as_expected && ok.error_code.is_none());

        let refused = classify(
            Expect::Refusal,
            &answer(400, r#"{"error":{"code":"INVALID_REQUEST","message":"x"}}"#),
        );
        assert!(!refused.ok && refused.as_expected);
        assert_eq!(refused.error_code.as_deref(), Some("INVALID_REQUEST"));

        let unexpected = classify(
            Expect::Success,
            &answer(402, r#"{"error":{"code":"WALLET_INSUFFICIENT_BALANCE"}}"#),
        );
        assert!(!unexpected.as_expected);

        let plain = classify(Expect::Success, &answer(429, r#"{"error":"slow down"}"#));
        assert_eq!(plain.error_code.as_deref(), Some("HTTP_429"));

        let server_error = classify(Expect::Refusal, &answer(500, "not json"));
        assert!(!server_error.as_expected);
        assert_eq!(server_error.error_code.as_deref(), Some("HTTP_500"));

        let timeout = classify(Expect::Success, &Err(SendError::Timeout));
        assert_eq!(timeout.error_code.as_deref(), Some("TIMEOUT"));
        let reset = classify(Expect::Success, &Err(SendError::Transport("reset".into())));
        assert_eq!(reset.error_code.as_deref(), Some("TRANSPORT_ERROR"));
    }

    #[test]
    fn errors_are_counted_by_code() {
        let mut recorder = Recorder::new();
        let refused = classify(
            Expect::Refusal,
            &answer(404, r#"{"error":{"code":"CAPABILITY_NOT_FOUND"}}"#),
        );
        let ok = classify(Expect::Success, &answer(200, "{}"));
        recorder.record(Duration::from_micros(10), &refused);
        recorder.record(Duration::from_micros(10), &refused);
        recorder.record(Duration::from_micros(10), &ok);
        assert_eq!(recorder.errors(), 2);
        assert_eq!(recorder.unexpected, 0);
        assert_eq!(recorder.errors_by_code["CAPABILITY_NOT_FOUND"], 2);
    }
}
