//! Property tests of the pure state machine: for random command sequences, every state
//! reached satisfies the safety rules, stale events change nothing, and apply is
//! deterministic (two replicas, one of them restored from an encoded snapshot midway,
//! end identical).

mod fixtures;

use fixtures::random::{command, prelude, stamped};
use fixtures::check_invariants;
use proptest::prelude::*;
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::{ClusterState, Command, CommandResult, Rejection};

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_safety_rules(commands in proptest::collection::vec(command(), 1..120)) {
        let mut state = ClusterState::default();
        let mut replica = ClusterState::default();
        let all: Vec<Command> = prelude().into_iter().chain(commands).enumerate().map(|(i, c)| stamped(c, i as u64)).collect();
        for (i, command) in all.iter().enumerate() {
            let before = state.clone();
            let result = state.apply(command);
            prop_assert_eq!(&result, &replica.apply(command), "replicas disagree at {}", i);
            if let Err(violation) = check_invariants(&state) {
                return Err(TestCaseError::fail(format!("after {command:?}: {violation}")));
            }
            if let Command::JobEvent { job, attempt, .. } | Command::Preempt { job, attempt, .. } = command {
                if !before.is_live(job, *attempt) {
                    let ignored = matches!(result, CommandResult::Rejected(Rejection::StaleAttempt { .. } | Rejection::UnknownJob(_)));
                    prop_assert!(ignored, "a stale attempt's command was not ignored: {:?}", result);
                }
            }
            if let CommandResult::Rejected(_) = result {
                // Nothing changes but the count of rejections.
                let mut counters = before.counters().clone();
                counters.rejected += 1;
                prop_assert_eq!(state.counters(), &counters, "a rejection is counted once");
                let same = state.jobs() == before.jobs()
                    && state.gpus() == before.gpus()
                    && state.profiles() == before.profiles()
                    && state.agents() == before.agents()
                    && state.plan() == before.plan()
                    && state.plan_epoch() == before.plan_epoch()
                    && state.last_job_seq() == before.last_job_seq()
                    && state.checkpoint_root_marker() == before.checkpoint_root_marker();
                prop_assert!(same, "a rejected command changed the state");
            }
            if i == all.len() / 2 {
                // Half-way, the replica is rebuilt from a snapshot, as a lagging member would be.
                let bytes = encode("state", &replica).map_err(|e| TestCaseError::fail(e.to_string()))?;
                replica = decode("state", &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        prop_assert_eq!(state, replica);
    }
}
