//! Real agents on loopback: idle cost per agent and per leader, join and promotion
//! times, submission latency, at each mesh size.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use saturn_consensus::membership::voter_target;
use saturn_tests::{eventually, Harness, Setup};

use crate::procfs::{cpu_ticks, io_counts, sockets, USER_HZ};
use crate::report::{ms, Stats, Table};

/// Runs every size in every mode and returns the table.
pub async fn run(sizes: &[usize], modes: &[String], idle: Duration, form: Duration, submits: usize) -> Result<Table> {
    let title = format!(
        "Real agents on 127.0.0.1 (--gpus none, 500 ms heartbeats, {}s idle window; 'everyone' = SATURN_GOSSIP_EVERYONE=1, the design before)",
        idle.as_secs()
    );
    let mut table = Table::new(
        &title,
        &[
            "agents",
            "mode",
            "agent CPU % (median)",
            "agent CPU % (max)",
            "leader CPU %",
            "agent KB/s (median)",
            "agent syscalls/s (median)",
            "agent sockets (median / max)",
            "leader KB/s",
            "join → learner s",
            "→ promoted s",
            "elections during join",
            "submit p50 / p99 ms",
            "all agents CPU %",
        ],
    );
    for &n in sizes {
        for mode in modes {
            // A mesh that never settles is a result too (the former design at 40 agents):
            // its row says what did not happen, and the other rows still print.
            let mut cells = vec![n.to_string(), mode.clone()];
            match one(n, mode == "everyone", idle, form, submits).await {
                Ok(row) => cells.extend(row),
                Err(err) => {
                    println!("{n} agents, {mode}: FAILED: {err:#}");
                    cells.push("FAILED".into());
                    cells.resize(table.columns(), "-".into());
                }
            }
            println!("{}", cells.join(" | "));
            table.row(cells);
        }
    }
    Ok(table)
}

/// `SATURN_SCALE_SETTLE_S` (20): how long the full mesh idles before the window.
fn settle() -> Duration {
    Duration::from_secs(std::env::var("SATURN_SCALE_SETTLE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(20))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

async fn one(n: usize, everyone: bool, idle: Duration, form: Duration, submits: usize) -> Result<Vec<String>> {
    let founders = n.min(3);
    let setup = Setup { agents: n, bootstrap_expect: founders, gpus: "none".into(), extra_args: Vec::new() };
    let env: Vec<(String, String)> = if everyone {
        vec![(saturn_agent::daemon::GOSSIP_EVERYONE_ENV.to_string(), "1".to_string())]
    } else {
        Vec::new()
    };
    let mut harness = Harness::prepare(&setup, &env)?;
    for i in 0..founders {
        harness.cluster.spawn(i)?;
    }
    let h = &harness;
    eventually("the founders' leader", Duration::from_secs(120), || async { Ok(h.status(0).await?.leader) }).await?;
    let term_before = h.status(0).await?.term;
    let joined_at = Instant::now();
    for i in founders..n {
        harness.cluster.spawn(i)?;
    }
    let h = &harness;
    eventually("every agent a member", form, || async {
        let status = h.status(0).await?;
        Ok((status.agents.len() == n).then_some(()))
    })
    .await?;
    let learner = joined_at.elapsed();
    eventually("the full voter set", Duration::from_secs(300), || async {
        let status = h.status(0).await?;
        Ok((status.agents.iter().filter(|a| a.role == "voter").count() == voter_target(n)).then_some(()))
    })
    .await?;
    let promoted = joined_at.elapsed();
    // Terms started while the joiners arrived: each is an election (a starved host shows here).
    let elections = h.status(0).await?.term.saturating_sub(term_before);
    // Let the learners catch up, the membership rounds and the links settle (a learner
    // closes the links it does not need every 10 s) before sampling.
    tokio::time::sleep(settle()).await;
    let leader_name = h.status(0).await?.leader.context("no leader")?;
    let leader = h.cluster.agents.iter().position(|a| a.name == leader_name).context("leader is not ours")?;
    let pids: Vec<u32> = h.cluster.agents.iter().map(|a| a.pid().context("agent not running")).collect::<Result<_>>()?;
    let cpu0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let io0: Vec<(u64, u64)> = pids.iter().map(|p| io_counts(*p)).collect::<Result<_>>()?;
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let secs = started.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    let mut kbs = Vec::new();
    let mut calls = Vec::new();
    for (i, pid) in pids.iter().enumerate() {
        let (bytes, syscalls) = io_counts(*pid)?;
        cpu.push((cpu_ticks(*pid)? - cpu0[i]) as f64 / USER_HZ / secs * 100.0);
        kbs.push((bytes - io0[i].0) as f64 / 1024.0 / secs);
        calls.push((syscalls - io0[i].1) as f64 / secs);
    }
    let links: Vec<f64> = pids.iter().map(|p| sockets(*p).map(|n| n as f64)).collect::<Result<_>>()?;
    let others = |v: &[f64]| v.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, x)| *x).collect::<Vec<f64>>();
    let total: f64 = cpu.iter().sum();
    // Submissions through the last agent (a learner once n > 5), one job each, sequential.
    let via = n - 1;
    let toml = "[[job]]\nname = \"scale\"\ncommand = [\"true\"]\nsteps = 1\ntechniques = [\"ddp\"]\ngpus = [1, 1]\n";
    let mut latencies = Vec::new();
    for _ in 0..submits {
        let at = Instant::now();
        h.submit(via, toml).await?;
        latencies.push(at.elapsed());
    }
    let latency = Stats::of(latencies);
    Ok(vec![
        format!("{:.2}", median(others(&cpu))),
        format!("{:.2}", others(&cpu).into_iter().fold(0.0, f64::max)),
        format!("{:.2}", cpu[leader]),
        format!("{:.1}", median(others(&kbs))),
        format!("{:.0}", median(others(&calls))),
        format!("{:.0} / {:.0}", median(others(&links)), others(&links).into_iter().fold(0.0, f64::max)),
        format!("{:.1}", kbs[leader]),
        format!("{:.1}", learner.as_secs_f64()),
        format!("{:.1}", promoted.as_secs_f64()),
        elections.to_string(),
        format!("{} / {}", ms(latency.p50), ms(latency.p99)),
        format!("{total:.0}"),
    ])
}
