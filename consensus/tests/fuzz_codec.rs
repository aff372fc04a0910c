//! Fuzzing the consensus crate's inputs: bytes from the network or the disk, and
//! commands from any member.
//!
//! - Decoding arbitrary and mutated bytes as a [`RaftRequest`], [`RaftResponse`],
//!   [`Command`], [`Proposal`] or [`ClusterState`] (snapshot) returns an error, never
//!   panics, and never makes one allocation larger than [`ALLOCATION_BOUND`] — a forged
//!   length must not become a buffer (an allocation failure aborts the process).
//! - Applying arbitrary well-typed commands (unknown jobs and hosts, extreme numbers,
//!   NaN metrics, hostile strings, duplicate GPUs) never panics and keeps the safety
//!   invariants of `fixtures::check_invariants`.
//!
//! These are proptest suites rather than cargo-fuzz targets: cargo-fuzz needs a nightly
//! toolchain, which CI does not have, and proptest runs inside `cargo test`. Each property
//! runs a few hundred cases (a few seconds); to search longer:
//! `PROPTEST_CASES=100000 cargo test --release -p saturn-consensus --test fuzz_codec`.

mod alloc_probe;
mod byte_mutation;
mod fixtures;

use std::collections::BTreeMap;

use alloc_probe::largest_allocation;
use byte_mutation::{mutate, mutation};
use fixtures::{check_invariants, host_up, spec};
use proptest::prelude::*;
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::proposal::{Proposal, ProposalId};
use saturn_consensus::{
    AgentNode, AttemptEvent, ClusterState, Command, DispatchKind, GpuInfo, HostGpus, JobId, JobPhase, PlannedAssignment,
    ProfileKey, ProfileResult, RaftRequest, RaftResponse, StoredPlan,
};

#[global_allocator]
static PROBE: alloc_probe::Probe = alloc_probe::Probe;

/// Largest single allocation decoding may make, whatever the bytes claim. Serde caps
/// sequence pre-allocation at 1 MiB; strings must be bounded by the input.
const ALLOCATION_BOUND: usize = 2 << 20;

/// Cases per property: a few seconds in CI, more with `PROPTEST_CASES`.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    // No regression files: proptest cannot place them for an integration test.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Decodes `bytes` as every wire and disk type, checking each allocation stays bounded.
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    fn one<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<(), TestCaseError> {
        let (_, largest) = largest_allocation(|| decode::<T>(what, bytes).is_ok());
        prop_assert!(largest <= ALLOCATION_BOUND, "decoding {} bytes as {what} allocated {largest} bytes at once", bytes.len());
        Ok(())
    }
    one::<RaftRequest>("raft request", bytes)?;
    one::<RaftResponse>("raft response", bytes)?;
    one::<Command>("command", bytes)?;
    one::<Proposal>("proposal", bytes)?;
    one::<ClusterState>("snapshot", bytes)
}

/// Encodings of real messages, to mutate: a submission, a forwarded proposal, a snapshot.
fn seeds() -> Vec<Vec<u8>> {
    let mut state = ClusterState::default();
    state.apply(&host_up("a", 4));
    let submit = Command::SubmitJobs { specs: vec![spec("gpt2", 100, 2), spec("vit", 10, 0)], at_ms: 5 };
    state.apply(&submit);
    let propose = RaftRequest::Propose(Proposal { id: ProposalId { client: 1, seq: 2 }, command: submit.clone() });
    let encoded = |what, value: &dyn erased::Encode| value.encode(what);
    vec![encoded("command", &submit), encoded("request", &propose), encoded("snapshot", &state)]
}

/// `encode` behind a trait object, so [`seeds`] can list values of different types.
mod erased {
    pub trait Encode {
        fn encode(&self, what: &'static str) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn encode(&self, what: &'static str) -> Vec<u8> {
            super::encode(what, self).unwrap_or_else(|e| panic!("the seed {what} must encode: {e}"))
        }
    }
}

/// Strings that are sometimes meaningful (known jobs and hosts), sometimes hostile.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![Just("a"), Just("b"), Just("j-000001"), Just("j-000002"), Just("ddp")].prop_map(String::from),
        1 => Just(String::new()),
        1 => Just("../../etc/passwd".to_string()),
        1 => "\\PC{0,16}",
        1 => Just("é".repeat(300)),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..8, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.0), any::<f64>()]
}

fn gpu_index() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..4, Just(u32::MAX)]
}

fn placement() -> impl Strategy<Value = Vec<HostGpus>> {
    let host_gpus = (text(), proptest::collection::vec(gpu_index(), 0..4)).prop_map(|(host, gpus)| HostGpus { host, gpus });
    proptest::collection::vec(host_gpus, 0..3)
}

fn profile_key() -> impl Strategy<Value = ProfileKey> {
    (text(), text(), any::<u32>(), any::<u32>(), text()).prop_map(|(profile_group, technique, gpus_per_host, hosts, gpu_model)| {
        ProfileKey { profile_group, technique, gpus_per_host, hosts, gpu_model }
    })
}

fn job_spec() -> impl Strategy<Value = saturn_consensus::JobSpec> {
    let early_stop = proptest::option::of((text(), number(), any::<u32>(), any::<bool>()));
    (text(), number(), any::<u32>(), any::<u32>(), any::<u32>(), float(), early_stop).prop_map(
        |(name, steps, lo, hi, restarts, step_time, early_stop)| {
            let mut job = spec(&name, steps, restarts);
            (job.gpus_min, job.gpus_max) = (lo, hi);
            job.profile = BTreeMap::from([("ddp".to_string(), BTreeMap::from([(lo, step_time)]))]);
            job.early_stop = early_stop.map(|(metric, min_steps, reduction, asha)| saturn_consensus::EarlyStop {
                sweep: name.clone(),
                metric,
                mode: saturn_consensus::MetricMode::Min,
                rule: if asha { saturn_consensus::StopRule::Asha } else { saturn_consensus::StopRule::Median },
                min_steps,
                reduction,
            });
            job
        },
    )
}

fn event() -> impl Strategy<Value = AttemptEvent> {
    prop_oneof![
        Just(AttemptEvent::Started),
        (number(), text(), float()).prop_map(|(step, name, value)| AttemptEvent::Progress { step, metrics: vec![(name, value)] }),
        number().prop_map(|step| AttemptEvent::Checkpoint { step }),
        (proptest::option::of(any::<i32>()), proptest::option::of(text())).prop_map(|(code, error)| AttemptEvent::Exited { code, error }),
        (float(), any::<u32>()).prop_map(|(seconds_per_step, samples)| AttemptEvent::TrialStepTime { seconds_per_step, samples }),
        (proptest::option::of(any::<i32>()), proptest::option::of(text())).prop_map(|(code, error)| AttemptEvent::HandBack { code, error }),
    ]
}

fn job() -> impl Strategy<Value = JobId> {
    text().prop_map(JobId)
}

fn attempt() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..4, Just(0), Just(u32::MAX)]
}

/// Any command a member could propose, well-typed but otherwise unconstrained.
fn wide_command() -> impl Strategy<Value = Command> {
    let kind = prop_oneof![Just(DispatchKind::Train), (profile_key(), number()).prop_map(|(profile_key, steps)| DispatchKind::Trial { profile_key, steps })];
    let assignment = (job(), text(), placement(), float(), float())
        .prop_map(|(job, technique, placement, start_s, end_s)| PlannedAssignment { job, technique, placement, start_s, end_s });
    prop_oneof![
        2 => (proptest::collection::vec(job_spec(), 0..3), number()).prop_map(|(specs, at_ms)| Command::SubmitJobs { specs, at_ms }),
        1 => (job(), number()).prop_map(|(job, at_ms)| Command::CancelJob { job, at_ms }),
        1 => (job(), prop_oneof![Just(JobPhase::Queued), Just(JobPhase::Profiling), Just(JobPhase::Scheduled)])
            .prop_map(|(job, phase)| Command::SetJobPhase { job, phase, at_ms: 0 }),
        1 => (profile_key(), prop_oneof![float().prop_map(ProfileResult::StepTime), text().prop_map(|reason| ProfileResult::Infeasible { reason })])
            .prop_map(|(key, result)| Command::RecordProfile { key, result }),
        1 => (proptest::collection::vec(assignment, 0..3), float(), number()).prop_map(|(assignments, makespan_s, at_ms)| Command::CommitPlan {
            plan: StoredPlan { epoch: u64::MAX, makespan_s, assignments, ..StoredPlan::default() },
            at_ms,
        }),
        4 => (job(), text(), placement(), kind, number())
            .prop_map(|(job, technique, placement, kind, at_ms)| Command::Dispatch { job, technique, placement, kind, at_ms }),
        4 => (job(), attempt(), event(), number()).prop_map(|(job, attempt, event, at_ms)| Command::JobEvent { job, attempt, event, at_ms }),
        1 => prop_oneof![
            (job(), attempt()).prop_map(|(job, attempt)| Command::Preempt { job, attempt, at_ms: 0 }),
            (job(), text(), number()).prop_map(|(job, reason, at_ms)| Command::StopJob { job, reason, at_ms }),
        ],
        1 => (text(), proptest::collection::vec((gpu_index(), text()), 0..5), number()).prop_map(|(name, gpus, at_ms)| Command::AgentUp {
            node: AgentNode { name, peer_id: "p".into(), addrs: vec![] },
            gpus: gpus.into_iter().map(|(index, model)| GpuInfo { index, model, memory_mib: u64::MAX }).collect(),
            at_ms,
        }),
        1 => (text(), number()).prop_map(|(name, at_ms)| Command::AgentDown { name, at_ms }),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_decode_to_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes)?;
    }

    #[test]
    fn mutated_messages_decode_to_errors_not_panics(seed in 0usize..3, edits in proptest::collection::vec(mutation(), 1..8)) {
        let bytes = edits.into_iter().fold(seeds()[seed].clone(), mutate);
        decode_everything(&bytes)?;
    }

    #[test]
    fn arbitrary_commands_apply_without_panics_and_keep_the_rules(commands in proptest::collection::vec(wide_command(), 1..60)) {
        let mut state = ClusterState::default();
        state.apply(&host_up("a", 4));
        state.apply(&host_up("b", 2));
        state.apply(&Command::SubmitJobs { specs: vec![spec("x", 10, 1), spec("y", 10, 0)], at_ms: 0 });
        for command in &commands {
            state.apply(command);
            if let Err(violation) = check_invariants(&state) {
                return Err(TestCaseError::fail(format!("after {command:?}: {violation}")));
            }
        }
        // What the state machine made must itself round-trip, as a snapshot would.
        let bytes = encode("snapshot", &state).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: ClusterState = decode("snapshot", &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(format!("{back:?}"), format!("{state:?}"));
    }
}

/// A string claiming 2^62 bytes inside a 12-byte command: refused without allocating.
#[test]
fn a_forged_string_length_is_refused_without_allocating_it() {
    // SubmitJobs (variant 0), one spec, then the spec's name: varint marker 253 + u64 LE.
    let mut forged = vec![0u8, 1, 253];
    forged.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let (result, largest) = largest_allocation(|| decode::<Command>("command", &forged));
    assert!(result.is_err(), "a 2^62-byte name cannot be in {} bytes", forged.len());
    assert!(largest <= ALLOCATION_BOUND, "allocated {largest} bytes for a forged length");

    // The same inside a forwarded proposal, the message any member may send.
    let mut forged = vec![3u8, 1, 2, 0, 1, 253];
    forged.extend_from_slice(&(40u64 << 30).to_le_bytes());
    let (result, largest) = largest_allocation(|| decode::<RaftRequest>("raft request", &forged));
    assert!(result.is_err());
    assert!(largest <= ALLOCATION_BOUND, "allocated {largest} bytes for a forged length");
}

#[test]
fn the_seeds_decode_unmutated() {
    let seeds = seeds();
    assert!(decode::<Command>("command", &seeds[0]).is_ok());
    assert!(matches!(decode::<RaftRequest>("request", &seeds[1]), Ok(RaftRequest::Propose(_))));
    let state: ClusterState = decode("snapshot", &seeds[2]).expect("the snapshot seed decodes");
    assert_eq!(state.jobs().len(), 2);
}
