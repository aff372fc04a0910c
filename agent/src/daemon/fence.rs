//! The quorum fence and the job watchdogs' lease: an agent that has not heard a majority
//! of the voters for `fence_after` stops its jobs; a frozen agent stops renewing the lease
//! and its jobs' watchdogs stop them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saturn_consensus::ConsensusNode;
use tokio::sync::watch;

use super::soft::SoftState;
use crate::executor::watchdog::Lease;

/// How often the job watchdogs' lease is renewed.
const LEASE_RENEWAL: Duration = Duration::from_millis(400);

/// When this agent last heard from a majority of the voters (itself counted as heard
/// now): the majority-th most recent of their last heartbeats. `None` when it never has.
pub fn quorum_heard(voters: &[(bool, Option<Duration>)]) -> Option<Duration> {
    let mut silences: Vec<Duration> = voters
        .iter()
        .filter_map(|(me, silent)| if *me { Some(Duration::ZERO) } else { *silent })
        .collect();
    silences.sort();
    silences.get(voters.len() / 2).copied()
}

/// Publishes `fenced = true` once this agent has not heard from a majority of the voters
/// for `fence_after`, measured from the last heartbeats themselves (not from the failure
/// detector's verdict, which comes seconds later), so a partitioned agent stops its jobs
/// well before the majority, which waits the full grace period, runs them elsewhere.
/// It also renews the `lease` its jobs' watchdogs check (as long as this task runs,
/// fenced or not: the fence stops the jobs of a running agent): a frozen or hung agent
/// stops renewing it, and the watchdogs stop the jobs it no longer can.
pub async fn fence(
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    fence_after: Duration,
    fenced: watch::Sender<bool>,
    lease: Lease,
) {
    let started = Instant::now();
    let mut renewed: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let metrics = node.metrics();
        let cut_off = if metrics.voters.is_empty() {
            false
        } else {
            let voters: Vec<(bool, Option<Duration>)> = metrics
                .voters
                .iter()
                .map(|id| {
                    let name = metrics.nodes.get(id).map(|n| n.name.as_str()).unwrap_or("");
                    (*id == metrics.id, soft.silent_for(name, now))
                })
                .collect();
            // Just started: nobody heard yet is not a partition.
            let silence = quorum_heard(&voters).unwrap_or_else(|| now.duration_since(started));
            silence > fence_after
        };
        if renewed.is_none_or(|at| now.duration_since(at) >= LEASE_RENEWAL) {
            match lease.renew() {
                Ok(()) => renewed = Some(now),
                Err(err) => tracing::warn!(path = %lease.path().display(), %err, "cannot renew the job watchdogs' lease"),
            }
        }
        if *fenced.borrow() != cut_off {
            if cut_off {
                tracing::warn!("no quorum of voters heard for {fence_after:?}: fencing this agent's jobs");
            } else {
                tracing::info!("quorum heard again: fence lifted");
            }
            fenced.send_replace(cut_off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quorum_heard;
    use std::time::Duration;

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    #[test]
    fn a_quorum_is_heard_when_a_majority_spoke_recently() {
        // Me plus one of two others: a majority of three heard now-ish.
        assert_eq!(quorum_heard(&[(true, None), (false, s(1)), (false, s(30))]), s(1));
        // Both others silent: the majority was last heard when the fresher one spoke.
        assert_eq!(quorum_heard(&[(true, None), (false, s(7)), (false, s(30))]), s(7));
        // Five voters need three: me and the two freshest.
        assert_eq!(quorum_heard(&[(true, None), (false, s(2)), (false, s(4)), (false, s(9)), (false, None)]), s(4));
        // Never heard from anyone else.
        assert_eq!(quorum_heard(&[(true, None), (false, None), (false, None)]), None);
        assert_eq!(quorum_heard(&[(true, None)]), Some(Duration::ZERO));
    }
}
