//! Durable Raft storage: the log store and the state machine, in one redb database file
//! (`<data_dir>/raft.redb`), implementing openraft's storage-v2 traits.
//!
//! Why redb: it is a real embedded ACID key-value store written in pure Rust (no C build, no
//! system library), with copy-on-write B-trees, checksummed pages and commit slots, and crash
//! recovery that falls back to the last fully written commit. A commit with
//! `Durability::Immediate` returns only after `fsync`, which is exactly what Raft asks of a
//! vote or an appended entry. One file holds everything, so the state machine and the
//! snapshot it came from are written in one transaction and never disagree after a crash.
//! Writing our own checksummed append-only log would have meant re-doing all of that.
//!
//! Layout (every value is JSON, see the last paragraph):
//!
//! | table | key | value |
//! |---|---|---|
//! | `log` | log index (`u64`) | one [`Entry`] |
//! | `meta` | `vote` | the last saved [`Vote`] |
//! | `meta` | `committed` | the last saved committed [`LogId`] |
//! | `meta` | `last_purged` | the [`LogId`] of the last purged entry |
//! | `meta` | `snapshot_seq` | counter that makes snapshot ids unique |
//! | `state_machine` | `applied` | last applied log id, last membership, [`ClusterState`] |
//! | `snapshot` | `meta` / `data` | the current snapshot's [`SnapshotMeta`] and its data (the JSON [`ClusterState`]) |
//!
//! Every write is one redb transaction committed with `Durability::Immediate` (fsync)
//! before the call returns (and, for [`RaftLogStorage::append`], before the flush callback is
//! called). The state machine writes its applied state once per applied batch, so a restart
//! resumes from it without replaying the log. Blocking disk work runs on tokio's blocking
//! pool, never on the Raft core's task.
//!
//! JSON is the encoding because the state is small and changes rarely (config edits, not
//! queries), the openraft types' serde derives are tested with it upstream, history values are
//! themselves JSON ([`serde_json::Value`], which compact binary formats like postcard or
//! bincode cannot decode), and a stored entry can be read by a person with any redb viewer.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, StorageIOError,
};
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::{ClusterState, CommandResponse};
use super::types::{
    Entry, LogId, LogState, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

/// File name of the Raft database inside the data dir.
pub const RAFT_DB_FILE: &str = "raft.redb";

/// The log: index -> JSON entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small log-store records: vote, committed, last purged, snapshot counter.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The state machine's applied state.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");
/// The current snapshot: its metadata and data.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// `meta` key of the vote.
const KEY_VOTE: &str = "vote";
/// `meta` key of the committed log id.
const KEY_COMMITTED: &str = "committed";
/// `meta` key of the last purged log id.
const KEY_LAST_PURGED: &str = "last_purged";
/// `meta` key of the snapshot id counter.
const KEY_SNAPSHOT_SEQ: &str = "snapshot_seq";
/// `state_machine` key of the applied state.
const KEY_APPLIED: &str = "applied";
/// `snapshot` key of the snapshot metadata.
const KEY_SNAPSHOT_META: &str = "meta";
/// `snapshot` key of the snapshot data.
const KEY_SNAPSHOT_DATA: &str = "data";

/// Why the Raft store failed; openraft sees it as a storage error and stops the node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created.
    #[error("creating {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database file could not be opened or created (corrupt, locked by another process,
    /// or not a redb file).
    #[error("opening raft store {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb reported (boxed: it is large).
        source: Box<redb::DatabaseError>,
    },
    /// A read or write of the database failed (boxed: redb's error is large).
    #[error("raft store: {0}")]
    Db(#[source] Box<redb::Error>),
    /// A stored record did not decode (corruption, or written by an incompatible version).
    #[error("raft store: cannot decode the stored {what}: {source}")]
    Decode {
        /// Which record.
        what: &'static str,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("raft store: cannot encode the {what}: {source}")]
    Encode {
        /// Which record.
        what: &'static str,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The blocking task doing the disk work panicked or was cancelled.
    #[error("raft store: disk task failed: {0}")]
    Task(String),
}

/// Converts redb's specific error types into [`StoreError::Db`].
macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            /// Wraps the redb error.
            fn from(e: $ty) -> Self {
                Self::Db(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Encodes a stored record as JSON.
fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}

/// Decodes a stored JSON record.
fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// Runs blocking disk work on tokio's blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Begins a write transaction that fsyncs on commit.
fn write_txn(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    Ok(txn)
}

/// Reads and decodes one record of a `&str`-keyed table; `None` when absent.
fn read_record<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(table)?;
    let value = table.get(key)?;
    value.map(|v| decode(what, v.value())).transpose()
}

/// Writes one record of a `&str`-keyed table in its own durable transaction.
fn write_record(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let txn = write_txn(db)?;
    txn.open_table(table)?.insert(key, bytes)?;
    txn.commit()?;
    Ok(())
}

/// Maps a [`StoreError`] to openraft's storage error about `subject`.
fn to_storage(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
) -> impl FnOnce(StoreError) -> StorageError {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Opens (or creates) the Raft database in `dir` and returns its two halves.
///
/// Creates `dir` if needed. The state machine comes back with the state it last persisted,
/// so nothing is replayed on restart (Raft re-applies only committed entries newer than it).
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(RAFT_DB_FILE);
    let db = Database::create(&path).map_err(|source| StoreError::Open {
        path,
        source: Box::new(source),
    })?;
    // Create every table once, so read transactions never meet a missing table.
    let txn = write_txn(&db)?;
    txn.open_table(LOG)?;
    txn.open_table(META)?;
    txn.open_table(STATE)?;
    txn.open_table(SNAPSHOT)?;
    txn.commit()?;
    let applied: AppliedState =
        read_record(&db, STATE, KEY_APPLIED, "state machine")?.unwrap_or_default();
    let db = Arc::new(db);
    let (published, _) = watch::channel(Arc::new(applied.state.clone()));
    Ok((
        LogStore { db: db.clone() },
        StateMachineStore {
            db,
            applied,
            published,
        },
    ))
}

/// The Raft log and vote, persisted in the shared redb database. Cheap to clone: the
/// clone is also the log reader handed to replication tasks.
#[derive(Clone, Debug)]
pub struct LogStore {
    /// The database shared with the state machine.
    db: Arc<Database>,
}

impl RaftLogReader<TypeConfig> for LogStore {
    /// Entries with index in `range`, in order; missing indexes are skipped.
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = half_open(&range) else {
            return Ok(Vec::new());
        };
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let iter = match end {
                Some(end) => table.range(start..end)?,
                None => table.range(start..)?,
            };
            let mut entries = Vec::new();
            for item in iter {
                let (_, value) = item?;
                entries.push(decode("log entry", value.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(to_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

/// `range` as `start..end` (`None` = unbounded end), or `None` when it is empty.
fn half_open(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    /// A clone of the store: reads use their own redb read transactions.
    type LogReader = LogStore;

    /// The last purged log id and the last log id (the last entry's, else the last purged).
    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged: Option<LogId> =
                read_record(&db, META, KEY_LAST_PURGED, "last purged log id")?;
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let last = match table.last()? {
                Some((_, value)) => Some(decode::<Entry>("log entry", value.value())?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last.or(last_purged),
            })
        })
        .await
        .map_err(to_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    /// A clone of this store (reads go through their own redb read transactions).
    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Persists the vote (fsync) before returning.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes =
            encode("vote", vote).map_err(to_storage(ErrorSubject::Vote, ErrorVerb::Write))?;
        let db = self.db.clone();
        blocking(move || write_record(&db, META, KEY_VOTE, &bytes))
            .await
            .map_err(to_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    /// The last saved vote.
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let db = self.db.clone();
        blocking(move || read_record(&db, META, KEY_VOTE, "vote"))
            .await
            .map_err(to_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Persists the committed log id, so a restart re-applies committed entries at once.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = encode("committed log id", &committed)
            .map_err(to_storage(ErrorSubject::Store, ErrorVerb::Write))?;
        let db = self.db.clone();
        blocking(move || write_record(&db, META, KEY_COMMITTED, &bytes))
            .await
            .map_err(to_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    /// The last saved committed log id.
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            read_record::<Option<LogId>>(&db, META, KEY_COMMITTED, "committed log id")
                .map(Option::flatten)
        })
        .await
        .map_err(to_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Writes the entries in one transaction, fsyncs, then reports them flushed.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, encode("log entry", &entry)?)))
            .collect::<Result<Vec<(u64, Vec<u8>)>, StoreError>>();
        let db = self.db.clone();
        let result = match encoded {
            Ok(encoded) => {
                blocking(move || {
                    let txn = write_txn(&db)?;
                    {
                        let mut table = txn.open_table(LOG)?;
                        for (index, bytes) in &encoded {
                            table.insert(*index, bytes.as_slice())?;
                        }
                    }
                    txn.commit()?;
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(to_storage(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    /// Deletes the entries from `log_id.index` on (a conflicting suffix).
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        let from = log_id.index;
        blocking(move || {
            let txn = write_txn(&db)?;
            txn.open_table(LOG)?.retain_in(from.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(to_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    /// Deletes the entries up to `log_id` (inclusive) and records it as last purged.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode("last purged log id", &log_id)
            .map_err(to_storage(ErrorSubject::Logs, ErrorVerb::Delete))?;
        let db = self.db.clone();
        let upto = log_id.index;
        blocking(move || {
            let txn = write_txn(&db)?;
            txn.open_table(META)?
                .insert(KEY_LAST_PURGED, bytes.as_slice())?;
            txn.open_table(LOG)?.retain_in(..=upto, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(to_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}

/// What the state machine persists after every applied batch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    /// The last applied log id.
    last_applied: Option<LogId>,
    /// The last applied membership configuration.
    last_membership: StoredMembership,
    /// The cluster state after the last applied entry.
    state: ClusterState,
}

/// The cluster state machine, persisted in the shared redb database.
///
/// Call [`StateMachineStore::subscribe`] before handing it to openraft: every applied batch
/// and every installed snapshot publishes the new [`ClusterState`] there, which is how a node
/// applies committed changes live.
#[derive(Debug)]
pub struct StateMachineStore {
    /// The database shared with the log store.
    db: Arc<Database>,
    /// The applied state, as last persisted.
    applied: AppliedState,
    /// Publishes the state after each change to subscribers.
    published: watch::Sender<Arc<ClusterState>>,
}

impl StateMachineStore {
    /// A receiver of the cluster state, updated after each applied batch or snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.published.subscribe()
    }

    /// The current cluster state.
    pub fn state(&self) -> &ClusterState {
        &self.applied.state
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.applied.last_applied
    }

    /// Persists the applied state (one durable transaction) and publishes it.
    async fn persist(&self) -> Result<(), StoreError> {
        let bytes = encode("state machine", &self.applied)?;
        let db = self.db.clone();
        blocking(move || write_record(&db, STATE, KEY_APPLIED, &bytes)).await?;
        self.published
            .send_replace(Arc::new(self.applied.state.clone()));
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    /// Builds from a copy of the state taken when the builder is made.
    type SnapshotBuilder = SnapshotBuilder;

    /// The last applied log id and membership.
    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((
            self.applied.last_applied,
            self.applied.last_membership.clone(),
        ))
    }

    /// Applies the entries in order, then persists the result once for the batch.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::Noop,
                EntryPayload::Normal(command) => self.applied.state.apply(command),
                EntryPayload::Membership(membership) => {
                    self.applied.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::Noop
                }
            };
            responses.push(response);
        }
        if !responses.is_empty() {
            self.persist()
                .await
                .map_err(to_storage(ErrorSubject::StateMachine, ErrorVerb::Write))?;
        }
        Ok(responses)
    }

    /// A builder over a copy of the current state.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            applied: self.applied.clone(),
        }
    }

    /// An empty in-memory buffer to receive a snapshot into.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Replaces the state with the snapshot's and keeps the snapshot as the current one,
    /// in one durable transaction.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        let state: ClusterState =
            decode("snapshot data", &data).map_err(to_storage(subject(), ErrorVerb::Read))?;
        let applied = AppliedState {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            state,
        };
        let applied_bytes =
            encode("state machine", &applied).map_err(to_storage(subject(), ErrorVerb::Write))?;
        let meta_bytes =
            encode("snapshot meta", meta).map_err(to_storage(subject(), ErrorVerb::Write))?;
        let db = self.db.clone();
        blocking(move || {
            let txn = write_txn(&db)?;
            {
                let mut snap = txn.open_table(SNAPSHOT)?;
                snap.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
                snap.insert(KEY_SNAPSHOT_DATA, data.as_slice())?;
            }
            txn.open_table(STATE)?
                .insert(KEY_APPLIED, applied_bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(to_storage(subject(), ErrorVerb::Write))?;
        self.applied = applied;
        self.published
            .send_replace(Arc::new(self.applied.state.clone()));
        Ok(())
    }

    /// The snapshot last built or installed, if any.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(SNAPSHOT)?;
            let (Some(meta), Some(data)) =
                (table.get(KEY_SNAPSHOT_META)?, table.get(KEY_SNAPSHOT_DATA)?)
            else {
                return Ok(None);
            };
            let meta: SnapshotMeta = decode("snapshot meta", meta.value())?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data.value().to_vec())),
            }))
        })
        .await
        .map_err(to_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// Builds a snapshot from a copy of the state machine taken when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    /// The database the snapshot is stored in.
    db: Arc<Database>,
    /// The state to snapshot.
    applied: AppliedState,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serializes the state, stores it as the current snapshot (unless a newer one is already
    /// stored) and returns it.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = encode("snapshot data", &self.applied.state)
            .map_err(to_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        let db = self.db.clone();
        let last_log_id = self.applied.last_applied;
        let last_membership = self.applied.last_membership.clone();
        let meta = blocking(move || {
            let txn = write_txn(&db)?;
            let meta = {
                let mut meta_table = txn.open_table(META)?;
                let seq = match meta_table.get(KEY_SNAPSHOT_SEQ)? {
                    Some(v) => decode::<u64>("snapshot counter", v.value())?,
                    None => 0,
                } + 1;
                meta_table.insert(
                    KEY_SNAPSHOT_SEQ,
                    encode("snapshot counter", &seq)?.as_slice(),
                )?;
                let snapshot_id = match &last_log_id {
                    Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
                    None => format!("--{seq}"),
                };
                SnapshotMeta {
                    last_log_id,
                    last_membership,
                    snapshot_id,
                }
            };
            {
                let mut snap = txn.open_table(SNAPSHOT)?;
                let stored: Option<SnapshotMeta> = match snap.get(KEY_SNAPSHOT_META)? {
                    Some(v) => Some(decode("snapshot meta", v.value())?),
                    None => None,
                };
                let newer_stored = stored.is_some_and(|s| s.last_log_id > meta.last_log_id);
                if !newer_stored {
                    snap.insert(
                        KEY_SNAPSHOT_META,
                        encode("snapshot meta", &meta)?.as_slice(),
                    )?;
                    snap.insert(KEY_SNAPSHOT_DATA, data.as_slice())?;
                }
            }
            txn.commit()?;
            Ok((meta, data))
        })
        .await
        .map_err(to_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        let (meta, data) = meta;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, RaftLogReader};
    use tempfile::TempDir;

    use super::*;
    use crate::cluster::state::{Command, FlushScope};
    use crate::cluster::types::{Member, Membership};

    /// Builds a fresh store in its own temporary directory for each conformance test.
    struct TempStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
        /// A new temp dir with an empty database; the dir is removed when the guard drops.
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| {
                StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, AnyError::new(&e))
            })?;
            let (log, sm) =
                open(dir.path()).map_err(to_storage(ErrorSubject::Store, ErrorVerb::Write))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's storage conformance suite passes against the redb store.
    #[test]
    fn openraft_conformance_suite() {
        if let Err(e) = Suite::test_all(TempStoreBuilder) {
            panic!("openraft storage conformance suite failed: {e}");
        }
        println!("openraft 0.9.25 storage conformance suite (Suite::test_all): passed");
    }

    /// A log id in term `term` led by node 1.
    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// An application entry carrying `command`.
    fn normal(term: u64, index: u64, command: Command) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(command),
        }
    }

    /// A membership entry with voters 1 and 2.
    fn membership(term: u64, index: u64) -> Entry {
        let member = |n: u8| Member {
            grpc_addr: format!("127.0.0.{n}:50051"),
            dns_addr: format!("127.0.0.{n}:5353"),
            gossip_addr: format!("127.0.0.{n}:7946"),
        };
        let nodes = BTreeMap::from([(1, member(1)), (2, member(2))]);
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2])], nodes)),
        }
    }

    /// Appends through the v2 API, waiting for the flush callback.
    async fn append(log: &mut LogStore, entries: Vec<Entry>) {
        log.blocking_append(entries)
            .await
            .expect("append and flush");
    }

    /// After drop and reopen, the log, vote, committed id, applied state and snapshot are
    /// all still there, and the state is not replayed from the log.
    #[tokio::test]
    async fn reopen_keeps_log_vote_and_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = |key: &str, value: &str| Command::Set {
            key: key.to_owned(),
            value: value.to_owned(),
            expected_version: None,
            author: "test".to_owned(),
            node: 1,
            at_unix_ms: 1,
        };
        let entries = vec![
            membership(1, 1),
            normal(1, 2, set("cache.max_ttl", "600")),
            normal(1, 3, set("upstreams", "192.0.2.1")),
            normal(
                1,
                4,
                Command::Flush {
                    scope: FlushScope::All,
                    author: "test".to_owned(),
                    node: 1,
                    at_unix_ms: 2,
                },
            ),
        ];
        let vote = Vote::new(1, 1);
        let expected_state;
        {
            let (mut log, mut sm) = open(dir.path()).expect("open");
            let mut updates = sm.subscribe();
            log.save_vote(&vote).await.expect("vote");
            append(&mut log, entries.clone()).await;
            log.save_committed(Some(log_id(1, 4)))
                .await
                .expect("committed");
            let responses = sm.apply(entries.clone()).await.expect("apply");
            assert_eq!(responses.len(), 4);
            assert!(updates.has_changed().expect("sender alive"));
            assert_eq!(updates.borrow_and_update().settings.cache.max_ttl, 600);
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .expect("snapshot");
            expected_state = sm.state().clone();
            assert_eq!(expected_state.version, 2);
            assert_eq!(expected_state.flush_epoch, 1);
        }
        let (mut log, mut sm) = open(dir.path()).expect("reopen");
        assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
        assert_eq!(
            log.read_committed().await.expect("committed"),
            Some(log_id(1, 4))
        );
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));
        let got = log.try_get_log_entries(1..5).await.expect("entries");
        assert_eq!(
            got.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            entries.iter().map(|e| e.log_id).collect::<Vec<_>>()
        );
        let (applied, membership) = sm.applied_state().await.expect("applied");
        assert_eq!(applied, Some(log_id(1, 4)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 1)));
        assert_eq!(
            membership.nodes().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(sm.state(), &expected_state);
        assert_eq!(sm.subscribe().borrow().as_ref(), &expected_state);
        let snapshot = sm
            .get_current_snapshot()
            .await
            .expect("read snapshot")
            .expect("a snapshot");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 4)));
        let decoded: ClusterState =
            serde_json::from_slice(snapshot.snapshot.get_ref()).expect("snapshot data");
        assert_eq!(decoded, expected_state);
    }

    /// Empty and inverted ranges read nothing instead of panicking.
    #[tokio::test]
    async fn odd_ranges_are_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _sm) = open(dir.path()).expect("open");
        append(&mut log, vec![membership(1, 1)]).await;
        assert!(
            log.try_get_log_entries((Bound::Included(5), Bound::Excluded(2)))
                .await
                .expect("inverted")
                .is_empty()
        );
        assert!(
            log.try_get_log_entries(1..1)
                .await
                .expect("empty")
                .is_empty()
        );
        assert_eq!(log.try_get_log_entries(..).await.expect("all").len(), 1);
        assert_eq!(log.try_get_log_entries(1..=1).await.expect("incl").len(), 1);
        assert_eq!(half_open(&(u64::MAX..=u64::MAX)), Some((u64::MAX, None)));
    }
}
