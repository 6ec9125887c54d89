//! CPU time a process has used (user + system, all its threads), from
//! `/proc/<pid>/stat` on Linux.
//!
//! On a small machine the Hub and this load generator share the cores, so a
//! closed-loop req/s depends on how the two split them, and on whatever else
//! runs there. CPU time per request is what each side costs regardless: the
//! report prints it next to req/s so a ratio between scenarios can be read
//! from a quantity that noise moves less. Elsewhere than Linux, or when the
//! file cannot be read, the figures are simply absent.

use std::time::Duration;

/// `AT_CLKTCK` in the auxiliary vector: the kernel's `USER_HZ`, the unit of
/// the times in `/proc/<pid>/stat`.
const AT_CLKTCK: u64 = 17;
/// `USER_HZ` on every mainstream Linux architecture, used if the auxiliary
/// vector cannot be read.
const USER_HZ_DEFAULT: u64 = 100;

/// The clock ticks per second of `/proc/<pid>/stat`.
fn ticks_per_s() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| ticks_per_s_from_auxv(&auxv))
        .unwrap_or(USER_HZ_DEFAULT)
}

/// Reads `AT_CLKTCK` from an auxiliary vector of native-endian (type, value)
/// word pairs.
fn ticks_per_s_from_auxv(auxv: &[u8]) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let word = |bytes: &[u8]| {
            let mut raw = [0u8; WORD];
            raw.copy_from_slice(bytes);
            usize::from_ne_bytes(raw) as u64
        };
        (word(&pair[..WORD]) == AT_CLKTCK)
            .then(|| word(&pair[WORD..]))
            .filter(|ticks| *ticks > 0)
    })
}

/// User + system time from the text of `/proc/<pid>/stat`, in clock ticks.
/// The command name (field 2) is in parentheses and may hold spaces, so the
/// fields are counted from the last `)`.
fn ticks_from_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the
    // 12th and 13th fields here.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Reads CPU time used by processes.
#[derive(Clone, Copy, Debug)]
pub struct CpuClock {
    ticks_per_s: u64,
}

impl CpuClock {
    pub fn new() -> CpuClock {
        CpuClock {
            ticks_per_s: ticks_per_s(),
        }
    }

    /// CPU time process `pid` has used so far, `None` where it cannot be read.
    pub fn used(&self, pid: u32) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ticks = ticks_from_stat(&stat)?;
        let micros = u128::from(ticks) * 1_000_000 / u128::from(self.ticks_per_s);
        Some(Duration::from_micros(u64::try_from(micros).ok()?))
    }
}

/// CPU microseconds per request between two readings.
pub fn us_per_request(before: Duration, after: Duration, requests: u64) -> Option<f64> {
    (requests > 0 && after >= before)
        .then(|| (after - before).as_secs_f64() * 1e6 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_command_name_even_with_spaces() {
        // Fields 1..=15 of a real line, the name holding a space and a ')'.
        let stat = "4242 (tokio rt) w)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 8 0";
        assert_eq!(ticks_from_stat(stat), Some(325));
        assert_eq!(ticks_from_stat("4242 (truncated"), None);
        assert_eq!(ticks_from_stat("4242 (x) S 1 2"), None);
    }

    #[test]
    fn the_tick_rate_comes_from_the_auxiliary_vector() {
        let pair = |kind: usize, value: usize| {
            let mut bytes = kind.to_ne_bytes().to_vec();
            bytes.extend_from_slice(&value.to_ne_bytes());
            bytes
        };
        let mut auxv = pair(6, 4096);
        auxv.extend(pair(AT_CLKTCK as usize, 250));
        auxv.extend(pair(0, 0));
        assert_eq!(ticks_per_s_from_auxv(&auxv), Some(250));
        assert_eq!(ticks_per_s_from_auxv(&pair(6, 4096)), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_per_request_figures_divide_it() {
        let clock = CpuClock::new();
        if cfg!(target_os = "linux") {
            assert!(clock.used(std::process::id()).is_some());
        }
        let (before, after) = (Duration::from_millis(10), Duration::from_millis(30));
        assert_eq!(us_per_request(before, after, 400), Some(50.0));
        assert_eq!(us_per_request(before, after, 0), None);
        assert_eq!(us_per_request(after, before, 10), None);
    }
}
