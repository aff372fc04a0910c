//! The state machine as openraft sees it ([`StateMachineStore`]): the in-memory
//! [`ClusterState`] plus the last applied log id and membership, and its snapshots.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError};
use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{blocking, StoreError, KEY_SNAPSHOT, SNAPSHOTS};
use crate::codec::{decode, encode};
use crate::command::CommandResult;
use crate::node::NodeId;
use crate::raft_types::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::proposal::RecentProposals;
use crate::state::ClusterState;

/// What has been applied: the state and the log position it reflects.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    /// The cluster state.
    pub state: ClusterState,
    /// Results of recent proposals, for retry de-duplication.
    pub recent: RecentProposals,
    /// Log id of the last applied entry.
    pub last_applied: Option<LogId>,
    /// Membership as of `last_applied`.
    pub membership: StoredMembership,
}

/// The applied state shared between the state machine (writer) and readers such as the
/// node handle, plus a watch that ticks with the last applied index on every apply.
///
/// A `std` lock, not a tokio one: nobody awaits while holding it, and readers
/// (executors, the API) only copy out what they need.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<RwLock<AppliedState>>,
    applied_tx: Arc<watch::Sender<u64>>,
    /// Test hook: once set, the next apply fails as a fatal storage error (see
    /// [`fail_next_apply`](Self::fail_next_apply)).
    failpoint: Arc<AtomicBool>,
}

impl SharedState {
    fn new(applied: AppliedState) -> Self {
        let index = applied.last_applied.map_or(0, |id| id.index);
        SharedState {
            inner: Arc::new(RwLock::new(applied)),
            applied_tx: Arc::new(watch::channel(index).0),
            failpoint: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Test hook: makes the next apply fail with a storage error, which stops openraft's
    /// core for good (as a failing disk would). Used to test that an agent whose
    /// consensus core died says so and exits.
    pub fn fail_next_apply(&self) {
        self.failpoint.store(true, Ordering::SeqCst);
    }

    /// Read access. Do not hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // A panic while holding the lock leaves a consistent value (apply is all-or-nothing
        // per entry at the points where it can panic), so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A receiver whose value is the last applied log index; it changes on every apply.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn notify(&self, index: u64) {
        self.applied_tx.send_replace(index);
    }
}

/// A snapshot as stored on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// openraft's state machine over [`SharedState`], snapshotting into redb.
pub struct StateMachineStore {
    db: Arc<Database>,
    shared: SharedState,
}

impl StateMachineStore {
    /// Restores the state from the stored snapshot, if any.
    pub(super) fn restore(db: Arc<Database>) -> Result<Self, StoreError> {
        let applied = match load_snapshot(&db)? {
            Some(stored) => {
                let (state, recent) = decode("snapshot", &stored.data)?;
                AppliedState {
                state,
                recent,
                last_applied: stored.meta.last_log_id,
                membership: stored.meta.last_membership,
            }
            }
            None => AppliedState::default(),
        };
        Ok(StateMachineStore { db, shared: SharedState::new(applied) })
    }

    /// The applied state, for readers.
    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }
}

fn load_snapshot(db: &Database) -> Result<Option<StoredSnapshot>, StoreError> {
    let txn = db.begin_read().map_err(redb::Error::from)?;
    let table = txn.open_table(SNAPSHOTS).map_err(redb::Error::from)?;
    match table.get(KEY_SNAPSHOT).map_err(redb::Error::from)? {
        Some(bytes) => Ok(Some(decode("stored snapshot", bytes.value())?)),
        None => Ok(None),
    }
}

async fn save_snapshot(db: Arc<Database>, stored: &StoredSnapshot) -> Result<(), StoreError> {
    let bytes = encode("stored snapshot", stored)?;
    blocking(move || {
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(SNAPSHOTS)
            .map_err(redb::Error::from)?
            .insert(KEY_SNAPSHOT, bytes.as_slice())
            .map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    })
    .await
}

fn snapshot_error(e: StoreError) -> StorageError<NodeId> {
    StorageError::IO { source: StorageIOError::write_snapshot(None, AnyError::new(&e)) }
}

/// Builds snapshots from a [`SharedState`].
pub struct SnapshotBuilder {
    db: Arc<Database>,
    shared: SharedState,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, meta) = {
            let applied = self.shared.read();
            let data = encode("snapshot", &(&applied.state, &applied.recent)).map_err(|e| snapshot_error(e.into()))?;
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}", id.leader_id, id.index),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (data, meta)
        };
        let stored = StoredSnapshot { meta, data };
        save_snapshot(self.db.clone(), &stored).await.map_err(snapshot_error)?;
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if self.shared.failpoint.load(Ordering::SeqCst) {
            let why = std::io::Error::other("failpoint: apply fails (test hook)");
            return Err(StorageError::IO { source: StorageIOError::write(AnyError::new(&why)) });
        }
        let mut results = Vec::new();
        let last_index = {
            let mut applied = self.shared.write();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(proposals) => {
                        let AppliedState { state, recent, .. } = &mut *applied;
                        proposals.iter().map(|proposal| recent.apply(state, proposal, entry.log_id.index)).collect()
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Vec::new()
                    }
                };
                results.push(result);
            }
            applied.last_applied.map_or(0, |id| id.index)
        };
        self.shared.notify(last_index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), shared: self.shared.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let (state, recent): (ClusterState, RecentProposals) =
            decode("snapshot", &data).map_err(|e| snapshot_error(e.into()))?;
        // Persist first: if we crash after this, restart restores the installed snapshot.
        let stored = StoredSnapshot { meta: meta.clone(), data };
        save_snapshot(self.db.clone(), &stored).await.map_err(snapshot_error)?;
        let index = {
            let mut applied = self.shared.write();
            applied.state = state;
            applied.recent = recent;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            meta.last_log_id.map_or(0, |id| id.index)
        };
        self.shared.notify(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let stored = load_snapshot(&self.db).map_err(snapshot_error)?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
