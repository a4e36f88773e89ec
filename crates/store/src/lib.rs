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

/// Once this many login records are in the log but not in redb, a
/// background checkpoint is due (see [`NodeStore::checkpoint_login_records`];
/// the periodic sweep runs a checkpoint too). About 1.5 MB of records.
const LOGIN_CHECKPOINT_RECORDS: usize = 4096;
/// If this many are pending all the same (no one runs the background
/// checkpoints, or they fall behind), the insert that reaches it runs one
/// itself before it returns: the bound on the log and on the records held
/// in memory (about 13 MB).
const LOGIN_PENDING_LIMIT: usize = 8 * LOGIN_CHECKPOINT_RECORDS;

mod login_log;
mod login_scan;
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
    /// Where a background checkpoint seals the log (see [`login_log`]).
    sealed_login_log_path: PathBuf,
    /// Serializes checkpoints; `true` while a sealed log may hold records
    /// redb lacks (a background checkpoint failed after sealing: the next
    /// one must not seal over it).
    login_checkpoints: Mutex<bool>,
    /// The records in the logs that redb does not hold yet; readers look
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
        let sealed_login_log_path = Self::sealed_login_log_path(path);
        let open_error = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| StoreError::LoginLog { path, operation: "open", reason: e.to_string() }
        };
        // The sealed log is the older: its records come first.
        let mut logged = login_log::read_sealed(&sealed_login_log_path).map_err(open_error(&sealed_login_log_path))?;
        let (login_log, active) = LoginLog::open(&login_log_path).map_err(open_error(&login_log_path))?;
        logged.extend(active);
        let store = Self {
            db,
            login_log: Mutex::new(Some(login_log)),
            login_log_path,
            login_checkpoints: Mutex::new(sealed_login_log_path.exists()),
            sealed_login_log_path,
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

    /// Where a background checkpoint of the database at `path` seals its
    /// login-record log while redb takes the records over:
    /// `<path>.login-log.sealed` (absent between checkpoints).
    pub fn sealed_login_log_path(path: &Path) -> PathBuf {
        let mut name = Self::login_log_path(path).into_os_string();
        name.push(".sealed");
        PathBuf::from(name)
    }

    fn log_error(&self, operation: &'static str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |e| StoreError::LoginLog {
            path: self.login_log_path.display().to_string(),
            operation,
            reason: e.to_string(),
        }
    }

    /// On opening: the records the logs hold (those a crash kept from
    /// redb) become pending, the first of each key winning as in the logs'
    /// order, and a checkpoint inserts those redb lacks and empties the
    /// logs.
    fn replay_login_log(&self, logged: Vec<NewLoginRecord>) -> Result<(), StoreError> {
        let mut sealed = self.lock_login_checkpoints()?;
        if logged.is_empty() && !*sealed {
            return Ok(());
        }
        let mut guard = self.lock_login_log()?;
        {
            let mut pending = self.pending_logins.write().map_err(|_| self.poisoned("add pending records"))?;
            for record in logged {
                pending.entry(record.key).or_insert((record.value, record.expires_at));
            }
        }
        self.checkpoint(&mut sealed, &mut guard, None)?;
        Ok(())
    }

    fn lock_login_checkpoints(&self) -> Result<std::sync::MutexGuard<'_, bool>, StoreError> {
        self.login_checkpoints.lock().map_err(|_| self.poisoned("lock the checkpoints"))
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
            reason: "it could not be sealed, emptied or deleted at a checkpoint; restart the node to replay it"
                .to_owned(),
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

    /// A full checkpoint, under the checkpoints' and the log's locks: one
    /// durable transaction inserts every pending record (and, with
    /// `sweep`, forgets up to `limit` records that expired before `now`),
    /// then the log, the sealed log and the pending records are emptied.
    /// Returns how many were forgotten.
    fn checkpoint(
        &self,
        sealed: &mut bool,
        guard: &mut Option<LoginLog>,
        sweep: Option<(u64, usize)>,
    ) -> Result<usize, StoreError> {
        self.usable_login_log(guard)?;
        let txn = self.db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
        let (inserted, swept) = {
            let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
            let mut table = txn.open_table(COMMITMENTS).map_err(|e| db_error("open login table")(e.into()))?;
            let mut expiry = txn.open_table(LOGIN_EXPIRY).map_err(|e| db_error("open login expiry")(e.into()))?;
            for (key, (value, expires_at)) in pending.iter() {
                insert_absent_login_record(&mut table, &mut expiry, key, value, *expires_at)?;
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
        if inserted == 0 && swept == 0 && !*sealed {
            txn.abort().map_err(|e| db_error("abort")(e.into()))?;
            return Ok(0);
        }
        txn.commit().map_err(|e| db_error("commit")(e.into()))?;
        // Durable in redb: nothing is pending (records are added only under
        // the log's lock, which the caller holds), and the logs can go.
        self.pending_logins.write().map_err(|_| self.poisoned("empty pending records"))?.clear();
        self.clear_login_log(guard)?;
        self.remove_sealed_login_log(sealed).inspect_err(|_| *guard = None)?;
        Ok(swept)
    }

    /// Deletes the sealed log once redb holds all it holds. If that fails
    /// the caller takes no new record until a restart (as
    /// [`Self::clear_login_log`] does): a sealed log that stays could bring
    /// back a record a later sweep forgot.
    fn remove_sealed_login_log(&self, sealed: &mut bool) -> Result<(), StoreError> {
        login_log::remove_sealed(&self.sealed_login_log_path).map_err(|e| StoreError::LoginLog {
            path: self.sealed_login_log_path.display().to_string(),
            operation: "delete after a durable commit",
            reason: e.to_string(),
        })?;
        *sealed = false;
        Ok(())
    }

    /// Whether a background checkpoint is due: enough login records wait
    /// in the log for [`Self::checkpoint_login_records`] to move them to
    /// redb.
    pub fn login_checkpoint_due(&self) -> Result<bool, StoreError> {
        let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
        Ok(pending.len() >= LOGIN_CHECKPOINT_RECORDS)
    }

    /// A background checkpoint: moves the login records pending in the
    /// log into redb in one durable transaction, while
    /// [`Self::insert_login_records`] goes on (it waits only while the log
    /// is sealed: a rename and a new file; see [`login_log`]). Returns how
    /// many records it moved. Run it from a thread of its own when
    /// [`Self::login_checkpoint_due`] says so; one at a time (a second
    /// waits for the first).
    pub fn checkpoint_login_records(&self) -> Result<usize, StoreError> {
        let mut sealed = self.lock_login_checkpoints()?;
        let records: Vec<(Vec<u8>, Vec<u8>, u64)> = {
            let mut guard = self.lock_login_log()?;
            let log = self.usable_login_log(&mut guard)?;
            let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
            if pending.is_empty() {
                return Ok(0);
            }
            // A sealed log left by a failed checkpoint holds only records
            // still pending: this checkpoint takes them over too.
            if !*sealed {
                if let Err(e) = log.seal(&self.login_log_path, &self.sealed_login_log_path) {
                    *guard = None;
                    return Err(self.log_error("seal for a checkpoint")(e));
                }
                *sealed = true;
            }
            pending.iter().map(|(key, (value, expires_at))| (key.clone(), value.clone(), *expires_at)).collect()
        };
        let txn = self.db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
        {
            let mut table = txn.open_table(COMMITMENTS).map_err(|e| db_error("open login table")(e.into()))?;
            let mut expiry = txn.open_table(LOGIN_EXPIRY).map_err(|e| db_error("open login expiry")(e.into()))?;
            for (key, value, expires_at) in &records {
                insert_absent_login_record(&mut table, &mut expiry, key, value, *expires_at)?;
            }
        }
        txn.commit().map_err(|e| db_error("commit")(e.into()))?;
        {
            // Readable in redb now. No insert added these keys again while
            // the transaction ran: they were pending all along.
            let mut pending = self.pending_logins.write().map_err(|_| self.poisoned("remove pending records"))?;
            for (key, _, _) in &records {
                pending.remove(key);
            }
        }
        // The sealed log held only records now in redb (the new log holds
        // the rest).
        if let Err(error) = self.remove_sealed_login_log(&mut sealed) {
            *self.lock_login_log()? = None;
            return Err(error);
        }
        Ok(records.len())
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
        // Lock order, everywhere: the checkpoints, then the log, then a
        // redb write transaction, then the pending records.
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
        if pending_now >= LOGIN_PENDING_LIMIT {
            drop(guard);
            self.checkpoint_login_records()?;
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
    /// durable transaction, and both logs are emptied, so a forgotten
    /// record cannot come back from one after a crash. The records pending
    /// when it starts move first in a background checkpoint, so that new
    /// records wait only for the few that came meanwhile and the sweep.
    pub fn sweep_login_records(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        self.checkpoint_login_records()?;
        let mut sealed = self.lock_login_checkpoints()?;
        let mut guard = self.lock_login_log()?;
        self.checkpoint(&mut sealed, &mut guard, Some((now, limit)))
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

/// A checkpoint's insert of one pending record, with its expiry, unless
/// redb holds its key: pending records are not in redb, but for a
/// replay's (a crash may follow a checkpoint's commit before its log was
/// emptied or deleted).
fn insert_absent_login_record(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    expiry: &mut redb::Table<'_, (u64, &'static [u8]), ()>,
    key: &[u8],
    value: &[u8],
    expires_at: u64,
) -> Result<(), StoreError> {
    if table.get(key).map_err(|e| db_error("read login record")(e.into()))?.is_none() {
        table.insert(key, value).map_err(|e| db_error("write login record")(e.into()))?;
        expiry.insert((expires_at, key), ()).map_err(|e| db_error("write login expiry")(e.into()))?;
    }
    Ok(())
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
