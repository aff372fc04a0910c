//! Everything that crosses the network or the disk round-trips through bincode 2 (serde
//! API, standard config) unchanged: commands, results, Raft RPCs, snapshots.

mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use fixtures::random::command;
use fixtures::{event, host_up, on, spec, train};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use proptest::prelude::*;
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::proposal::{Proposal, ProposalId};
use saturn_consensus::{
    AgentNode, AttemptEvent, ClusterState, Command, CommandResult, ForwardError, JobId, PlannedAssignment,
    ProfileKey, ProfileResult, RaftRequest, RaftResponse, Rejection, StoredPlan, TypeConfig,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes and decodes `value`, and checks nothing changed (by `Debug`, which every
/// openraft message has, unlike `PartialEq`).
fn round_trip<T: Serialize + DeserializeOwned + Debug>(value: &T) -> T {
    let bytes = encode("value", value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    let back: T = decode("value", &bytes).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    assert_eq!(format!("{back:?}"), format!("{value:?}"));
    back
}

fn member(i: u64) -> AgentNode {
    AgentNode { name: format!("node-{i}"), peer_id: format!("12D3Koo{i}"), addrs: vec![format!("/ip4/10.0.0.{i}/tcp/7946")] }
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<u64, AgentNode> {
    let nodes: BTreeMap<u64, AgentNode> = (1..=4).map(|i| (i, member(i))).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn proposal(command: Command) -> Proposal {
    Proposal { id: ProposalId { client: 42, seq: 7 }, command }
}

#[test]
fn raft_requests_round_trip() {
    let entries: Vec<Entry<TypeConfig>> = vec![
        Entry { log_id: log_id(2, 10), payload: EntryPayload::Blank },
        Entry { log_id: log_id(2, 11), payload: EntryPayload::Normal(vec![proposal(host_up("a", 2)), proposal(Command::CancelJob { job: JobId::from_seq(1), at_ms: 3 })]) },
        Entry { log_id: log_id(2, 12), payload: EntryPayload::Membership(membership()) },
    ];
    let append = AppendEntriesRequest { vote: Vote::new_committed(2, 1), prev_log_id: Some(log_id(1, 9)), entries, leader_commit: Some(log_id(2, 10)) };
    round_trip(&RaftRequest::AppendEntries(append));
    round_trip(&RaftRequest::Vote(VoteRequest { vote: Vote::new(3, 2), last_log_id: Some(log_id(2, 12)) }));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 12)),
        last_membership: StoredMembership::new(Some(log_id(2, 12)), membership()),
        snapshot_id: "2-1-12".into(),
    };
    let chunk = InstallSnapshotRequest { vote: Vote::new_committed(2, 1), meta, offset: 0, data: vec![1, 2, 3], done: true };
    round_trip(&RaftRequest::InstallSnapshot(chunk));
    round_trip(&RaftRequest::Propose(proposal(Command::CancelJob { job: JobId::from_seq(3), at_ms: 9 })));
}

#[test]
fn raft_responses_round_trip() {
    round_trip(&RaftResponse::AppendEntries(Ok(AppendEntriesResponse::Success)));
    round_trip(&RaftResponse::AppendEntries(Ok(AppendEntriesResponse::Conflict)));
    round_trip(&RaftResponse::AppendEntries(Ok(AppendEntriesResponse::HigherVote(Vote::new(5, 3)))));
    round_trip(&RaftResponse::AppendEntries(Err(RaftError::Fatal(Fatal::Stopped))));
    let vote = VoteResponse { vote: Vote::new(3, 2), vote_granted: true, last_log_id: None };
    round_trip(&RaftResponse::Vote(Ok(vote)));
    round_trip(&RaftResponse::Propose(Ok(CommandResult::Dispatched { job: JobId::from_seq(1), attempt: 2 })));
    round_trip(&RaftResponse::Propose(Err(ForwardError::NotLeader { leader: Some((3, member(3))) })));
    round_trip(&RaftResponse::Propose(Err(ForwardError::Failed("shutting down".into()))));
}

#[test]
fn every_command_result_round_trips() {
    let job = JobId::from_seq(1);
    let rejections = vec![
        Rejection::UnknownJob(job.clone()),
        Rejection::JobEnded(job.clone()),
        Rejection::AttemptLive { job: job.clone(), attempt: 1 },
        Rejection::StaleAttempt { job: job.clone(), attempt: 1 },
        Rejection::GpuBusy { host: "a".into(), gpu: 0, job: job.clone(), attempt: 2 },
        Rejection::HostNotUp("a".into()),
        Rejection::UnknownAgent("a".into()),
        Rejection::NoSuchGpu { host: "a".into(), gpu: 9 },
        Rejection::BadPlacement("no GPUs".into()),
        Rejection::UnknownTechnique { job: job.clone(), technique: "zero".into() },
        Rejection::WrongState { job: job.clone(), why: "running".into() },
    ];
    let mut results = vec![
        CommandResult::Applied,
        CommandResult::Submitted { jobs: vec![job.clone()] },
        CommandResult::Dispatched { job, attempt: 1 },
        CommandResult::PlanCommitted { epoch: 4 },
    ];
    results.extend(rejections.into_iter().map(CommandResult::Rejected));
    for result in &results {
        assert_eq!(&round_trip(result), result);
    }
}

#[test]
fn a_busy_state_round_trips_as_a_snapshot_would() {
    let mut state = ClusterState::default();
    state.apply(&host_up("a", 4));
    state.apply(&Command::SubmitJobs { specs: vec![spec("x", 100, 1), spec("y", 100, 1)], at_ms: 1 });
    let job = JobId::from_seq(1);
    state.apply(&train(&job, on("a", &[0, 1])));
    state.apply(&event(&job, 1, AttemptEvent::Progress { step: 5, metrics: vec![("loss".into(), 1.5)] }));
    let key = ProfileKey { profile_group: "g".into(), technique: "ddp".into(), gpus_per_host: 2, hosts: 1, gpu_model: "A100".into() };
    state.apply(&Command::RecordProfile { key: key.clone(), result: ProfileResult::StepTime(0.25) });
    state.apply(&Command::RecordProfile { key: ProfileKey { hosts: 2, ..key }, result: ProfileResult::Infeasible { reason: "oom".into() } });
    let assignment = PlannedAssignment { job: JobId::from_seq(2), technique: "fsdp".into(), placement: on("a", &[2]), start_s: 0.0, end_s: 60.5 };
    let plan = StoredPlan { makespan_s: 60.5, lower_bound_s: 50.0, baseline_makespan_s: 90.0, solver: "milp".into(), assignments: vec![assignment], ..Default::default() };
    state.apply(&Command::CommitPlan { plan, at_ms: 2 });
    assert_eq!(round_trip(&state), state);
    // The same state also renders as JSON (for debugging and the API), states in lowercase.
    let json = serde_json::to_value(&state).expect("state as JSON");
    assert_eq!(json["jobs"]["j-000001"]["state"], "running");
    assert_eq!(json["jobs"]["j-000001"]["live"]["status"], "running");
    assert_eq!(serde_json::from_value::<ClusterState>(json).expect("JSON back"), state);
}

proptest! {
    #[test]
    fn random_commands_round_trip(command in command()) {
        prop_assert_eq!(round_trip(&command), command.clone());
        let request = RaftRequest::Propose(proposal(command));
        round_trip(&request);
    }
}
