//! Measuring tools of the load benchmark: latency samples and their percentiles, a
//! process's CPU time and memory from `/proc`, and gauges from Prometheus text.

use std::time::{Duration, Instant};

/// Latencies of one kind of request.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// Adds one measurement.
    pub fn add(&mut self, latency: Duration) {
        self.samples.push(latency);
    }

    /// Adds every measurement of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// The `p`-th percentile (nearest rank), `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1))).copied()
    }

    /// `p50 / p99` in milliseconds, for the table.
    pub fn p50_p99(&self) -> String {
        match (self.percentile(50.0), self.percentile(99.0)) {
            (Some(p50), Some(p99)) => format!("{:.1} / {:.1} ms", ms(p50), ms(p99)),
            _ => "no samples".to_string(),
        }
    }
}

/// Milliseconds of a duration, as a float.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / TICKS_PER_SECOND))
}

/// Resident and peak resident memory of a process in MiB, from `/proc/PID/status`.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// CPU use of a process over a window, as a percentage of one core.
pub struct CpuWindow {
    pid: u32,
    started: Instant,
    cpu_at_start: Duration,
}

impl CpuWindow {
    /// Starts measuring `pid`.
    pub fn start(pid: u32) -> Self {
        CpuWindow { pid, started: Instant::now(), cpu_at_start: cpu_time(pid).unwrap_or_default() }
    }

    /// Percent of one core used since the start (`None` once the process is gone).
    pub fn percent(&self) -> Option<f64> {
        let used = cpu_time(self.pid)?.saturating_sub(self.cpu_at_start);
        let wall = self.started.elapsed().as_secs_f64();
        (wall > 0.0).then(|| 100.0 * used.as_secs_f64() / wall)
    }
}

/// The value of an unlabelled gauge `name` in Prometheus exposition text.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.starts_with(' ').then(|| rest.trim().parse().ok()).flatten()
    })
}

/// Processes whose working directory or command line lies under `dir` (what the
/// benchmark started: agents run with `--data-dir` there, jobs run in it).
pub fn processes_under(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.starts_with(dir)).unwrap_or(false);
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cwd || String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .collect()
}
