//! A one-line progress display on stderr, redrawn about four times a second.
//! Silent when stderr is not a terminal (CI, `run.sh` logs) or with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const REDRAW_INTERVAL: Duration = Duration::from_millis(250);

/// Counters the workers bump; the display task reads them.
#[derive(Debug, Default)]
pub struct Counters {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(&self, ok: bool) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The text of one progress line.
pub fn render_line(
    label: &str,
    elapsed: Duration,
    total: Duration,
    completed: u64,
    errors: u64,
) -> String {
    let elapsed_s = elapsed.as_secs_f64();
    let rate = if elapsed_s > 0.0 {
        completed as f64 / elapsed_s
    } else {
        0.0
    };
    format!(
        "{label:<14} {elapsed_s:5.1}/{total_s:.0} s  {completed:>9} req  {rate:>9.0} req/s  {errors} errors",
        total_s = total.as_secs_f64(),
    )
}

/// Whether a progress line should be drawn at all.
pub fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Redraws until `done` resolves, then clears the line.
pub async fn display(
    label: String,
    total: Duration,
    counters: Arc<Counters>,
    done: tokio::sync::watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut done = done;
    let mut ticker = tokio::time::interval(REDRAW_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = done.changed() => break,
        }
        if *done.borrow() {
            break;
        }
        let line = render_line(
            &label,
            started.elapsed().min(total),
            total,
            counters.completed.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K");
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_time_count_rate_and_errors() {
        let line = render_line(
            "invoke-echo",
            Duration::from_secs(2),
            Duration::from_secs(6),
            5_000,
            3,
        );
        assert!(line.starts_with("invoke-echo"), "{line}");
        assert!(line.contains("2.0/6 s"), "{line}");
        assert!(line.contains("5000 req"), "{line}");
        assert!(line.contains("2500 req/s"), "{line}");
        assert!(line.ends_with("3 errors"), "{line}");
        let start = render_line("health", Duration::ZERO, Duration::from_secs(1), 0, 0);
        assert!(start.contains(" 0 req/s"), "{start}");
    }

    #[test]
    fn counters_count_errors_separately() {
        let counters = Counters::default();
        counters.add(true);
        counters.add(false);
        assert_eq!(counters.completed.load(Ordering::Relaxed), 2);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 1);
    }
}
