//! A node's durable storage on `redb`.
//!
//! One database file per node. The ledger's state lives in one table of
//! full keys (see `quorumkey_ledger::state`); a second table keeps the state
//! root of every height, so a node can compare its root with the network's
//! at any height it has applied. A block's state changes, its height and its
//! root are written in one `redb` transaction with immediate durability:
//! after a crash the store holds every block it acknowledged and no part of
//! any other. Two more tables hold this node's secret key shares from the
//! DKG: per batch while the batch runs, then per key index. The last two
//! hold this node's login records (each token commitment it signed, bound
//! once to a verifier and a temporary key) and their expiry index. Login
//! records are made durable by their own write-ahead log next to the
//! database and reach redb in bulk (see [`login_log`]), not with an fsync'd
//! redb transaction each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use quorumkey_ledger::{BlockOutcome, Ledger, LedgerError, StateRead, StorageError, WriteSet};
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;
use zeroize::Zeroizing;

const LEDGER_STATE: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("ledger_state");
const STATE_ROOTS: TableDefinition<'static, u64, &'static [u8; 32]> = TableDefinition::new("state_roots");
/// Secret: this node's shares of a DKG batch's keys, between the moment it
/// computed them and the batch's end (then moved to [`KEY_SHARES`]).
const BATCH_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("dkg_batch_shares");
/// Secret: this node's share of each key, by key index.
const KEY_SHARES: TableDefinition<'static, u64, &'static [u8; 32]> = TableDefinition::new("key_shares");

/// This node's login records (not replicated state): for each token
/// commitment it signed, the verifier and temporary key it is bound to.
const COMMITMENTS: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("login_commitments");
/// When each login record may be forgotten: (Unix seconds, key) → ().
const LOGIN_EXPIRY: TableDefinition<'static, (u64, &'static [u8]), ()> = TableDefinition::new("login_expiry");

/// Once this many login records are in the log but not in redb, one
/// durable redb transaction takes them all over and the log is emptied (a
/// checkpoint; the periodic sweep runs one too). It bounds the log and the
/// records held in memory (about 1.5 MB).
const LOGIN_CHECKPOINT_RECORDS: usize = 4096;

mod login_log;
use login_log::LoginLog;

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the node database at {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// What redb said.
        reason: String,
    },
    /// A read or write failed.
    #[error("node database {operation} failed: {reason}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What redb said.
        reason: String,
    },
    /// The login records' write-ahead log failed.
    #[error("the login record log {path}: {operation} failed: {reason}")]
    LoginLog {
        /// The file.
        path: String,
        /// What was being done.
        operation: &'static str,
        /// What the system said.
        reason: String,
    },
    /// The ledger refused the block or the stored state.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The database holds the state of another network.
    #[error("the node database belongs to another network (its genesis root differs)")]
    WrongNetwork,
}

fn db_error(operation: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::Database { operation, reason: e.to_string() }
}

/// The outcome of handing a finalized block to the store.
#[derive(Debug)]
pub enum Applied {
    /// The block was applied and committed.
    Applied(BlockOutcome),
    /// The block was applied before (at-least-once delivery): nothing done.
    AlreadyApplied {
        /// The store's height.
        height: u64,
    },
}

/// A login record to store (see [`NodeStore::insert_login_records`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLoginRecord {
    /// Its key (the token commitment's record key).
    pub key: Vec<u8>,
    /// The record.
    pub value: Vec<u8>,
    /// When it may be forgotten (Unix seconds).
    pub expires_at: u64,
}

/// Login records in the log that redb does not hold yet: key → (value,
/// expiry).
type PendingLogins = HashMap<Vec<u8>, (Vec<u8>, u64)>;

/// A node's database.
pub struct NodeStore {
    db: Database,
    /// The login records' write-ahead log, which also serializes their
    /// writers; `None` once it could not be emptied after a checkpoint
    /// (the store refuses new login records until it is reopened, which
    /// replays the log).
    login_log: Mutex<Option<LoginLog>>,
    login_log_path: PathBuf,
    /// The records in the log that redb does not hold yet; readers look
    /// here first.
    pending_logins: RwLock<PendingLogins>,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore").finish_non_exhaustive()
    }
}

impl NodeStore {
    /// Opens the database at `path`, creating it if absent, and writes the
    /// genesis state if it is new. Refuses a database of another network.
    pub fn open(path: &Path, ledger: &Ledger) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        let login_log_path = Self::login_log_path(path);
        let (login_log, logged) = LoginLog::open(&login_log_path).map_err(|e| StoreError::LoginLog {
            path: login_log_path.display().to_string(),
            operation: "open",
            reason: e.to_string(),
        })?;
        let store = Self {
            db,
            login_log: Mutex::new(Some(login_log)),
            login_log_path,
            pending_logins: RwLock::new(HashMap::new()),
        };
        let snapshot = store.snapshot()?;
        match ledger.height(&snapshot)? {
            None => {
                let outcome = ledger.genesis_outcome(&snapshot)?;
                drop(snapshot);
                store.commit(&outcome.writes, 0, &outcome.state_root)?;
            }
            Some(_) => {
                let genesis = ledger.genesis_outcome(&quorumkey_ledger::MemoryState::default())?;
                if store.state_root(0)? != Some(genesis.state_root) {
                    return Err(StoreError::WrongNetwork);
                }
            }
        }
        // Only into a database of this network.
        store.replay_login_log(logged)?;
        Ok(store)
    }

    /// Where the login records' write-ahead log of the database at `path`
    /// lives: next to it, `<path>.login-log`.
    pub fn login_log_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".login-log");
        PathBuf::from(name)
    }

    fn log_error(&self, operation: &'static str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |e| StoreError::LoginLog {
            path: self.login_log_path.display().to_string(),
            operation,
            reason: e.to_string(),
        }
    }

    /// On opening: the records the log holds (those a crash kept from
    /// redb) become pending, the first of each key winning as in the log's
    /// order, and a checkpoint inserts those redb lacks and empties the log.
    fn replay_login_log(&self, logged: Vec<NewLoginRecord>) -> Result<(), StoreError> {
        if logged.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock_login_log()?;
        {
            let mut pending = self.pending_logins.write().map_err(|_| self.poisoned("add pending records"))?;
            for record in logged {
                pending.entry(record.key).or_insert((record.value, record.expires_at));
            }
        }
        self.checkpoint(&mut guard, None)?;
        Ok(())
    }

    fn lock_login_log(&self) -> Result<std::sync::MutexGuard<'_, Option<LoginLog>>, StoreError> {
        self.login_log.lock().map_err(|_| self.poisoned("lock the log"))
    }

    fn poisoned(&self, operation: &'static str) -> StoreError {
        StoreError::LoginLog {
            path: self.login_log_path.display().to_string(),
            operation,
            reason: "a writer panicked".to_owned(),
        }
    }

    fn usable_login_log<'g>(&self, guard: &'g mut Option<LoginLog>) -> Result<&'g mut LoginLog, StoreError> {
        guard.as_mut().ok_or_else(|| StoreError::LoginLog {
            path: self.login_log_path.display().to_string(),
            operation: "write",
            reason: "it could not be emptied after a checkpoint; restart the node to replay it".to_owned(),
        })
    }

    /// Empties the log after a durable commit holds all it holds; if that
    /// fails, the log is kept for replay and no new record is taken until
    /// a restart (a stale entry replayed after a later sweep would bring a
    /// forgotten record back).
    fn clear_login_log(&self, guard: &mut Option<LoginLog>) -> Result<(), StoreError> {
        let cleared = self.usable_login_log(guard)?.clear();
        cleared.map_err(|e| {
            *guard = None;
            self.log_error("empty after a durable commit")(e)
        })
    }

    /// A checkpoint, under the log's lock: one durable transaction inserts
    /// every pending record (and, with `sweep`, forgets up to `limit`
    /// records that expired before `now`), then the log and the pending
    /// records are emptied. Returns how many were forgotten.
    fn checkpoint(&self, guard: &mut Option<LoginLog>, sweep: Option<(u64, usize)>) -> Result<usize, StoreError> {
        self.usable_login_log(guard)?;
        let txn = self.db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
        let (inserted, swept) = {
            let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
            let mut table = txn.open_table(COMMITMENTS).map_err(|e| db_error("open login table")(e.into()))?;
            let mut expiry = txn.open_table(LOGIN_EXPIRY).map_err(|e| db_error("open login expiry")(e.into()))?;
            for (key, (value, expires_at)) in pending.iter() {
                // Pending records are not in redb, but for a replay's: a
                // crash may follow a checkpoint's commit before the log
                // was emptied.
                if table.get(key.as_slice()).map_err(|e| db_error("read login record")(e.into()))?.is_none() {
                    table
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(|e| db_error("write login record")(e.into()))?;
                    expiry
                        .insert((*expires_at, key.as_slice()), ())
                        .map_err(|e| db_error("write login expiry")(e.into()))?;
                }
            }
            let mut due = Vec::new();
            if let Some((now, limit)) = sweep {
                for entry in expiry
                    .range::<(u64, &[u8])>(..(now, &[][..]))
                    .map_err(|e| db_error("list login expiry")(e.into()))?
                    .take(limit)
                {
                    let (key, _) = entry.map_err(|e| db_error("list login expiry")(e.into()))?;
                    let (at, key) = key.value();
                    due.push((at, key.to_vec()));
                }
            }
            for (at, key) in &due {
                expiry.remove((*at, key.as_slice())).map_err(|e| db_error("remove login expiry")(e.into()))?;
                table.remove(key.as_slice()).map_err(|e| db_error("remove login record")(e.into()))?;
            }
            (pending.len(), due.len())
        };
        if inserted == 0 && swept == 0 {
            txn.abort().map_err(|e| db_error("abort")(e.into()))?;
            return Ok(0);
        }
        txn.commit().map_err(|e| db_error("commit")(e.into()))?;
        // Durable in redb: nothing is pending (records are added only under
        // the log's lock, which the caller holds), and the log can go.
        self.pending_logins.write().map_err(|_| self.poisoned("empty pending records"))?.clear();
        self.clear_login_log(guard)?;
        Ok(swept)
    }

    /// A table in a fresh read transaction; `None` if nothing was ever
    /// written to it.
    fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<Option<ReadOnlyTable<K, V>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
        match txn.open_table(definition) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(db_error("open table")(e.into())),
        }
    }

    /// Runs `body` in one write transaction and commits it durably.
    fn write(&self, body: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
        body(&txn)?;
        txn.commit().map_err(|e| db_error("commit")(e.into()))
    }

    /// A consistent read-only view of the committed ledger state.
    pub fn snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        Ok(LedgerSnapshot { table: self.read_table(LEDGER_STATE)? })
    }

    /// The state root after `height`, if that height was applied.
    pub fn state_root(&self, height: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let Some(table) = self.read_table(STATE_ROOTS)? else { return Ok(None) };
        let root = table.get(height).map_err(|e| db_error("read root")(e.into()))?;
        Ok(root.map(|guard| *guard.value()))
    }

    /// Applies a finalized block exactly once: a height already applied is
    /// skipped (and reported as such), the next height is applied and
    /// committed durably before this returns, any other height is an error.
    pub fn apply_finalized<T: AsRef<[u8]>>(
        &self,
        ledger: &Ledger,
        height: u64,
        time_ms: u64,
        transactions: &[T],
    ) -> Result<Applied, StoreError> {
        let snapshot = self.snapshot()?;
        let current = ledger.height(&snapshot)?.unwrap_or(0);
        if height <= current {
            return Ok(Applied::AlreadyApplied { height: current });
        }
        let outcome = ledger.apply_block(&snapshot, height, time_ms, transactions)?;
        drop(snapshot);
        self.commit(&outcome.writes, outcome.height, &outcome.state_root)?;
        Ok(Applied::Applied(outcome))
    }

    /// Persists this node's shares of a batch (opaque, secret bytes),
    /// durably, replacing any stored before.
    pub fn put_batch_shares(&self, batch: u64, shares: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(BATCH_SHARES).map_err(|e| db_error("open shares table")(e.into()))?;
            table.insert(batch, shares).map_err(|e| db_error("write batch shares")(e.into()))?;
            Ok(())
        })
    }

    /// This node's stored shares of a batch, if any.
    pub fn batch_shares(&self, batch: u64) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(table) = self.read_table(BATCH_SHARES)? else { return Ok(None) };
        let value = table.get(batch).map_err(|e| db_error("read batch shares")(e.into()))?;
        Ok(value.map(|guard| Zeroizing::new(guard.value().to_vec())))
    }

    /// Batches whose shares are stored and not yet assigned to keys.
    pub fn batches_with_shares(&self) -> Result<Vec<u64>, StoreError> {
        let Some(table) = self.read_table(BATCH_SHARES)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| db_error("list batch shares")(e.into()))? {
            let (key, _) = entry.map_err(|e| db_error("list batch shares")(e.into()))?;
            out.push(key.value());
        }
        Ok(out)
    }

    /// The batch finished: stores `key_shares[i]` as the share of key
    /// `first_key + i` and forgets the batch's entry, in one transaction.
    pub fn assign_batch_shares(&self, batch: u64, first_key: u64, key_shares: &[[u8; 32]]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut keys = txn.open_table(KEY_SHARES).map_err(|e| db_error("open key shares table")(e.into()))?;
            for (offset, share) in key_shares.iter().enumerate() {
                keys.insert(first_key + offset as u64, share).map_err(|e| db_error("write key share")(e.into()))?;
            }
            Self::remove_batch_shares(txn, batch)
        })
    }

    fn remove_batch_shares(txn: &redb::WriteTransaction, batch: u64) -> Result<(), StoreError> {
        let mut batches = txn.open_table(BATCH_SHARES).map_err(|e| db_error("open shares table")(e.into()))?;
        batches.remove(batch).map_err(|e| db_error("remove batch shares")(e.into()))?;
        Ok(())
    }

    /// The batch was abandoned: forgets its shares.
    pub fn drop_batch_shares(&self, batch: u64) -> Result<(), StoreError> {
        self.write(|txn| Self::remove_batch_shares(txn, batch))
    }

    /// This node's share of a key (32 bytes, big-endian scalar), if it
    /// holds one.
    pub fn key_share(&self, index: u64) -> Result<Option<Zeroizing<[u8; 32]>>, StoreError> {
        let Some(table) = self.read_table(KEY_SHARES)? else { return Ok(None) };
        let value = table.get(index).map_err(|e| db_error("read key share")(e.into()))?;
        Ok(value.map(|guard| Zeroizing::new(*guard.value())))
    }

    /// Stores a login record under `key` unless one is there, durably, in
    /// one transaction; it may be forgotten after `expires_at` (Unix
    /// seconds). Returns the record already stored, if any (then nothing is
    /// written).
    pub fn insert_login_record(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let record = NewLoginRecord { key: key.to_vec(), value: value.to_vec(), expires_at };
        let mut existing = self.insert_login_records(std::slice::from_ref(&record))?;
        Ok(existing.pop().flatten())
    }

    /// [`Self::insert_login_record`] for several records at once (group
    /// commit: one log write and one `fdatasync` for all of them). Returns,
    /// for each record in order, the record already stored under its key,
    /// if any; a key given twice keeps the first of them, and the second
    /// gets the first's value back as if it had been stored before.
    ///
    /// Durable when it returns: the new records are in the write-ahead log
    /// (see [`login_log`]) and readable; redb takes them over at the next
    /// checkpoint.
    pub fn insert_login_records(&self, records: &[NewLoginRecord]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        // Lock order, everywhere: the log, then a redb write transaction,
        // then the pending records.
        let mut guard = self.lock_login_log()?;
        let mut existing = Vec::with_capacity(records.len());
        let mut new: Vec<&NewLoginRecord> = Vec::new();
        {
            let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
            let table = self.read_table(COMMITMENTS)?;
            let mut in_group: HashMap<&[u8], &[u8]> = HashMap::new();
            for record in records {
                let key = record.key.as_slice();
                let found = match (in_group.get(key), pending.get(key), &table) {
                    (Some(value), _, _) => Some(value.to_vec()),
                    (None, Some((value, _)), _) => Some(value.clone()),
                    (None, None, Some(table)) => table
                        .get(key)
                        .map_err(|e| db_error("read login record")(e.into()))?
                        .map(|value| value.value().to_vec()),
                    (None, None, None) => None,
                };
                if found.is_none() {
                    in_group.insert(key, &record.value);
                    new.push(record);
                }
                existing.push(found);
            }
        }
        if new.is_empty() {
            // Nothing written: nothing to make durable.
            return Ok(existing);
        }
        self.usable_login_log(&mut guard)?.append(new.iter().copied()).map_err(self.log_error("append"))?;
        let pending_now = {
            let mut pending = self.pending_logins.write().map_err(|_| self.poisoned("add pending records"))?;
            for record in new {
                pending.insert(record.key.clone(), (record.value.clone(), record.expires_at));
            }
            pending.len()
        };
        if pending_now >= LOGIN_CHECKPOINT_RECORDS {
            self.checkpoint(&mut guard, None)?;
        }
        Ok(existing)
    }

    /// The login record under `key`, if any.
    pub fn login_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        {
            let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
            if let Some((value, _)) = pending.get(key) {
                return Ok(Some(value.clone()));
            }
        }
        let Some(table) = self.read_table(COMMITMENTS)? else { return Ok(None) };
        let value = table.get(key).map_err(|e| db_error("read login record")(e.into()))?;
        Ok(value.map(|guard| guard.value().to_vec()))
    }

    /// Forgets up to `limit` login records that expired before `now`
    /// (Unix seconds), oldest first; returns how many. A checkpoint (see
    /// [`login_log`]): the records only in the log reach redb in the same
    /// durable transaction, and the log is emptied, so a forgotten record
    /// cannot come back from it after a crash.
    pub fn sweep_login_records(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let mut guard = self.lock_login_log()?;
        self.checkpoint(&mut guard, Some((now, limit)))
    }

    fn commit(&self, writes: &WriteSet, height: u64, root: &[u8; 32]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut state = txn.open_table(LEDGER_STATE).map_err(|e| db_error("open ledger table")(e.into()))?;
            for (key, value) in writes.changes() {
                match value {
                    Some(value) => state.insert(key, value).map(|_| ()),
                    None => state.remove(key).map(|_| ()),
                }
                .map_err(|e| db_error("write ledger state")(e.into()))?;
            }
            let mut roots = txn.open_table(STATE_ROOTS).map_err(|e| db_error("open roots table")(e.into()))?;
            roots.insert(height, root).map_err(|e| db_error("write state root")(e.into()))?;
            Ok(())
        })
    }
}

/// A read-only view of the committed ledger state at one point in time.
pub struct LedgerSnapshot {
    table: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl StateRead for LedgerSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(table) = &self.table else { return Ok(None) };
        table.get(key).map(|value| value.map(|guard| guard.value().to_vec())).map_err(|e| StorageError(e.to_string()))
    }
}
