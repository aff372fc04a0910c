//! Gossip and health: how long until every agent agrees who is healthy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use saturn_agent::views::StatusView;
use saturn_tests::{eventually, Harness};
use tokio::task::JoinSet;

use crate::report::{ms, Stats, Table};

/// Longest any phase may take before the benchmark gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(90);

/// Polls every agent in `which` until `done` holds for its status; each agent's delay
/// since `since`.
async fn per_agent_until(
    harness: &Harness,
    which: &[usize],
    since: Instant,
    done: impl Fn(&StatusView) -> bool + Clone + Send + Sync + 'static,
) -> Result<Vec<Duration>> {
    let mut tasks = JoinSet::new();
    for &i in which {
        let (client, done) = (harness.client(i), done.clone());
        tasks.spawn(async move {
            eventually(&format!("agent {i}"), PHASE_LIMIT, || async {
                let status: StatusView = client.get_json("/v1/status").await?;
                Ok(done(&status).then(|| since.elapsed()))
            })
            .await
        });
    }
    let mut delays = Vec::new();
    while let Some(done) = tasks.join_next().await {
        delays.push(done.context("a polling task panicked")??);
    }
    Ok(delays)
}

fn healthy(status: &StatusView) -> usize {
    status.agents.iter().filter(|a| a.healthy).count()
}

/// Agents started at `started`: all healthy everywhere; a learner killed: unhealthy
/// everywhere; restarted: healthy everywhere again.
pub async fn phases(harness: &mut Harness, started: Instant, expect: usize) -> Result<Table> {
    let n = harness.cluster.agents.len();
    let all: Vec<usize> = (0..n).collect();
    let up = per_agent_until(harness, &all, started, move |s| s.leader.is_some() && healthy(s) == n).await?;
    // A learner, so that no election or voter change mixes into the timing.
    let status = harness.status(0).await?;
    let victim = status.agents.iter().find(|a| a.role == "learner").or_else(|| status.agents.last()).context("no agent")?;
    let name = victim.name.clone();
    let index = harness.cluster.agents.iter().position(|a| a.name == name).context("unknown agent")?;
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != index).collect();
    let killed = Instant::now();
    harness.cluster.kill(index)?;
    let gone = name.clone();
    let down = per_agent_until(harness, &survivors, killed, move |s| s.agents.iter().any(|a| a.name == gone && !a.healthy)).await?;
    harness.cluster.restart(index)?;
    let restarted = Instant::now();
    let back = per_agent_until(harness, &all, restarted, move |s| healthy(s) == n).await?;
    let title = format!("Gossip and health, {n} agents on loopback, bootstrap-expect {expect} ({name} killed, then restarted)");
    let mut table = Table::new(&title, &["until every agent reports", "agents", "min ms", "median ms", "max ms"]);
    for (what, samples) in [
        ("all N healthy + leader, from process start", up),
        ("the killed agent unhealthy, from kill -9", down),
        ("all N healthy again, from its restart", back),
    ] {
        let count = samples.len();
        let s = Stats::of(samples);
        table.row(vec![what.to_string(), count.to_string(), ms(s.min), ms(s.p50), ms(s.max)]);
    }
    Ok(table)
}
