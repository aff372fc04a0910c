//! The redb storage: openraft's own storage conformance suite, and what survives a restart.

mod fixtures;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use saturn_consensus::proposal::{Proposal, ProposalId};
use saturn_consensus::storage::{self, LogStore, StateMachineStore};
use saturn_consensus::{Command, CommandResult, TypeConfig};
use tempfile::TempDir;

struct TempStore;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let io = |e: &dyn std::error::Error| StorageError::IO { source: StorageIOError::write(AnyError::error(e.to_string())) };
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let (log, state_machine) = storage::open(dir.path()).map_err(|e| io(&e))?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(TempStore).expect("openraft storage suite");
}

fn entry(index: u64, seq: u64) -> Entry<TypeConfig> {
    let proposal = Proposal { id: ProposalId { client: 1, seq }, command: fixtures::host_up("a", 2) };
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), index), payload: EntryPayload::Normal(vec![proposal]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_vote_and_snapshot_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (mut log, mut state_machine) = storage::open(dir.path()).expect("open");
        log.save_vote(&Vote::new_committed(3, 7)).await.expect("vote");
        log.blocking_append((1..=5).map(|i| entry(i, i))).await.expect("append");
        let results = state_machine.apply((1..=3).map(|i| entry(i, i))).await.expect("apply");
        assert_eq!(results[0], vec![CommandResult::Applied]);
        state_machine.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        log.purge(LogId::new(CommittedLeaderId::new(1, 0), 2)).await.expect("purge");
        // Dropped without any shutdown, like a killed process (every commit was durable).
    }
    let (mut log, mut state_machine) = storage::open(dir.path()).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new_committed(3, 7)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(2));
    assert_eq!(state.last_log_id.map(|id| id.index), Some(5));
    let entries = log.try_get_log_entries(3..6).await.expect("entries");
    assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![3, 4, 5]);

    let (applied, _membership) = state_machine.applied_state().await.expect("applied");
    assert_eq!(applied.map(|id| id.index), Some(3), "the state machine restarts from its snapshot");
    assert!(state_machine.shared().read().state.agents().contains_key("a"));
    let EntryPayload::Normal(proposals) = &entries[0].payload else { panic!("entry 3 is a normal entry") };
    assert!(matches!(proposals[0].command, Command::AgentUp { .. }));
}

