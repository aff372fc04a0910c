//! What the deciders know besides the replicated state: the time, and which agents the
//! mesh currently hears from. Both are soft: they come from the local clock and gossip.

use std::collections::BTreeMap;

use saturn_consensus::{AgentNode, GpuInfo};

use super::config::SchedulerConfig;

/// How the leader's failure detector sees one agent.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentHealth {
    /// Heartbeats arrive; the agent offers these GPUs.
    Alive {
        /// How to reach it.
        node: AgentNode,
        /// The GPUs it reports.
        gpus: Vec<GpuInfo>,
    },
    /// Silent since `since_ms` (Unix ms of the last heartbeat heard).
    Dead {
        /// Last time it was heard from.
        since_ms: u64,
    },
}

/// Inputs of one round of decisions, besides the state.
#[derive(Clone, Debug)]
pub struct SchedContext {
    /// Now, Unix milliseconds; stamped on every command proposed.
    pub now_ms: u64,
    /// Agents by name. An agent up in the state but missing here is treated as silent
    /// since `observing_since_ms`: a new leader has heard from nobody yet, and must
    /// neither declare everyone down at once nor wait forever for an agent that died
    /// before the election.
    pub health: BTreeMap<String, AgentHealth>,
    /// When this leader started watching heartbeats (Unix ms).
    pub observing_since_ms: u64,
    /// The knobs.
    pub config: SchedulerConfig,
}

impl SchedContext {
    /// A context in which every agent of `health` is as described and nobody else is known.
    pub fn new(now_ms: u64, health: BTreeMap<String, AgentHealth>, config: SchedulerConfig) -> Self {
        SchedContext { now_ms, health, observing_since_ms: now_ms, config }
    }

    /// Since when `agent` has been silent, or `None` when it is alive.
    pub fn silent_since(&self, agent: &str) -> Option<u64> {
        match self.health.get(agent) {
            Some(AgentHealth::Alive { .. }) => None,
            Some(AgentHealth::Dead { since_ms }) => Some(*since_ms),
            None => Some(self.observing_since_ms),
        }
    }
}
