//! Membership decisions: which agents the replicated state should consider up.
//!
//! An agent whose heartbeats arrive but that is not up in the state (new, returning, or
//! reporting different GPUs) gets an `AgentUp`. An agent up in the state but silent for
//! longer than the grace period gets an `AgentDown`, and the state machine then ends
//! every attempt on it; those jobs return to `scheduled` at their last checkpoint and the
//! plan re-places them.
//!
//! # Why the grace period must be long enough
//!
//! `AgentDown` frees the lost attempts' GPUs *in the state*, so the leader may hand them,
//! or the jobs, out again at once. A host that is merely partitioned away still runs those
//! processes. "No GPU held by two jobs, no job running twice" therefore needs: by the time
//! the leader declares a host down, the host itself has stopped its jobs. The executor
//! fences itself after `grace_period / 2` without reaching a quorum and kills its job
//! processes; the leader waits the full `grace_period` after the last heartbeat it heard.
//! Both clocks start at about the same instant (the partition), so the margin is
//! `grace_period / 2` — it must cover the kill itself (the fence uses SIGKILL, or a term
//! grace well under that margin) plus heartbeat jitter. With the default 10 s, the fence
//! fires at 5 s and the host has 5 s more to be empty before anyone may reuse its work.

use saturn_consensus::{AgentRecord, ClusterState, Command};

use super::context::{AgentHealth, SchedContext};

/// The `AgentUp`/`AgentDown` commands the state needs now.
pub fn decide_membership(state: &ClusterState, ctx: &SchedContext) -> Vec<Command> {
    let mut commands = Vec::new();
    for (name, health) in &ctx.health {
        if let AgentHealth::Alive { node, gpus } = health {
            let known = state.agents().get(name);
            let current = known.is_some_and(|a: &AgentRecord| a.up && a.node == *node && a.gpus == *gpus);
            if !current {
                commands.push(Command::AgentUp { node: node.clone(), gpus: gpus.clone(), at_ms: ctx.now_ms });
            }
        }
    }
    for (name, agent) in state.agents() {
        if !agent.up {
            continue;
        }
        // Never count silence from before the agent was (re)declared up: an agent that
        // just returned has not had a chance to send a heartbeat to this leader yet.
        let Some(silent_since) = ctx.silent_since(name) else { continue };
        let silent_since = silent_since.max(agent.since_ms);
        if ctx.now_ms.saturating_sub(silent_since) > ctx.config.grace_period_ms {
            commands.push(Command::AgentDown { name: name.clone(), at_ms: ctx.now_ms });
        }
    }
    commands
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use saturn_consensus::{AgentNode, GpuInfo};

    use super::*;
    use crate::scheduler::config::SchedulerConfig;

    fn node(name: &str) -> AgentNode {
        AgentNode { name: name.into(), peer_id: format!("peer-{name}"), addrs: vec![] }
    }

    fn gpus(n: u32) -> Vec<GpuInfo> {
        (0..n).map(|index| GpuInfo { index, model: "SIM".into(), memory_mib: 1024 }).collect()
    }

    fn alive(name: &str, n: u32) -> (String, AgentHealth) {
        (name.into(), AgentHealth::Alive { node: node(name), gpus: gpus(n) })
    }

    fn ctx(now_ms: u64, health: impl IntoIterator<Item = (String, AgentHealth)>) -> SchedContext {
        let mut ctx = SchedContext::new(now_ms, health.into_iter().collect(), SchedulerConfig::default());
        ctx.observing_since_ms = 0;
        ctx
    }

    fn state_with_up(name: &str, n: u32, at_ms: u64) -> ClusterState {
        let mut state = ClusterState::default();
        state.apply(&Command::AgentUp { node: node(name), gpus: gpus(n), at_ms });
        state
    }

    #[test]
    fn a_new_agent_is_brought_up_once() {
        let mut state = ClusterState::default();
        let ctx = ctx(1_000, [alive("a", 4)]);
        let commands = decide_membership(&state, &ctx);
        assert!(matches!(&commands[..], [Command::AgentUp { node, .. }] if node.name == "a"));
        state.apply(&commands[0]);
        assert!(decide_membership(&state, &ctx).is_empty(), "nothing left to do once it is up");
    }

    #[test]
    fn changed_gpus_are_reported_again() {
        let state = state_with_up("a", 4, 0);
        let commands = decide_membership(&state, &ctx(1_000, [alive("a", 2)]));
        assert!(matches!(&commands[..], [Command::AgentUp { gpus, .. }] if gpus.len() == 2));
    }

    #[test]
    fn a_silent_agent_is_declared_down_only_after_the_grace_period() {
        let state = state_with_up("a", 4, 0);
        let dead = |now| ctx(now, [("a".to_string(), AgentHealth::Dead { since_ms: 1_000 })]);
        assert!(decide_membership(&state, &dead(10_000)).is_empty(), "9 s of silence is within grace");
        let commands = decide_membership(&state, &dead(11_001));
        assert!(matches!(&commands[..], [Command::AgentDown { name, .. }] if name == "a"));
    }

    #[test]
    fn a_new_leader_waits_a_full_grace_period_for_agents_it_never_heard() {
        let state = state_with_up("a", 4, 0);
        let mut ctx = ctx(50_000, BTreeMap::new());
        ctx.observing_since_ms = 45_000;
        assert!(decide_membership(&state, &ctx).is_empty());
        ctx.now_ms = 55_001;
        assert_eq!(decide_membership(&state, &ctx).len(), 1);
    }

    #[test]
    fn an_agent_already_down_is_not_declared_down_again() {
        let mut state = state_with_up("a", 4, 0);
        state.apply(&Command::AgentDown { name: "a".into(), at_ms: 20_000 });
        let dead = ctx(60_000, [("a".to_string(), AgentHealth::Dead { since_ms: 1_000 })]);
        assert!(decide_membership(&state, &dead).is_empty());
    }
}
