//! The machine the figures come from: cores, kernel, CPU model (Linux
//! `/proc`; "unknown" elsewhere).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub os: String,
    /// 1-minute load average when the run started: how busy the (possibly
    /// shared) machine already was.
    #[serde(default)]
    pub load_average_1m: Option<f64>,
}

impl Machine {
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model_of(&text))
            .unwrap_or_else(|| "unknown".into());
        let load_average_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| load_average_of(&text));
        Machine {
            cores,
            kernel,
            cpu_model,
            os: std::env::consts::OS.to_owned(),
            load_average_1m,
        }
    }
}

/// The first `model name` line of `/proc/cpuinfo`.
fn cpu_model_of(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// The first field of `/proc/loadavg`.
fn load_average_of(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_comes_from_the_first_model_name_line() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Example CPU @ 2.0GHz\n\nprocessor\t: 1\nmodel name\t: Other\n";
        assert_eq!(
            cpu_model_of(cpuinfo).as_deref(),
            Some("Example CPU @ 2.0GHz")
        );
        assert_eq!(cpu_model_of("processor: 0\n"), None);
    }

    #[test]
    fn load_average_is_the_first_loadavg_field() {
        assert_eq!(load_average_of("2.61 3.51 4.15 2/75 23004\n"), Some(2.61));
        assert_eq!(load_average_of(""), None);
    }

    #[test]
    fn detect_reports_at_least_one_core() {
        let machine = Machine::detect();
        assert!(machine.cores >= 1);
        assert!(!machine.kernel.is_empty() && !machine.os.is_empty());
    }
}
