//! Logs and snapshots written by an earlier version still load and apply the same way.
//!
//! `fixtures/log_v1/` was written once, by the code of the commit that added this test
//! (before `AttemptEvent::TrialStepTime` and `AttemptEvent::HandBack` existed), with
//! `SATURN_WRITE_LOG_FIXTURES=1 cargo test -p saturn-consensus --test log_encoding`. Never
//! regenerate it: its point is to hold bytes the current code did not write.
//! - `entries.bin`: the log, one storage encoding per entry (what `LogStore` keeps in
//!   redb), covering every command and every attempt event of that version;
//! - `snapshot.bin`: the snapshot data the state machine builds after applying it;
//! - `state.json`, `results.json`: the state and the apply results, for people and for
//!   the check that applying the old log still gives the same state.
//!
//! Variants are encoded by their index, so a variant inserted before an old one (or a
//! field added to a type in the snapshot) fails here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::proposal::{Proposal, ProposalId, RecentProposals};
use saturn_consensus::{
    AgentNode, AttemptEvent, ClusterState, Command, CommandResult, DispatchKind, EarlyStop, GpuInfo, HostGpus, JobId,
    JobPhase, JobSpec, MetricMode, PlannedAssignment, ProfileKey, ProfileResult, StopRule, StoredPlan, TypeConfig,
    STEP_TIME_METRIC,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log_v1")
}

fn spec(name: &str, steps: u64, early_stop: Option<EarlyStop>) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        command: vec!["python3".into(), "train.py".into()],
        workdir: "/tmp".into(),
        env: BTreeMap::from([("SEED".to_string(), "7".to_string())]),
        steps,
        techniques: vec!["ddp".into(), "fsdp".into()],
        gpus_min: 1,
        gpus_max: 4,
        profile_group: format!("{name}-group"),
        max_restarts: 2,
        profile: BTreeMap::new(),
        early_stop,
        duration_estimate_s: 600,
    }
}

fn on(host: &str, gpus: &[u32]) -> Vec<HostGpus> {
    vec![HostGpus { host: host.to_string(), gpus: gpus.to_vec() }]
}

fn job(n: u64) -> JobId {
    JobId::from_seq(n)
}

fn event(n: u64, attempt: u32, event: AttemptEvent, at_ms: u64) -> Command {
    Command::JobEvent { job: job(n), attempt, event, at_ms }
}

fn key(group: &str) -> ProfileKey {
    ProfileKey { profile_group: group.to_string(), technique: "ddp".into(), gpus_per_host: 1, hosts: 1, gpu_model: "A100".into() }
}

/// Every command and attempt event of version 1, in an order where most of them apply.
fn scenario() -> Vec<Command> {
    let node = |name: &str| AgentNode { name: name.into(), peer_id: format!("12D3Koo{name}"), addrs: vec![format!("/ip4/10.0.0.1/tcp/7{}", name.len())] };
    let gpus = |n: u32| (0..n).map(|index| GpuInfo { index, model: "A100".into(), memory_mib: 81920 }).collect::<Vec<_>>();
    let sweep = EarlyStop {
        sweep: "lr".into(),
        metric: "loss".into(),
        mode: MetricMode::Min,
        rule: StopRule::Asha,
        min_steps: 10,
        reduction: 2,
    };
    let plan = StoredPlan {
        epoch: 0,
        committed_at_ms: 0,
        makespan_s: 120.5,
        lower_bound_s: 100.0,
        baseline_makespan_s: 150.0,
        solver: "local-search".into(),
        assignments: vec![PlannedAssignment { job: job(1), technique: "ddp".into(), placement: on("a", &[0, 1]), start_s: 0.0, end_s: 120.5 }],
        solve_ms: 42,
    };
    vec![
        Command::AgentUp { node: node("a"), gpus: gpus(4), at_ms: 1_000 },
        Command::AgentUp { node: node("b"), gpus: gpus(2), at_ms: 1_001 },
        Command::SubmitJobs {
            specs: vec![spec("train", 100, None), spec("trial", 50, None), spec("sweep", 80, Some(sweep)), spec("gone", 10, None)],
            at_ms: 1_010,
        },
        Command::SetJobPhase { job: job(2), phase: JobPhase::Profiling, at_ms: 1_020 },
        Command::RecordProfile { key: key("noop-group"), result: ProfileResult::NoSteps },
        Command::RecordProfile { key: key("oom-group"), result: ProfileResult::Infeasible { reason: "out of memory".into() } },
        Command::RecordProfile { key: key("train-group"), result: ProfileResult::StepTime(0.25) },
        Command::CommitPlan { plan, at_ms: 1_030 },
        // Job 1 trains on a: every training event.
        Command::Dispatch { job: job(1), technique: "ddp".into(), placement: on("a", &[0, 1]), kind: DispatchKind::Train, at_ms: 1_040 },
        event(1, 1, AttemptEvent::Resumed { step: 0, note: Some("no copy reachable".into()) }, 1_041),
        event(1, 1, AttemptEvent::Started, 1_042),
        event(1, 1, AttemptEvent::Progress { step: 20, metrics: vec![("loss".into(), 2.5)] }, 1_050),
        event(1, 1, AttemptEvent::Checkpoint { step: 20 }, 1_051),
        event(
            1,
            1,
            AttemptEvent::CheckpointStored { step: 20, size: 4096, files: 3, digest: "ab12".into(), copies_wanted: 2 },
            1_052,
        ),
        event(1, 1, AttemptEvent::CheckpointRefused { step: 25, reason: "over the size cap".into() }, 1_053),
        Command::CheckpointCopied { job: job(1), step: 20, host: "b".into(), digest: "ab12".into(), bytes: 4096, at_ms: 1_054 },
        Command::CheckpointDropped { job: job(1), step: 20, host: "b".into(), reason: "digest mismatch".into(), at_ms: 1_055 },
        // A hand-back as version 1 writes it: a preemption, then the exit.
        Command::Preempt { job: job(1), attempt: 1, at_ms: 1_060 },
        event(1, 1, AttemptEvent::Exited { code: None, error: Some("ended when its agent restarted".into()) }, 1_061),
        // A failed attempt (a restart), then a stale event of it.
        Command::Dispatch { job: job(1), technique: "fsdp".into(), placement: on("b", &[0]), kind: DispatchKind::Train, at_ms: 1_070 },
        event(1, 2, AttemptEvent::Started, 1_071),
        event(1, 2, AttemptEvent::Exited { code: Some(1), error: Some("Traceback ...".into()) }, 1_072),
        event(1, 2, AttemptEvent::Progress { step: 99, metrics: vec![] }, 1_073),
        // Job 2: a trial, its step time the version-1 way (a step-0 progress with a metric).
        Command::Dispatch {
            job: job(2),
            technique: "ddp".into(),
            placement: on("a", &[2]),
            kind: DispatchKind::Trial { profile_key: key("trial-group"), steps: 30 },
            at_ms: 1_080,
        },
        event(2, 1, AttemptEvent::Started, 1_081),
        event(2, 1, AttemptEvent::Progress { step: 12, metrics: vec![] }, 1_082),
        event(2, 1, AttemptEvent::Progress { step: 0, metrics: vec![(STEP_TIME_METRIC.into(), 0.125)] }, 1_083),
        event(2, 1, AttemptEvent::Exited { code: Some(0), error: None }, 1_084),
        // Job 3: a sweep member stopped early while running on b, then its host is lost.
        Command::Dispatch { job: job(3), technique: "ddp".into(), placement: on("b", &[1]), kind: DispatchKind::Train, at_ms: 1_090 },
        event(3, 1, AttemptEvent::Progress { step: 10, metrics: vec![("loss".into(), 3.0)] }, 1_091),
        Command::StopJob { job: job(3), reason: "asha: worst at rung 10".into(), at_ms: 1_092 },
        Command::AgentDown { name: "b".into(), at_ms: 1_093 },
        // Job 4: cancelled, then a failed command on it; job 1 given up.
        Command::CancelJob { job: job(4), at_ms: 1_100 },
        Command::FailJob { job: job(4), reason: "rejected: already ended".into(), at_ms: 1_101 },
        Command::FailJob { job: job(1), reason: "every configuration is infeasible".into(), at_ms: 1_102 },
        Command::CheckpointRootMarked { marker: "marker-0001".into() },
        Command::AgentUp { node: node("b"), gpus: gpus(2), at_ms: 1_110 },
    ]
}

/// The log: proposals of two clients, a few per entry (group commit), with a retry.
fn log(commands: Vec<Command>) -> Vec<Entry<TypeConfig>> {
    let mut entries = Vec::new();
    let mut seq = 0;
    for (i, chunk) in commands.chunks(3).enumerate() {
        let proposals: Vec<Proposal> = chunk
            .iter()
            .map(|command| {
                seq += 1;
                Proposal { id: ProposalId { client: 1 + seq % 2, seq }, command: command.clone() }
            })
            .collect();
        let log_id = LogId::new(CommittedLeaderId::new(1 + i as u64 / 4, 0), i as u64 + 1);
        entries.push(Entry { log_id, payload: EntryPayload::Normal(proposals) });
    }
    // A retried proposal (same id) in a later entry: applied once.
    let retry: Proposal = match &entries[0].payload {
        EntryPayload::<TypeConfig>::Normal(proposals) => proposals[0].clone(),
        _ => unreachable!(),
    };
    let index = entries.len() as u64 + 1;
    entries.push(Entry { log_id: LogId::new(CommittedLeaderId::new(9, 0), index), payload: EntryPayload::Normal(vec![retry]) });
    entries
}

/// Applies `entries` the way the state machine does.
fn apply(entries: &[Entry<TypeConfig>]) -> (ClusterState, RecentProposals, Vec<CommandResult>) {
    let (mut state, mut recent, mut results) = (ClusterState::default(), RecentProposals::default(), Vec::new());
    for entry in entries {
        if let EntryPayload::Normal(proposals) = &entry.payload {
            for proposal in proposals {
                results.push(recent.apply(&mut state, proposal, entry.log_id.index));
            }
        }
    }
    (state, recent, results)
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

#[test]
fn a_version_1_log_and_snapshot_load_and_apply_as_they_did() {
    if std::env::var_os("SATURN_WRITE_LOG_FIXTURES").is_some() {
        write_fixtures();
    }
    let stored: Vec<Vec<u8>> = decode("fixture log", &read("entries.bin")).expect("entries.bin");
    let entries: Vec<Entry<TypeConfig>> =
        stored.iter().map(|bytes| decode("log entry", bytes).expect("a version-1 log entry decodes")).collect();
    assert_eq!(entries, log(scenario()), "version-1 entries decode to the commands that wrote them");

    let (state, recent, results) = apply(&entries);
    let (snap_state, snap_recent): (ClusterState, RecentProposals) =
        decode("snapshot", &read("snapshot.bin")).expect("a version-1 snapshot decodes");
    assert_eq!(state, snap_state, "applying the old log gives the state of the old snapshot");
    assert_eq!(recent, snap_recent);

    let expected_state: serde_json::Value = serde_json::from_slice(&read("state.json")).expect("state.json");
    assert_eq!(serde_json::to_value(&state).expect("state to JSON"), expected_state);
    let expected_results: serde_json::Value = serde_json::from_slice(&read("results.json")).expect("results.json");
    assert_eq!(serde_json::to_value(&results).expect("results to JSON"), expected_results);

    // What the scenario is for: every kind of outcome is in it.
    assert!(results.iter().any(|r| matches!(r, CommandResult::Rejected(_))));
    assert_eq!(state.profile(&key("trial-group")), Some(&ProfileResult::StepTime(0.125)));
    assert_eq!(state.counters().preemptions, 1);
    assert_eq!(state.job(&job(1)).map(|j| j.restarts), Some(1));
    // And the snapshot still encodes to the same bytes.
    assert_eq!(encode("snapshot", &(&snap_state, &snap_recent)).expect("encode"), read("snapshot.bin"));
}

/// Writes the fixtures with the current code (see the module comment: once only).
fn write_fixtures() {
    let entries = log(scenario());
    let (state, recent, results) = apply(&entries);
    let stored: Vec<Vec<u8>> = entries.iter().map(|entry| encode("log entry", entry).expect("encode entry")).collect();
    std::fs::create_dir_all(dir()).expect("fixture dir");
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir().join(name), bytes).expect("write fixture");
    write("entries.bin", encode("fixture log", &stored).expect("encode log"));
    write("snapshot.bin", encode("snapshot", &(&state, &recent)).expect("encode snapshot"));
    write("state.json", serde_json::to_vec_pretty(&state).expect("state JSON"));
    write("results.json", serde_json::to_vec_pretty(&results).expect("results JSON"));
}

/// The scenario as the current version writes it: a trial's step time as
/// `TrialStepTime`, a hand-back as one `HandBack` event instead of `Preempt` + `Exited`.
fn scenario_now() -> Vec<Command> {
    let mut now = Vec::new();
    let mut commands = scenario().into_iter().peekable();
    while let Some(command) = commands.next() {
        now.push(match command {
            Command::JobEvent { job, attempt, event: AttemptEvent::Progress { step: 0, metrics }, at_ms }
                if metrics.len() == 1 && metrics[0].0 == STEP_TIME_METRIC =>
            {
                let event = AttemptEvent::TrialStepTime { seconds_per_step: metrics[0].1, samples: 11 };
                Command::JobEvent { job, attempt, event, at_ms }
            }
            Command::Preempt { job, attempt, .. } => match commands.next() {
                Some(Command::JobEvent { event: AttemptEvent::Exited { code, error }, at_ms, .. }) => {
                    Command::JobEvent { job, attempt, event: AttemptEvent::HandBack { code, error }, at_ms }
                }
                other => panic!("the scenario's preemption is a hand-back, followed by its exit: {other:?}"),
            },
            other => other,
        });
    }
    now
}

#[test]
fn the_events_that_replaced_the_old_encodings_apply_to_the_same_state() {
    let commands = scenario_now();
    assert!(commands.iter().any(|c| matches!(c, Command::JobEvent { event: AttemptEvent::TrialStepTime { .. }, .. })));
    assert!(commands.iter().any(|c| matches!(c, Command::JobEvent { event: AttemptEvent::HandBack { .. }, .. })));
    let (state, _, _) = apply(&log(commands));
    let expected_state: serde_json::Value = serde_json::from_slice(&read("state.json")).expect("state.json");
    assert_eq!(serde_json::to_value(&state).expect("state to JSON"), expected_state);
}

#[test]
fn a_trial_step_time_is_refused_for_a_training_attempt() {
    let mut state = ClusterState::default();
    for command in &scenario()[..9] {
        state.apply(command);
    }
    let before = state.clone();
    let result = state.apply(&event(1, 1, AttemptEvent::TrialStepTime { seconds_per_step: 0.5, samples: 9 }, 2_000));
    assert!(matches!(result, CommandResult::Rejected(_)), "{result:?}");
    assert_eq!(state.job(&job(1)), before.job(&job(1)), "a refused event changes nothing");
}

#[test]
fn a_hand_back_of_a_stopping_attempt_is_its_exit() {
    let mut state = ClusterState::default();
    for command in &scenario()[..9] {
        state.apply(command);
    }
    state.apply(&Command::Preempt { job: job(1), attempt: 1, at_ms: 1_500 });
    let result = state.apply(&event(1, 1, AttemptEvent::HandBack { code: Some(143), error: None }, 2_000));
    assert_eq!(result, CommandResult::Applied);
    let record = state.job(&job(1)).expect("job 1");
    assert!(record.live.is_none(), "the hand-back freed the GPUs");
    assert_eq!((record.restarts, state.counters().preemptions), (0, 1), "no failure, one preemption");
    assert_eq!(record.state, saturn_consensus::JobState::Scheduled);
}

/// The wire index of every variant of the enums the log holds. No `_` arm, on purpose: a new
/// variant does not compile until it is listed here, and a new variant is a new encoding:
/// bump `saturn_consensus::WIRE_VERSION` and add its row to [`LAST_INDEX`].
fn indices(command: &Command) -> Vec<(&'static str, u32)> {
    let command_index = match command {
        Command::SubmitJobs { .. } => 0,
        Command::CancelJob { .. } => 1,
        Command::SetJobPhase { .. } => 2,
        Command::RecordProfile { .. } => 3,
        Command::CommitPlan { .. } => 4,
        Command::Dispatch { .. } => 5,
        Command::JobEvent { .. } => 6,
        Command::Preempt { .. } => 7,
        Command::AgentUp { .. } => 8,
        Command::AgentDown { .. } => 9,
        Command::FailJob { .. } => 10,
        Command::StopJob { .. } => 11,
        Command::CheckpointCopied { .. } => 12,
        Command::CheckpointDropped { .. } => 13,
        Command::CheckpointRootMarked { .. } => 14,
    };
    let mut out = vec![("Command", command_index)];
    match command {
        Command::SetJobPhase { phase, .. } => out.push((
            "JobPhase",
            match phase {
                JobPhase::Queued => 0,
                JobPhase::Profiling => 1,
                JobPhase::Scheduled => 2,
            },
        )),
        Command::Dispatch { kind, .. } => out.push((
            "DispatchKind",
            match kind {
                DispatchKind::Train => 0,
                DispatchKind::Trial { .. } => 1,
            },
        )),
        Command::RecordProfile { result, .. } => out.push((
            "ProfileResult",
            match result {
                ProfileResult::StepTime(_) => 0,
                ProfileResult::Infeasible { .. } => 1,
                ProfileResult::NoSteps => 2,
            },
        )),
        Command::JobEvent { event, .. } => out.push((
            "AttemptEvent",
            match event {
                AttemptEvent::Started => 0,
                AttemptEvent::Progress { .. } => 1,
                AttemptEvent::Checkpoint { .. } => 2,
                AttemptEvent::Exited { .. } => 3,
                AttemptEvent::CheckpointStored { .. } => 4,
                AttemptEvent::CheckpointRefused { .. } => 5,
                AttemptEvent::Resumed { .. } => 6,
                AttemptEvent::TrialStepTime { .. } => 7,
                AttemptEvent::HandBack { .. } => 8,
                AttemptEvent::TrialNoSteps => 9,
            },
        )),
        _ => {}
    }
    out
}

/// For each wire version, the last variant index of each enum of the log. A row is history:
/// never edit one, add the next.
const LAST_INDEX: &[(&str, &[(&str, u32)])] = &[(
    "2",
    &[("Command", 14), ("JobPhase", 2), ("DispatchKind", 1), ("ProfileResult", 2), ("AttemptEvent", 9)],
)];

#[test]
fn wire_version_follows_the_encoding() {
    // Every variant, each at the index the encoding gives it.
    let mut commands = scenario();
    commands.extend(scenario_now());
    commands.push(event(2, 1, AttemptEvent::TrialNoSteps, 2_000));
    for phase in [JobPhase::Queued, JobPhase::Scheduled] {
        commands.push(Command::SetJobPhase { job: job(2), phase, at_ms: 2_001 });
    }
    let mut seen: BTreeMap<&str, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for command in &commands {
        let bytes = encode("command", command).expect("encode");
        let list = indices(command);
        assert_eq!(u32::from(bytes[0]), list[0].1, "{command:?} is not encoded at the index listed");
        for (name, index) in list {
            seen.entry(name).or_default().insert(index);
        }
    }
    for (name, indices) in &seen {
        let count = indices.len() as u32;
        assert_eq!(indices.last().map(|last| last + 1), Some(count), "{name}: a variant missing from the scenario: {indices:?}");
    }
    let last: BTreeMap<&str, u32> = seen.iter().map(|(name, indices)| (*name, indices.len() as u32 - 1)).collect();
    let (_, pinned) = LAST_INDEX
        .iter()
        .find(|(version, _)| *version == saturn_consensus::WIRE_VERSION)
        .unwrap_or_else(|| panic!("no LAST_INDEX row for wire version {}", saturn_consensus::WIRE_VERSION));
    let pinned: BTreeMap<&str, u32> = pinned.iter().copied().collect();
    assert_eq!(
        last, pinned,
        "the log's enums changed since wire version {}: bump saturn_consensus::WIRE_VERSION and add a LAST_INDEX row",
        saturn_consensus::WIRE_VERSION
    );
}
