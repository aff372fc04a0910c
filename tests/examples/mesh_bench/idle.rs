//! Memory and CPU of the agents of an idle cluster, read from `/proc`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use saturn_tests::Harness;

use crate::cluster::steady;
use crate::report::Table;

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`) or a count (`Threads`).
fn proc_status(pid: u32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).with_context(|| format!("no {field} for {pid}"))?;
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).with_context(|| format!("bad {field} line: {line}"))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let after = text.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).context("malformed /proc stat");
    Ok(field(14)? + field(15)?)
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// Samples every agent over `window` once the cluster has settled.
pub async fn measure(harness: &Harness, window: Duration) -> Result<Table> {
    let leader = steady(harness).await?;
    // Let formation's membership changes and first heartbeats settle before sampling.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let agents = &harness.cluster.agents;
    let pids: Vec<u32> = agents.iter().map(|a| a.pid().context("agent not running")).collect::<Result<_>>()?;
    let term = harness.status(leader).await?.term;
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let seconds = started.elapsed().as_secs_f64();
    // A term change while nothing happens would be a spurious election (timeouts too tight).
    let elections = harness.status(leader).await?.term - term;
    let title = format!(
        "Idle agents ({} agents, {seconds:.0} s window, {elections} elections in it; target RSS < 40 MiB)",
        pids.len()
    );
    let mut table = Table::new(&title, &["agent", "role", "VmRSS MiB", "VmHWM MiB", "threads", "CPU % of a core"]);
    for (i, pid) in pids.iter().enumerate() {
        let cpu = (cpu_ticks(*pid)? - before[i]) as f64 / USER_HZ / seconds * 100.0;
        table.row(vec![
            agents[i].name.clone(),
            if i == leader { "leader" } else { "follower" }.to_string(),
            mib(proc_status(*pid, "VmRSS")?),
            mib(proc_status(*pid, "VmHWM")?),
            proc_status(*pid, "Threads")?.to_string(),
            format!("{cpu:.2}"),
        ]);
    }
    Ok(table)
}
