//! Memory and CPU of the agents of an idle cluster, read from `/proc`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use saturn_tests::Harness;

use crate::cluster::steady;
use crate::report::Table;

use crate::procfs::{cpu_ticks, proc_status, USER_HZ};

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
