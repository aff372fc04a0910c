//! The Raft log, vote and committed index in redb ([`LogStore`]).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError};
use redb::{Database, Durability, ReadableTable};

use super::{blocking, read_meta, StoreError, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOGS, META};
use crate::codec::{decode, encode};
use crate::raft_types::{Entry, LogId, TypeConfig, Vote};
use crate::node::NodeId;

/// Durable Raft log. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(LOGS).map_err(redb::Error::from)?;
        let mut entries = Vec::new();
        for row in table.range::<u64>(range).map_err(redb::Error::from)? {
            let (_index, bytes) = row.map_err(redb::Error::from)?;
            entries.push(decode("log entry", bytes.value())?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged: Option<LogId> = match read_meta(&self.db, KEY_LAST_PURGED)? {
            Some(bytes) => decode("last purged log id", &bytes)?,
            None => None,
        };
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(LOGS).map_err(redb::Error::from)?;
        let last = match table.last().map_err(redb::Error::from)? {
            Some((_index, bytes)) => Some(decode::<Entry>("log entry", bytes.value())?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    /// Writes one META record in its own transaction.
    async fn write_meta(&self, key: &'static str, value: Vec<u8>, durability: Durability) -> Result<(), StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write().map_err(redb::Error::from)?;
            txn.set_durability(durability);
            txn.open_table(META).map_err(redb::Error::from)?.insert(key, value.as_slice()).map_err(redb::Error::from)?;
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await
    }

    /// Removes the log entries in `range` (and, for a purge, records the purged id) in
    /// one durable transaction.
    async fn remove(&self, range: (Bound<u64>, Bound<u64>), purged: Option<LogId>) -> Result<(), StoreError> {
        let db = self.db.clone();
        let purged = match purged {
            Some(id) => Some(encode("last purged log id", &Some(id))?),
            None => None,
        };
        blocking(move || {
            let txn = db.begin_write().map_err(redb::Error::from)?;
            {
                let mut logs = txn.open_table(LOGS).map_err(redb::Error::from)?;
                logs.retain_in::<u64, _>(range, |_, _| false).map_err(redb::Error::from)?;
                if let Some(bytes) = &purged {
                    let mut meta = txn.open_table(META).map_err(redb::Error::from)?;
                    meta.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(redb::Error::from)?;
                }
            }
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await
    }
}

fn io_error(e: StoreError, what: fn(AnyError) -> StorageIOError<NodeId>) -> StorageError<NodeId> {
    StorageError::IO { source: what(AnyError::new(&e)) }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.entries(bounds(&range)).map_err(|e| io_error(e, StorageIOError::read_logs))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state().map_err(|e| io_error(e, StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let bytes = encode("vote", vote).map_err(|e| io_error(e.into(), StorageIOError::write_vote))?;
        self.write_meta(KEY_VOTE, bytes, Durability::Immediate)
            .await
            .map_err(|e| io_error(e, StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        let read = || -> Result<Option<Vote>, StoreError> {
            match read_meta(&self.db, KEY_VOTE)? {
                Some(bytes) => Ok(Some(decode("vote", &bytes)?)),
                None => Ok(None),
            }
        };
        read().map_err(|e| io_error(e, StorageIOError::read_vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode("committed log id", &committed).map_err(|e| io_error(e.into(), StorageIOError::write))?;
        // Not fsynced on its own: see the module doc of `storage`.
        self.write_meta(KEY_COMMITTED, bytes, Durability::None)
            .await
            .map_err(|e| io_error(e, StorageIOError::write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        let read = || -> Result<Option<LogId>, StoreError> {
            match read_meta(&self.db, KEY_COMMITTED)? {
                Some(bytes) => Ok(decode("committed log id", &bytes)?),
                None => Ok(None),
            }
        };
        read().map_err(|e| io_error(e, StorageIOError::read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = encode("log entry", &entry).map_err(|e| io_error(e.into(), StorageIOError::write_logs))?;
            rows.push((entry.log_id.index, bytes));
        }
        let db = self.db.clone();
        let written = blocking(move || {
            let txn = db.begin_write().map_err(redb::Error::from)?;
            {
                let mut logs = txn.open_table(LOGS).map_err(redb::Error::from)?;
                for (index, bytes) in &rows {
                    logs.insert(*index, bytes.as_slice()).map_err(redb::Error::from)?;
                }
            }
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(e, StorageIOError::write_logs))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.remove((Bound::Included(log_id.index), Bound::Unbounded), None)
            .await
            .map_err(|e| io_error(e, StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.remove((Bound::Unbounded, Bound::Included(log_id.index)), Some(log_id))
            .await
            .map_err(|e| io_error(e, StorageIOError::write_logs))
    }
}
