//! Durable Raft storage: the log, the vote, the committed index and snapshots, in one
//! redb database per agent (`<data_dir>/raft.redb`).
//!
//! # Why redb, and why this survives `kill -9`
//! redb is an embedded, pure-Rust, copy-on-write B-tree store with ACID transactions.
//! A write transaction committed with [`Durability::Immediate`](redb::Durability)
//! (the default) is fsynced before `commit()` returns, and a crash at any instant
//! leaves the file at the last committed transaction: there is no half-written entry to
//! repair and no separate WAL to replay. So:
//! - `append` writes a batch of entries in one transaction and reports them flushed only
//!   after the commit returns; a vote is saved the same way before it is answered.
//!   What Raft believes is on disk therefore is.
//! - `truncate`/`purge` are single transactions: the log never has holes.
//! - the committed index is written with `Durability::None`: it reaches disk with the
//!   next durable commit. Losing it in a crash is safe (a lower committed index only
//!   delays re-applying entries that the leader will commit again).
//! - a snapshot (state + its last log id + membership) is stored in one transaction when
//!   built or installed.
//!
//! The state machine itself lives in memory ([`StateMachineStore`]) and is rebuilt on
//! restart from the stored snapshot plus the committed log, which openraft re-applies.

mod log_store;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};

pub use log_store::LogStore;
pub use state_machine::{AppliedState, SharedState, StateMachineStore};

use crate::codec::CodecError;

/// Log entries by index, bincode-encoded.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Small records: [`KEY_VOTE`], [`KEY_COMMITTED`], [`KEY_LAST_PURGED`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest snapshot under [`KEY_SNAPSHOT`].
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_SNAPSHOT: &str = "current";

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "raft.redb";

/// Storage failed. (The sources are boxed: they are large and this error travels in
/// every storage call's `Result`.)
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("raft storage: {0}")]
    Db(Box<redb::Error>),
    /// Stored bytes could not be decoded (or a value encoded).
    #[error("raft storage: {0}")]
    Codec(Box<CodecError>),
    /// The data directory could not be created.
    #[error("raft storage: cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A blocking storage task panicked or was cancelled.
    #[error("raft storage task failed: {0}")]
    Task(String),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Codec(Box::new(e))
    }
}

/// Opens (creating if needed) the database in `data_dir` and returns the log store and
/// the state machine (restored from the stored snapshot, if any).
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| StoreError::DataDir { path: data_dir.display().to_string(), source })?;
    let db = Database::create(data_dir.join(DB_FILE)).map_err(redb::Error::from)?;
    // Create the tables up front so readers never see "table does not exist".
    let txn = db.begin_write().map_err(redb::Error::from)?;
    txn.open_table(LOGS).map_err(redb::Error::from)?;
    txn.open_table(META).map_err(redb::Error::from)?;
    txn.open_table(SNAPSHOTS).map_err(redb::Error::from)?;
    txn.commit().map_err(redb::Error::from)?;
    let db = Arc::new(db);
    let state_machine = StateMachineStore::restore(db.clone())?;
    Ok((LogStore::new(db), state_machine))
}

/// Runs blocking database work off the async runtime's worker threads: a durable commit
/// waits for fsync, which would otherwise stall heartbeats handled on the same thread.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Task(e.to_string()))?
}

/// Reads one META record.
fn read_meta(db: &Database, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read().map_err(redb::Error::from)?;
    let table = txn.open_table(META).map_err(redb::Error::from)?;
    let value = table.get(key).map_err(redb::Error::from)?;
    Ok(value.map(|v| v.value().to_vec()))
}
