//! A node's durable storage on `redb`.
//!
//! One database file per node. The ledger's state lives in one table of
//! full keys (see `quorumkey_ledger::state`); a second table keeps the state
//! root of every height, so a node can compare its root with the network's
//! at any height it has applied. A block's state changes, its height and its
//! root are written in one `redb` transaction with immediate durability:
//! after a crash the store holds every block it acknowledged and no part of
//! any other. Two more tables hold this node's secret key shares from the
//! DKG: per batch while the batch runs, then per key index, encrypted with
//! the node's key-encryption key (see [`sealed`]); during a handover, the
//! next epoch's shares wait per reshare batch until they replace the key
//! shares, in bounded steps (see [`activation`]). The last two
//! hold this node's login records (each token commitment it signed, bound
//! once to a verifier and a temporary key) and their expiry index. Login
//! records are made durable by their own write-ahead log next to the
//! database and reach redb in bulk (see [`login_log`]), not with an fsync'd
//! redb transaction each.
//!
//! Files: the database and the logs are created with mode 0600 (and made
//! so if an older version left them open to others); the directory that
//! holds them is the caller's to keep private (the node creates it 0700
//! and refuses one open to others).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, RwLock};

use quorumkey_ledger::{BlockOutcome, Ledger, LedgerError, StateRead, StorageError, WriteSet};
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use thiserror::Error;
use zeroize::Zeroizing;

const LEDGER_STATE: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("ledger_state");
const STATE_ROOTS: TableDefinition<'static, u64, &'static [u8; 32]> = TableDefinition::new("state_roots");
/// Secret: this node's shares of a DKG batch's keys, between the moment it
/// computed them and the batch's end (then moved to [`KEY_SHARES`]),
/// encrypted (see [`sealed`]).
const BATCH_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("dkg_batch_shares");
/// Secret: this node's share of each key, by key index, encrypted (see
/// [`sealed`]).
const KEY_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("key_shares");
/// Secret: this node's shares of a reshare batch's keys for the next
/// epoch, by `epoch << 40 | batch`, from their handover until the epoch
/// is in force (then they replace [`KEY_SHARES`], see [`activation`]),
/// encrypted (see [`sealed`]): the first key's index (8 bytes), then 32
/// bytes per key. Each row's key range is in
/// [`activation::NEXT_SHARE_RANGES`].
const NEXT_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("next_epoch_shares");
/// The epoch the shares in [`KEY_SHARES`] are for, in [`STORE_META`]
/// (absent: 0); while an activation runs, the epoch it puts in force (see
/// [`activation`]).
const SHARE_EPOCH: &str = "share_epoch";
/// The key shares as stores made before shares were encrypted kept them:
/// plain, 32 bytes each (read only to encrypt them, by [`rekey`]).
const PLAIN_KEY_SHARES: TableDefinition<'static, u64, &'static [u8; 32]> = TableDefinition::new("key_shares");
/// The store's own facts: the check value of its KEK ([`KEK_CHECK`]).
const STORE_META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("store_meta");
/// The KEK's check value in [`STORE_META`] (see [`sealed`]).
const KEK_CHECK: &str = "kek_check";
/// Entries re-encrypted per step of a [`rekey`] (all in one transaction;
/// the step bounds the memory it takes).
const REKEY_CHUNK: usize = 4096;

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

mod activation;
mod login_log;
mod login_scan;
mod sealed;
pub use activation::ACTIVATION_CHUNK_KEYS;
use activation::{Activation, activation_at, open_read};
use login_log::{LoginLog, SealFailure};
pub use sealed::{KEK_LEN, Kek, KekId, SEALED_OVERHEAD};
use sealed::{SealError, SecretTable};

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
    /// The database is open in another process (a running node).
    #[error("the node database {path} is in use by another process; stop the node that has it open first")]
    InUse {
        /// The file.
        path: String,
    },
    /// The key-encryption key given is not the one the shares are
    /// encrypted with.
    #[error(
        "the key-encryption key given (id {given}) is not the one the shares in {path} are encrypted with (id {stored}); give the node its key-encryption key (kek_file in node.toml, or QUORUMKEY_KEK), or after a rekey the new one"
    )]
    WrongKek {
        /// The database.
        path: String,
        /// The id of the KEK the store was encrypted with.
        stored: String,
        /// The id of the KEK given.
        given: String,
    },
    /// The database was written before shares were encrypted at rest.
    #[error(
        "{path} holds {count} key or batch shares in plain form (written before shares were encrypted at rest); encrypt them once, with the node stopped: quorumkey node rekey --config node.toml --new-kek FILE"
    )]
    PlainShares {
        /// The database.
        path: String,
        /// How many entries are plain.
        count: u64,
    },
    /// A secret entry does not decrypt.
    #[error("the {table} entry {key} cannot be decrypted: {reason}")]
    Share {
        /// Its table.
        table: &'static str,
        /// Its key.
        key: u64,
        /// Why.
        reason: String,
    },
    /// A login record the node answered for is lost (a corrupt log entry)
    /// and could still matter: see [`StoreOptions::accept_lost_login_records`].
    #[error(
        "the login-record log {path} has a corrupt entry at byte {offset}: a login record this node answered for is lost, and {until} a token it held could be signed or revealed again by this node; start after that time, or accept the loss now with quorumkey node run --accept-lost-login-records (see docs/operations.md)"
    )]
    LostLoginRecords {
        /// The log file.
        path: String,
        /// The entry's first byte.
        offset: u64,
        /// Until when, as text.
        until: String,
    },
}

impl StoreError {
    fn share(table: SecretTable, key: u64) -> impl Fn(SealError) -> StoreError {
        move |e| StoreError::Share { table: table.name(), key, reason: e.to_string() }
    }
}

/// How to open a store (see [`NodeStore::open_with`]).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The key-encryption key of the node's shares.
    pub kek: Kek,
    /// Open even though a login record the node answered for was lost to
    /// a corrupt log entry and could still matter (the operator's explicit
    /// choice, for one start: the log is emptied into redb when the store
    /// opens). Default `false`: refuse (see the store's README).
    pub accept_lost_login_records: bool,
}

impl StoreOptions {
    /// Options with `kek` and the defaults.
    pub fn new(kek: Kek) -> Self {
        Self { kek, accept_lost_login_records: false }
    }
}

/// A damaged login-log entry found on opening (skipped; the entries
/// around it were kept). No content, only where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginLogDamage {
    /// The log file.
    pub path: PathBuf,
    /// The entry's first byte in that file.
    pub offset: u64,
    /// Its bytes.
    pub len: u64,
    /// The entry was durable and answered for (a later append followed it,
    /// or it was in a sealed log): a record the node accepted is lost.
    /// Otherwise it was part of the last write, which a crash cut short.
    pub acknowledged: bool,
    /// Until when (Unix seconds) the lost record could matter: the latest
    /// expiry of the records written after it (every record lives as long
    /// from its writing). `None`: unknown (nothing intact was written
    /// after it).
    pub lost_until: Option<u64>,
}

/// What [`rekey`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RekeyReport {
    /// The KEK the shares were encrypted with; `None` if they were plain.
    pub from: Option<KekId>,
    /// The KEK they are encrypted with now.
    pub to: KekId,
    /// Key shares re-encrypted.
    pub key_shares: u64,
    /// Batch shares re-encrypted.
    pub batch_shares: u64,
    /// Whether the file was compacted afterwards (best effort; see
    /// [`rekey`]).
    pub compacted: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Creates the database file with mode 0600 if it is absent (redb would
/// create it with the process's umask), and makes an existing one 0600.
fn prepare_database_file(path: &Path) -> Result<(), StoreError> {
    let open_error = |e: std::io::Error| StoreError::Open { path: path.display().to_string(), reason: e.to_string() };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(open_error)?;
    login_log::make_private(&file).map_err(open_error)
}

fn open_database(path: &Path) -> Result<Database, StoreError> {
    prepare_database_file(path)?;
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.display().to_string() },
        e => StoreError::Open { path: path.display().to_string(), reason: e.to_string() },
    })
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
    /// Encrypts the share tables.
    kek: Kek,
    /// The logs' directory, open: renames and deletions are made durable
    /// without a new descriptor (see [`login_log`]).
    log_dir: File,
    /// Damaged log entries found on opening.
    login_log_damage: Vec<LoginLogDamage>,
    /// Why the last background checkpoint could not seal the log (it ran
    /// as a full one instead), until [`Self::take_login_log_rotation_failure`].
    rotation_failure: Mutex<Option<String>>,
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
    /// Keys an epoch activation step moves or deletes (see [`activation`]).
    activation_chunk: AtomicUsize,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore").finish_non_exhaustive()
    }
}

impl NodeStore {
    /// [`Self::open_with`] with `kek` and the default options.
    pub fn open(path: &Path, ledger: &Ledger, kek: &Kek) -> Result<Self, StoreError> {
        Self::open_with(path, ledger, &StoreOptions::new(kek.clone()))
    }

    /// Opens the database at `path`, creating it (mode 0600) if absent,
    /// writes the genesis state if it is new, and completes an epoch
    /// activation a crash interrupted (see [`Self::activate_epoch`]; it
    /// can take a while with millions of keys). Refuses a database of
    /// another network, a key-encryption key other than the one its shares
    /// are encrypted with, a database whose shares are still plain (see
    /// [`rekey`]), and, unless `options` accept it, a login-record log that
    /// lost a record which could still matter (see [`LoginLogDamage`]).
    pub fn open_with(path: &Path, ledger: &Ledger, options: &StoreOptions) -> Result<Self, StoreError> {
        let db = open_database(path)?;
        check_kek(&db, path, &options.kek)?;
        let login_log_path = Self::login_log_path(path);
        let sealed_login_log_path = Self::sealed_login_log_path(path);
        let open_error = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| StoreError::LoginLog { path, operation: "open", reason: e.to_string() }
        };
        // The sealed log is the older: its records come first.
        let sealed = login_log::read_sealed(&sealed_login_log_path).map_err(open_error(&sealed_login_log_path))?;
        let (login_log, active) = LoginLog::open(&login_log_path).map_err(open_error(&login_log_path))?;
        let login_log_damage = assess_damage(&sealed_login_log_path, &sealed, &login_log_path, &active);
        if !options.accept_lost_login_records {
            let now = unix_now();
            if let Some(lost) =
                login_log_damage.iter().find(|d| d.acknowledged && d.lost_until.is_none_or(|until| until > now))
            {
                let until = match lost.lost_until {
                    Some(until) => {
                        format!("until {until} (Unix seconds, in {} minutes)", until.saturating_sub(now).div_ceil(60))
                    }
                    None => "for an unknown time (nothing intact was written after it)".to_owned(),
                };
                return Err(StoreError::LostLoginRecords {
                    path: lost.path.display().to_string(),
                    offset: lost.offset,
                    until,
                });
            }
        }
        let log_dir = login_log::open_dir_of(&login_log_path).map_err(open_error(&login_log_path))?;
        let mut logged = sealed.records;
        logged.extend(active.records);
        let store = Self {
            db,
            kek: options.kek.clone(),
            log_dir,
            login_log_damage,
            rotation_failure: Mutex::new(None),
            login_log: Mutex::new(Some(login_log)),
            login_log_path,
            login_checkpoints: Mutex::new(sealed_login_log_path.exists()),
            sealed_login_log_path,
            pending_logins: RwLock::new(HashMap::new()),
            activation_chunk: AtomicUsize::new(ACTIVATION_CHUNK_KEYS),
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
        // An epoch activation a crash interrupted (see [`activation`]).
        store.finish_activation()?;
        Ok(store)
    }

    /// The damaged login-log entries found when the store was opened (each
    /// skipped; see [`LoginLogDamage`]). The node reports them.
    pub fn login_log_damage(&self) -> &[LoginLogDamage] {
        &self.login_log_damage
    }

    /// Why a background checkpoint last could not seal the log (and ran as
    /// a full one, holding up appends meanwhile), once: the node reports
    /// it. `None` if every one since the last call sealed.
    pub fn take_login_log_rotation_failure(&self) -> Option<String> {
        self.rotation_failure.lock().ok().and_then(|mut failure| failure.take())
    }

    /// The id of the key-encryption key the shares are encrypted with.
    pub fn kek_id(&self) -> KekId {
        self.kek.id()
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

    /// Where the next login-record log of the database at `path` waits,
    /// created ahead of need (see [`login_log`]): `<path>.login-log.next`.
    pub fn next_login_log_path(path: &Path) -> PathBuf {
        login_log::spare_path(&Self::login_log_path(path))
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
        login_log::remove_sealed(&self.sealed_login_log_path, &self.log_dir).map_err(|e| StoreError::LoginLog {
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
                match log.seal(&self.login_log_path, &self.sealed_login_log_path, &self.log_dir) {
                    Ok(()) => *sealed = true,
                    Err(SealFailure::NotSealed(reason)) => {
                        // No descriptor for the next log (the process ran
                        // out), or the rename was refused; nothing changed.
                        // The records move all the same, in a full
                        // checkpoint: appends wait for its transaction.
                        // The next checkpoint tries to seal again.
                        let moved = pending.len();
                        drop(pending);
                        if let Ok(mut failure) = self.rotation_failure.lock() {
                            *failure = Some(reason.to_string());
                        }
                        self.checkpoint(&mut sealed, &mut guard, None)?;
                        return Ok(moved);
                    }
                    Err(SealFailure::Broken(e)) => {
                        *guard = None;
                        return Err(self.log_error("seal for a checkpoint")(e));
                    }
                }
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
    /// encrypted, durably, replacing any stored before.
    pub fn put_batch_shares(&self, batch: u64, shares: &[u8]) -> Result<(), StoreError> {
        let table = SecretTable::BatchShares;
        let entry = sealed::seal(&self.kek, table, batch, shares).map_err(StoreError::share(table, batch))?;
        self.write(|txn| {
            let mut table = txn.open_table(BATCH_SHARES).map_err(|e| db_error("open shares table")(e.into()))?;
            table.insert(batch, entry.as_slice()).map_err(|e| db_error("write batch shares")(e.into()))?;
            Ok(())
        })
    }

    /// This node's stored shares of a batch, if any (decrypted into a
    /// buffer zeroized on drop).
    pub fn batch_shares(&self, batch: u64) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(table) = self.read_table(BATCH_SHARES)? else { return Ok(None) };
        let value = table.get(batch).map_err(|e| db_error("read batch shares")(e.into()))?;
        let secret = SecretTable::BatchShares;
        value
            .map(|guard| sealed::open(&self.kek, secret, batch, guard.value()))
            .transpose()
            .map_err(StoreError::share(secret, batch))
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

    /// The batch finished: stores `key_shares[i]`, encrypted, as the share
    /// of key `first_key + i` and forgets the batch's entry, in one
    /// transaction.
    pub fn assign_batch_shares(&self, batch: u64, first_key: u64, key_shares: &[[u8; 32]]) -> Result<(), StoreError> {
        let secret = SecretTable::KeyShares;
        let mut entries = Vec::with_capacity(key_shares.len());
        for (offset, share) in key_shares.iter().enumerate() {
            let index = first_key + offset as u64;
            entries.push((
                index,
                sealed::seal(&self.kek, secret, index, share).map_err(StoreError::share(secret, index))?,
            ));
        }
        self.write(|txn| {
            let mut keys = txn.open_table(KEY_SHARES).map_err(|e| db_error("open key shares table")(e.into()))?;
            for (index, entry) in &entries {
                keys.insert(*index, entry.as_slice()).map_err(|e| db_error("write key share")(e.into()))?;
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
    /// holds one (decrypted into a buffer zeroized on drop). While an epoch
    /// activation runs, the new epoch's share, wherever it is at that step,
    /// and never the old one's (see [`activation`]).
    pub fn key_share(&self, index: u64) -> Result<Option<Zeroizing<[u8; 32]>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
        match activation_at(&txn)? {
            Some(Activation { member: false, .. }) => return Ok(None),
            Some(Activation { epoch, cursor, .. }) if index >= cursor => {
                return activation::next_share(&self.kek, &txn, epoch, index);
            }
            _ => {}
        }
        let Some(table) = open_read(&txn, KEY_SHARES)? else { return Ok(None) };
        let Some(value) = table.get(index).map_err(|e| db_error("read key share")(e.into()))? else {
            return Ok(None);
        };
        let secret = SecretTable::KeyShares;
        let plain = sealed::open(&self.kek, secret, index, value.value()).map_err(StoreError::share(secret, index))?;
        let mut share = Zeroizing::new([0u8; 32]);
        if plain.len() != share.len() {
            return Err(StoreError::Share {
                table: secret.name(),
                key: index,
                reason: "it is not 32 bytes".to_owned(),
            });
        }
        share.copy_from_slice(&plain);
        Ok(Some(share))
    }

    /// The epoch this node's key shares are for (0 until a handover's
    /// epoch came into force; the new one from the start of its
    /// activation).
    pub fn share_epoch(&self) -> Result<u64, StoreError> {
        let Some(table) = self.read_table(STORE_META)? else { return Ok(0) };
        activation::share_epoch_in(&table)
    }

    /// Persists this node's shares of keys `first_key..` for epoch `epoch`
    /// (reshare batch `batch`), encrypted, durably.
    pub fn put_next_shares(
        &self,
        epoch: u64,
        batch: u64,
        first_key: u64,
        shares: &[[u8; 32]],
    ) -> Result<(), StoreError> {
        let key = next_shares_key(epoch, batch)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(8 + 32 * shares.len()));
        plain.extend_from_slice(&first_key.to_be_bytes());
        for share in shares {
            plain.extend_from_slice(share);
        }
        let secret = SecretTable::NextShares;
        let entry = sealed::seal(&self.kek, secret, key, &plain).map_err(StoreError::share(secret, key))?;
        let range = (first_key, shares.len() as u64);
        if first_key.checked_add(range.1).is_none() {
            return Err(StoreError::Share {
                table: secret.name(),
                key,
                reason: "its keys run beyond the last key index".to_owned(),
            });
        }
        self.write(|txn| activation::put_row(&self.kek, txn, epoch, batch, range, &entry))
    }

    /// Whether this node keeps its shares of reshare batch `batch` for
    /// epoch `epoch`.
    pub fn has_next_shares(&self, epoch: u64, batch: u64) -> Result<bool, StoreError> {
        let Some(table) = self.read_table(NEXT_SHARES)? else { return Ok(false) };
        let key = next_shares_key(epoch, batch)?;
        Ok(table.get(key).map_err(|e| db_error("read next shares")(e.into()))?.is_some())
    }

    /// How many key shares this node holds (nothing decrypted); while an
    /// epoch activation runs, how many of the new epoch's (those moved, and
    /// those in the rows left).
    pub fn key_share_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
        match activation_at(&txn)? {
            Some(Activation { member: false, .. }) => Ok(0),
            Some(Activation { epoch, moved, .. }) => {
                let left: u64 = activation::next_share_ranges(&txn, epoch)?.iter().map(|(_, keys)| keys).sum();
                Ok(moved + left)
            }
            None => match open_read(&txn, KEY_SHARES)? {
                Some(table) => table.len().map_err(|e| db_error("count key shares")(e.into())),
                None => Ok(0),
            },
        }
    }

    /// Whether this node holds a share of key `index` (without decrypting
    /// it), as [`Self::key_share`] answers.
    pub fn has_key_share(&self, index: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
        match activation_at(&txn)? {
            Some(Activation { member: false, .. }) => return Ok(false),
            Some(Activation { epoch, cursor, .. }) if index >= cursor => {
                return activation::has_next_share(&txn, epoch, index);
            }
            _ => {}
        }
        let Some(table) = open_read(&txn, KEY_SHARES)? else { return Ok(false) };
        Ok(table.get(index).map_err(|e| db_error("read key share")(e.into()))?.is_some())
    }

    /// The indexes of the keys this node holds a share of, in order, as
    /// [`Self::key_share`] answers.
    pub fn key_share_indexes(&self) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
        let activation = activation_at(&txn)?;
        if activation.is_some_and(|activation| !activation.member) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if let Some(table) = open_read(&txn, KEY_SHARES)? {
            // While an activation runs, those below its cursor only.
            let listed = match activation {
                Some(activation) => table.range(..activation.cursor),
                None => table.range::<u64>(..),
            };
            for entry in listed.map_err(|e| db_error("list key shares")(e.into()))? {
                let (key, _) = entry.map_err(|e| db_error("list key shares")(e.into()))?;
                out.push(key.value());
            }
        }
        if let Some(Activation { epoch, cursor, .. }) = activation {
            for (first, keys) in activation::next_share_ranges(&txn, epoch)? {
                if keys > 0 && activation::has_next_share(&txn, epoch, first)? {
                    out.extend(first.max(cursor)..first.saturating_add(keys));
                }
            }
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
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

/// The damaged entries of the sealed log and the log, as the store
/// reports them: a damaged entry of the sealed log could matter as long as
/// anything written after it, in the log too.
fn assess_damage(
    sealed_path: &Path,
    sealed: &login_log::Decoded,
    active_path: &Path,
    active: &login_log::Decoded,
) -> Vec<LoginLogDamage> {
    let active_latest = active.latest_expiry();
    let damage = |path: &Path, skipped: &login_log::Skipped, after: Option<u64>| LoginLogDamage {
        path: path.to_owned(),
        offset: skipped.offset,
        len: skipped.len,
        acknowledged: skipped.acknowledged,
        lost_until: skipped.later_expiry.max(after),
    };
    let mut out: Vec<LoginLogDamage> =
        sealed.skipped.iter().map(|skipped| damage(sealed_path, skipped, active_latest)).collect();
    out.extend(active.skipped.iter().map(|skipped| damage(active_path, skipped, None)));
    out
}

/// Plain shares a database made before shares were encrypted holds: key
/// shares, batch shares, and whether its plain key-share table exists.
/// Meaningful only for a database without a KEK check value.
fn plain_shares(db: &Database) -> Result<(u64, u64, bool), StoreError> {
    let txn = db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
    let (keys, plain_table) = match txn.open_table(PLAIN_KEY_SHARES) {
        Ok(table) => (table.len().map_err(|e| db_error("count key shares")(e.into()))?, true),
        Err(redb::TableError::TableDoesNotExist(_) | redb::TableError::TableTypeMismatch { .. }) => (0, false),
        Err(e) => return Err(db_error("open key shares table")(e.into())),
    };
    let batches = match txn.open_table(BATCH_SHARES) {
        Ok(table) => table.len().map_err(|e| db_error("count batch shares")(e.into()))?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(db_error("open shares table")(e.into())),
    };
    Ok((keys, batches, plain_table))
}

fn stored_kek_check(db: &Database) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
    let meta = match txn.open_table(STORE_META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(db_error("open store meta")(e.into())),
    };
    let check = meta.get(KEK_CHECK).map_err(|e| db_error("read the KEK check")(e.into()))?;
    Ok(check.map(|guard| guard.value().to_vec()))
}

/// Refuses `kek` if the database's shares are encrypted with another, or
/// are plain. A database without shares (new, or made before encryption
/// and never given a share) is encrypted with `kek` from now on.
fn check_kek(db: &Database, path: &Path, kek: &Kek) -> Result<(), StoreError> {
    if let Some(check) = stored_kek_check(db)? {
        return verify_kek(path, kek, &check);
    }
    let (keys, batches, plain_table) = plain_shares(db)?;
    if keys + batches > 0 {
        return Err(StoreError::PlainShares { path: path.display().to_string(), count: keys + batches });
    }
    let check = sealed::check_value(kek).map_err(StoreError::share(SecretTable::KekCheck, 0))?;
    let txn = db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
    if plain_table {
        txn.delete_table(PLAIN_KEY_SHARES).map_err(|e| db_error("delete the plain key shares table")(e.into()))?;
    }
    {
        let mut meta = txn.open_table(STORE_META).map_err(|e| db_error("open store meta")(e.into()))?;
        meta.insert(KEK_CHECK, check.as_slice()).map_err(|e| db_error("write the KEK check")(e.into()))?;
    }
    txn.commit().map_err(|e| db_error("commit")(e.into()))
}

fn verify_kek(path: &Path, kek: &Kek, check: &[u8]) -> Result<(), StoreError> {
    sealed::verify_check_value(kek, check).map_err(|e| StoreError::WrongKek {
        path: path.display().to_string(),
        stored: match e {
            SealError::OtherKek(id) => id.to_string(),
            _ => sealed::entry_kek_id(check).map_or_else(|| "unknown".to_owned(), |id| id.to_string()),
        },
        given: kek.id().to_string(),
    })
}

/// Re-encrypts every share in the database at `path` under `new`, in one
/// durable redb transaction (all or nothing), and stores `new`'s check
/// value: afterwards the store opens with `new` only. `current` is the
/// KEK the shares are encrypted with; a database whose shares are still
/// plain (made before encryption at rest) needs none and is encrypted now.
/// Run it with the node stopped (a running node holds the database:
/// [`StoreError::InUse`]). Then compacts the file (best effort; see the
/// store's README on what a rekey does not erase).
pub fn rekey(path: &Path, current: Option<&Kek>, new: &Kek) -> Result<RekeyReport, StoreError> {
    std::fs::metadata(path)
        .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
    let mut db = open_database(path)?;
    let from = match stored_kek_check(&db)? {
        Some(check) => {
            let current = current.ok_or_else(|| StoreError::WrongKek {
                path: path.display().to_string(),
                stored: sealed::entry_kek_id(&check).map_or_else(|| "unknown".to_owned(), |id| id.to_string()),
                given: "none".to_owned(),
            })?;
            verify_kek(path, current, &check)?;
            if current.id() == new.id() {
                return Err(StoreError::Open {
                    path: path.display().to_string(),
                    reason: format!("the new key-encryption key is the current one (id {})", new.id()),
                });
            }
            Some(current)
        }
        None => None,
    };
    let check = sealed::check_value(new).map_err(StoreError::share(SecretTable::KekCheck, 0))?;
    let txn = db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
    let (key_shares, batch_shares) = match from {
        Some(current) => (
            reencrypt(&txn, KEY_SHARES, SecretTable::KeyShares, Some(current), new)?,
            reencrypt(&txn, BATCH_SHARES, SecretTable::BatchShares, Some(current), new)?
                + reencrypt(&txn, NEXT_SHARES, SecretTable::NextShares, Some(current), new)?,
        ),
        None => (
            encrypt_plain_key_shares(&db, &txn, new)?,
            reencrypt(&txn, BATCH_SHARES, SecretTable::BatchShares, None, new)?,
        ),
    };
    {
        let mut meta = txn.open_table(STORE_META).map_err(|e| db_error("open store meta")(e.into()))?;
        meta.insert(KEK_CHECK, check.as_slice()).map_err(|e| db_error("write the KEK check")(e.into()))?;
    }
    txn.commit().map_err(|e| db_error("commit")(e.into()))?;
    // Give freed pages (which may hold the old entries) back to the file
    // system where redb can; a failure leaves a valid, re-keyed database.
    let compacted = db.compact().is_ok();
    Ok(RekeyReport { from: from.map(Kek::id), to: new.id(), key_shares, batch_shares, compacted })
}

/// Re-encrypts the entries of `definition` from `from` (`None`: plain) to
/// `to`, a chunk at a time, in `txn`. Returns how many.
fn reencrypt(
    txn: &redb::WriteTransaction,
    definition: TableDefinition<'static, u64, &'static [u8]>,
    secret: SecretTable,
    from: Option<&Kek>,
    to: &Kek,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(definition).map_err(|e| db_error("open shares table")(e.into()))?;
    let (mut start, mut count) = (Some(0u64), 0u64);
    while let Some(first) = start {
        let mut chunk: Vec<(u64, Zeroizing<Vec<u8>>)> = Vec::with_capacity(REKEY_CHUNK);
        for entry in table.range(first..).map_err(|e| db_error("list shares")(e.into()))?.take(REKEY_CHUNK) {
            let (key, value) = entry.map_err(|e| db_error("list shares")(e.into()))?;
            chunk.push((key.value(), Zeroizing::new(value.value().to_vec())));
        }
        start = match chunk.last() {
            Some((last, _)) if chunk.len() == REKEY_CHUNK => last.checked_add(1),
            _ => None,
        };
        for (key, stored) in chunk {
            let plain = match from {
                Some(from) => sealed::open(from, secret, key, &stored).map_err(StoreError::share(secret, key))?,
                None => stored,
            };
            let entry = sealed::seal(to, secret, key, &plain).map_err(StoreError::share(secret, key))?;
            table.insert(key, entry.as_slice()).map_err(|e| db_error("write shares")(e.into()))?;
            count += 1;
        }
    }
    Ok(count)
}

/// A database made before encryption: its plain key-share table is
/// replaced by an encrypted one, in `txn`. Returns how many.
fn encrypt_plain_key_shares(db: &Database, txn: &redb::WriteTransaction, to: &Kek) -> Result<u64, StoreError> {
    let (_, _, plain_table) = plain_shares(db)?;
    if !plain_table {
        return Ok(0);
    }
    let mut shares: Vec<(u64, Zeroizing<[u8; 32]>)> = Vec::new();
    {
        let table = txn.open_table(PLAIN_KEY_SHARES).map_err(|e| db_error("open key shares table")(e.into()))?;
        for entry in table.iter().map_err(|e| db_error("list key shares")(e.into()))? {
            let (key, value) = entry.map_err(|e| db_error("list key shares")(e.into()))?;
            shares.push((key.value(), Zeroizing::new(*value.value())));
        }
    }
    txn.delete_table(PLAIN_KEY_SHARES).map_err(|e| db_error("delete the plain key shares table")(e.into()))?;
    let secret = SecretTable::KeyShares;
    let mut table = txn.open_table(KEY_SHARES).map_err(|e| db_error("open key shares table")(e.into()))?;
    for (index, share) in &shares {
        let entry = sealed::seal(to, secret, *index, &share[..]).map_err(StoreError::share(secret, *index))?;
        table.insert(*index, entry.as_slice()).map_err(|e| db_error("write key share")(e.into()))?;
    }
    Ok(shares.len() as u64)
}

/// The key of a reshare batch's next-epoch shares: the epoch in the top 24
/// bits, the batch in the low 40.
fn next_shares_key(epoch: u64, batch: u64) -> Result<u64, StoreError> {
    if epoch >= 1 << 24 || batch >= 1 << 40 {
        return Err(StoreError::Open {
            path: "next_epoch_shares".to_owned(),
            reason: format!("epoch {epoch} or reshare batch {batch} is beyond what the store indexes"),
        });
    }
    Ok(epoch << 40 | batch)
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
