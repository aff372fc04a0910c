//! Waiting for a quiet cluster between measurements, and keeping the agents' logs.

use std::time::Duration;

use anyhow::{Context, Result};
use saturn_consensus::membership::voter_target;
use saturn_tests::{eventually, Harness};

/// Waits until every agent reports every agent healthy, the same leader, the full voter
/// set and the same applied log index, so that each trial starts from a settled cluster
/// (a follower still catching up after a restart makes the next election collide, see
/// tests/README.md); returns the leader's index.
pub async fn steady(harness: &Harness) -> Result<usize> {
    let n = harness.cluster.agents.len();
    eventually("every agent healthy and caught up under one leader", Duration::from_secs(60), || async {
        let mut seen: Option<(String, u64)> = None;
        for i in 0..n {
            let status = harness.status(i).await?;
            let healthy = status.agents.iter().filter(|a| a.healthy).count();
            let voters = status.agents.iter().filter(|a| a.role == "voter").count();
            let Some(leader) = status.leader.filter(|_| healthy == n && voters == voter_target(n)) else {
                return Ok(None);
            };
            if seen.as_ref().is_some_and(|s| *s != (leader.clone(), status.applied_index)) {
                return Ok(None);
            }
            seen = Some((leader, status.applied_index));
        }
        let (name, _) = seen.context("no agents")?;
        Ok(harness.cluster.agents.iter().position(|a| a.name == name))
    })
    .await
}

/// Copies every agent's log to `SATURN_BENCH_KEEP_LOGS`/`section`-NAME.log when set.
pub fn keep_logs(harness: &Harness, section: &str) -> Result<()> {
    let Ok(dir) = std::env::var("SATURN_BENCH_KEEP_LOGS") else { return Ok(()) };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    for agent in &harness.cluster.agents {
        let to = std::path::Path::new(&dir).join(format!("{section}-{}.log", agent.name));
        std::fs::copy(&agent.log_path, &to).with_context(|| format!("copying {}", agent.log_path.display()))?;
    }
    Ok(())
}
