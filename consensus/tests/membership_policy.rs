//! The pure membership policy: formation with bootstrap-expect, learners, odd voter sets,
//! replacement of lost voters.

use std::collections::{BTreeMap, BTreeSet};

use saturn_consensus::membership::{formation, plan_membership, Formation, MembershipAction, MembershipInput, PeerView};
use saturn_consensus::{node_id_for_peer, AgentNode, NodeId};

const GRACE: u64 = 30_000;
const NOW: u64 = 1_000_000;

fn agent(peer: &str) -> AgentNode {
    AgentNode { name: format!("host-{peer}"), peer_id: peer.to_string(), addrs: vec![] }
}

fn id(peer: &str) -> NodeId {
    node_id_for_peer(peer)
}

/// Input where `leader` leads, with the given voters and learners, all seen just now
/// and caught up.
fn input(leader: &str, voters: &[&str], learners: &[&str]) -> MembershipInput {
    let peers = voters
        .iter()
        .chain(learners)
        .map(|p| (id(p), PeerView { node: agent(p), last_seen_ms: NOW, caught_up: true }))
        .collect();
    MembershipInput {
        leader: id(leader),
        voters: voters.iter().map(|p| id(p)).collect(),
        learners: learners.iter().map(|p| id(p)).collect(),
        peers,
        now_ms: NOW,
        grace_ms: GRACE,
    }
}

fn ids(peers: &[&str]) -> BTreeSet<NodeId> {
    peers.iter().map(|p| id(p)).collect()
}

#[test]
fn agents_starting_together_form_exactly_one_cluster() {
    let everyone: Vec<AgentNode> = ["p3", "p1", "p2"].iter().map(|p| agent(p)).collect();
    let decisions: Vec<Formation> = everyone.iter().map(|me| formation(me, &everyone, 3, false)).collect();
    let initialisers: Vec<_> = decisions.iter().filter(|d| matches!(d, Formation::Initialize { .. })).collect();
    assert_eq!(initialisers.len(), 1);
    assert_eq!(decisions[1], Formation::Initialize { voters: everyone.iter().map(|a| (id(&a.peer_id), a.clone())).collect() });
}

#[test]
fn formation_waits_for_the_expected_agents_and_never_reinitialises() {
    let me = agent("p1");
    assert_eq!(formation(&me, &[agent("p2")], 3, false), Formation::Wait);
    assert_eq!(formation(&me, &[agent("p2"), agent("p3")], 3, true), Formation::Wait);
    let single = formation(&me, &[], 1, false);
    assert_eq!(single, Formation::Initialize { voters: BTreeMap::from([(id("p1"), me.clone())]) });
}

#[test]
fn formation_with_an_even_expectation_starts_with_an_odd_voter_set() {
    let everyone: Vec<AgentNode> = ["p1", "p2", "p3", "p4"].iter().map(|p| agent(p)).collect();
    let Formation::Initialize { voters } = formation(&everyone[0], &everyone, 4, false) else { panic!("p1 initialises") };
    assert_eq!(voters.keys().copied().collect::<BTreeSet<_>>(), ids(&["p1", "p2", "p3"]));
}

#[test]
fn a_joiner_becomes_a_learner_and_is_promoted_once_caught_up() {
    let mut input = input("a", &["a"], &[]);
    input.peers.insert(id("b"), PeerView { node: agent("b"), last_seen_ms: NOW, caught_up: false });
    assert_eq!(plan_membership(&input), vec![MembershipAction::AddLearners { nodes: BTreeMap::from([(id("b"), agent("b"))]) }]);

    input.learners.insert(id("b"));
    assert_eq!(plan_membership(&input), vec![], "one voter with two members: nothing to do");
    input.peers.insert(id("c"), PeerView { node: agent("c"), last_seen_ms: NOW, caught_up: true });
    input.learners.insert(id("c"));
    input.peers.get_mut(&id("b")).expect("b").caught_up = true;
    assert_eq!(plan_membership(&input), vec![MembershipAction::ChangeVoters { voters: ids(&["a", "b", "c"]) }]);
}

#[test]
fn voters_grow_to_five_and_never_become_even() {
    for learners in 0..6 {
        let names = ["b", "c", "d", "e", "f", "g"];
        let input = input("a", &["a"], &names[..learners]);
        let voters = plan_membership(&input)
            .into_iter()
            .find_map(|a| match a {
                MembershipAction::ChangeVoters { voters } => Some(voters),
                _ => None,
            })
            .unwrap_or_else(|| input.voters.clone());
        let expected = match learners + 1 { 1 | 2 => 1, 3 | 4 => 3, _ => 5 };
        assert_eq!(voters.len(), expected, "with {} members", learners + 1);
        assert!(voters.contains(&id("a")), "the leader keeps its vote");
    }
}

#[test]
fn a_voter_gone_past_the_grace_period_is_replaced_by_a_caught_up_learner() {
    let mut input = input("a", &["a", "b", "c"], &["d", "e"]);
    input.peers.get_mut(&id("c")).expect("c").last_seen_ms = NOW - GRACE + 1;
    input.peers.get_mut(&id("d")).expect("d").caught_up = false;
    assert_eq!(plan_membership(&input), vec![], "within the grace period nothing changes");

    input.peers.get_mut(&id("c")).expect("c").last_seen_ms = NOW - GRACE - 1;
    assert_eq!(plan_membership(&input), vec![MembershipAction::ChangeVoters { voters: ids(&["a", "b", "e"]) }]);

    // Next round: c is now a learner that is gone, so it is removed.
    input.voters = ids(&["a", "b", "e"]);
    input.learners = ids(&["c", "d"]);
    assert_eq!(plan_membership(&input), vec![MembershipAction::RemoveLearners { ids: ids(&["c"]) }]);
}

#[test]
fn without_a_replacement_three_voters_stay_three_rather_than_one() {
    let mut input = input("a", &["a", "b", "c"], &[]);
    input.peers.get_mut(&id("b")).expect("b").last_seen_ms = 0;
    assert_eq!(plan_membership(&input), vec![], "a and c are a majority; shrinking to a lone voter is not safer");
}

#[test]
fn five_voters_with_two_gone_shrink_to_the_three_alive() {
    let mut input = input("a", &["a", "b", "c", "d", "e"], &[]);
    input.peers.get_mut(&id("d")).expect("d").last_seen_ms = 0;
    input.peers.get_mut(&id("e")).expect("e").last_seen_ms = 0;
    assert_eq!(plan_membership(&input), vec![MembershipAction::ChangeVoters { voters: ids(&["a", "b", "c"]) }]);
}

#[test]
fn a_returning_agent_is_readmitted_as_a_learner() {
    let mut input = input("a", &["a"], &[]);
    input.peers.insert(id("z"), PeerView { node: agent("z"), last_seen_ms: NOW, caught_up: false });
    assert_eq!(plan_membership(&input), vec![MembershipAction::AddLearners { nodes: BTreeMap::from([(id("z"), agent("z"))]) }]);
    input.peers.get_mut(&id("z")).expect("z").last_seen_ms = 0;
    assert_eq!(plan_membership(&input), vec![], "an agent not seen recently is not added");
}

#[test]
fn many_joiners_at_once_are_admitted_in_one_membership_change() {
    let mut input = input("a", &["a", "b", "c"], &[]);
    let joiners: Vec<String> = (0..12).map(|i| format!("j{i}")).collect();
    for peer in &joiners {
        input.peers.insert(id(peer), PeerView { node: agent(peer), last_seen_ms: NOW, caught_up: false });
    }
    let expected: BTreeMap<NodeId, AgentNode> = joiners.iter().map(|p| (id(p), agent(p))).collect();
    assert_eq!(plan_membership(&input), vec![MembershipAction::AddLearners { nodes: expected }]);
}
