//! What a log entry carries: a [`Command`] tagged with a [`ProposalId`], and the
//! de-duplication that makes retrying a proposal safe.
//!
//! A proposer that loses its leader's answer (a timeout, a leader change mid-commit)
//! cannot know whether its command was committed. It retries with the same id; if the
//! first copy was applied, the second is not applied again and gets the first's result.
//! Without this, a retried `SubmitJobs` would create the jobs twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};
use crate::state::ClusterState;

/// Identifies one proposal across retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    /// Random per proposer incarnation (a restarted node draws a new one).
    pub client: u64,
    /// Increases with every proposal of that client.
    pub seq: u64,
}

/// A log entry's application data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Retry identity.
    pub id: ProposalId,
    /// The change.
    pub command: Command,
}

/// How many results are remembered per client: more than the proposals one client can
/// have in flight at once.
const RESULTS_PER_CLIENT: usize = 1024;
/// How many clients are remembered (least recently seen forgotten first).
const CLIENTS: usize = 64;

/// Results of recent proposals, part of the replicated state (it is in snapshots, so
/// every replica de-duplicates identically).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentProposals {
    /// client → (log index it was last seen at, seq → result).
    clients: BTreeMap<u64, (u64, BTreeMap<u64, CommandResult>)>,
}

impl RecentProposals {
    /// Applies `proposal` (at log index `index`) to `state` unless it was applied
    /// before, in which case the earlier result is returned and the state is untouched.
    pub fn apply(&mut self, state: &mut ClusterState, proposal: &Proposal, index: u64) -> CommandResult {
        let ProposalId { client, seq } = proposal.id;
        if let Some(result) = self.clients.get(&client).and_then(|(_, results)| results.get(&seq)) {
            return result.clone();
        }
        let result = state.apply(&proposal.command);
        let (last_seen, results) = self.clients.entry(client).or_default();
        *last_seen = index;
        results.insert(seq, result.clone());
        if results.len() > RESULTS_PER_CLIENT {
            results.pop_first();
        }
        if self.clients.len() > CLIENTS {
            let oldest = self.clients.iter().min_by_key(|(_, (seen, _))| *seen).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.clients.remove(&oldest);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_submission_creates_its_jobs_once() {
        let mut state = ClusterState::default();
        let mut recent = RecentProposals::default();
        let proposal = Proposal {
            id: ProposalId { client: 7, seq: 1 },
            command: Command::CommitPlan { plan: Default::default(), at_ms: 5 },
        };
        let first = recent.apply(&mut state, &proposal, 10);
        let retry = recent.apply(&mut state, &proposal, 11);
        assert_eq!(first, retry);
        assert_eq!(state.plan_epoch, 1, "the retry must not commit a second plan");

        let next = Proposal { id: ProposalId { client: 7, seq: 2 }, ..proposal };
        recent.apply(&mut state, &next, 12);
        assert_eq!(state.plan_epoch, 2);
    }
}
