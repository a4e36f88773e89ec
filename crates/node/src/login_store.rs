//! The login store: one actor owns the writes to the store's login tables
//! (the records of signed commitments, aggregate sub-tokens and token
//! nullifiers). Requests talk to it through a [`LoginStore`] handle; reads
//! of a record go straight to the store (redb readers never block).
//!
//! - **Group commit.** The writer thread takes every record waiting when
//!   it starts a write and makes them durable together (one append to the
//!   store's login-record log and one `fdatasync` for all of them: see
//!   `quorumkey_store`'s `login_log`), then answers each request. A
//!   `CommitmentRequest` answers only once its record is durable; one
//!   durable write per request would make the fsyncs a login's cost under
//!   load. Alone, a record waits for exactly one write; under load,
//!   concurrent records share one.
//! - **Maintenance.** A second thread runs the store's background
//!   checkpoints (the records' move from the log into redb, tens of
//!   milliseconds for a few thousand), so that no request waits for one:
//!   the writer only tells it when one is due. The sweep of expired records
//!   runs there too, when the housekeeping task asks.
//! - **Shutdown.** [`LoginStoreTask::stop`] lets the writer finish every
//!   insert already queued (each is answered), then stops both threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use quorumkey_store::NewLoginRecord;
use tokio::sync::{mpsc, oneshot};

use quorumkey_store::NodeStore;

use crate::applier::BlockApplier;
use crate::observability::{
    METRIC_LOGIN_LOG_ROTATIONS_DEFERRED, METRIC_LOGIN_RECORD_CHECKPOINT, METRIC_LOGIN_RECORD_COMMIT,
    METRIC_LOGIN_RECORD_GROUP,
};

/// Most records in one write.
const MAX_GROUP: usize = 256;
/// Records waiting for the writer before senders wait too.
const QUEUE: usize = 4096;

/// Why a record was not stored.
#[derive(Debug, thiserror::Error)]
pub enum LoginRecordError {
    /// The store refused the write.
    #[error("storing login records failed: {0}")]
    Store(String),
    /// The writer thread is gone (the node is stopping).
    #[error("the login record writer has stopped")]
    Stopped,
}

/// Why a sweep did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The store refused (the records stay; the next sweep retries).
    #[error("sweeping expired login records failed: {0}")]
    Store(String),
    /// The maintenance thread is gone (the node is stopping).
    #[error("the login store has stopped")]
    Stopped,
}

/// One request's records: made durable in the same write, answered
/// together.
struct Pending {
    records: Vec<NewLoginRecord>,
    answer: oneshot::Sender<Result<Vec<Option<Vec<u8>>>, String>>,
}

/// The writer's mailbox.
enum WriterMessage {
    /// Store one request's records.
    Insert(Pending),
    /// Finish what is queued, then stop.
    Stop,
}

/// The maintenance thread's mailbox.
enum Maintenance {
    /// A background checkpoint may be due.
    Checkpoint,
    /// Forget the records expired at `now` (Unix seconds); answer how many
    /// went.
    Sweep { now: u64, answer: oneshot::Sender<Result<usize, String>> },
    /// Stop.
    Stop,
}

/// Records a sweep removes per store transaction.
const SWEEP_CHUNK: usize = 10_000;

/// The handle requests insert, read and sweep login records through.
#[derive(Clone, Debug)]
pub struct LoginStore {
    store: Arc<NodeStore>,
    queue: mpsc::Sender<WriterMessage>,
    maintenance: mpsc::Sender<Maintenance>,
    writes: Arc<AtomicU64>,
}

/// The login store's threads, kept for shutdown.
#[derive(Debug)]
pub struct LoginStoreTask {
    queue: mpsc::Sender<WriterMessage>,
    maintenance: mpsc::Sender<Maintenance>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LoginStoreTask {
    /// Lets the writer answer every insert already queued, then stops both
    /// threads and waits for them (blocking: call it off the async
    /// runtime's workers, e.g. in `spawn_blocking`).
    pub fn stop(self) {
        let _ = self.queue.blocking_send(WriterMessage::Stop);
        let _ = self.maintenance.blocking_send(Maintenance::Stop);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Runs the maintenance mailbox until `Stop` or until every sender is gone.
fn run_maintenance(store: &NodeStore, mut mailbox: mpsc::Receiver<Maintenance>) {
    while let Some(message) = mailbox.blocking_recv() {
        match message {
            Maintenance::Checkpoint => checkpoint(store),
            Maintenance::Sweep { now, answer } => {
                let mut total = 0;
                let swept = loop {
                    match store.sweep_login_records(now, SWEEP_CHUNK) {
                        Ok(swept) if swept < SWEEP_CHUNK => break Ok(total + swept),
                        Ok(swept) => total += swept,
                        Err(error) => break Err(error.to_string()),
                    }
                };
                // The housekeeping task may have stopped waiting.
                let _ = answer.send(swept);
            }
            Maintenance::Stop => return,
        }
    }
}

/// A background checkpoint, if one is due.
fn checkpoint(store: &NodeStore) {
    // A wake-up sent while the last checkpoint ran may find nothing left
    // to do.
    if !matches!(store.login_checkpoint_due(), Ok(true)) {
        return;
    }
    let started = Instant::now();
    match store.checkpoint_login_records() {
        Ok(_) => metrics::histogram!(METRIC_LOGIN_RECORD_CHECKPOINT).record(started.elapsed().as_secs_f64()),
        // The records stay durable in the log; the next checkpoint or
        // sweep retries (or the store refuses new records until a
        // restart, which the writer reports).
        Err(error) => tracing::warn!(%error, "login record checkpoint failed"),
    }
    if let Some(reason) = store.take_login_log_rotation_failure() {
        metrics::counter!(METRIC_LOGIN_LOG_ROTATIONS_DEFERRED).increment(1);
        tracing::warn!(
            %reason,
            "the login record log could not be sealed (out of file descriptors?); the checkpoint ran in full, holding up new records meanwhile"
        );
    }
}

impl LoginStore {
    /// Starts the writer thread and its maintenance thread on `applier`'s
    /// store; returns the handle and the threads (for shutdown).
    pub fn start(applier: &BlockApplier) -> std::io::Result<(Self, LoginStoreTask)> {
        let store = applier.login_tables();
        let (queue, mut waiting) = mpsc::channel::<WriterMessage>(QUEUE);
        // Checkpoint wake-ups that find the mailbox full are dropped: a
        // checkpoint takes every record pending when it starts, and one
        // that finds none due does nothing.
        let (maintenance, mailbox) = mpsc::channel::<Maintenance>(4);
        let writes = Arc::new(AtomicU64::new(0));
        let counted = writes.clone();
        let maintained = store.clone();
        let maintenance_thread = std::thread::Builder::new()
            .name("login-checkpoints".to_owned())
            .spawn(move || run_maintenance(&maintained, mailbox))?;
        let (written, checkpoint_due) = (store.clone(), maintenance.clone());
        let writer_thread = std::thread::Builder::new().name("login-records".to_owned()).spawn(move || {
            let (mut records, mut answers) = (Vec::with_capacity(MAX_GROUP), Vec::with_capacity(MAX_GROUP));
            let mut stopping = false;
            while !stopping {
                let Some(WriterMessage::Insert(first)) = waiting.blocking_recv() else { break };
                let mut next = Some(first);
                while let Some(Pending { records: mut of_request, answer }) = next {
                    answers.push((answer, of_request.len()));
                    records.append(&mut of_request);
                    next = if records.len() < MAX_GROUP {
                        match waiting.try_recv() {
                            Ok(WriterMessage::Insert(pending)) => Some(pending),
                            Ok(WriterMessage::Stop) => {
                                // This group is written and answered first.
                                stopping = true;
                                None
                            }
                            Err(_) => None,
                        }
                    } else {
                        None
                    };
                }
                metrics::histogram!(METRIC_LOGIN_RECORD_GROUP).record(records.len() as f64);
                counted.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let stored = written.insert_login_records(&records);
                metrics::histogram!(METRIC_LOGIN_RECORD_COMMIT).record(started.elapsed().as_secs_f64());
                // One answer per request, its records' in order.
                match stored {
                    Ok(existing) => {
                        let mut existing = existing.into_iter();
                        for (answer, count) in answers.drain(..) {
                            // The request may have given up waiting.
                            let _ = answer.send(Ok(existing.by_ref().take(count).collect()));
                        }
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        for (answer, _) in answers.drain(..) {
                            let _ = answer.send(Err(reason.clone()));
                        }
                    }
                }
                records.clear();
                if matches!(written.login_checkpoint_due(), Ok(true)) {
                    // Full: a wake-up is waiting already.
                    let _ = checkpoint_due.try_send(Maintenance::Checkpoint);
                }
            }
        })?;
        let task = LoginStoreTask {
            queue: queue.clone(),
            maintenance: maintenance.clone(),
            threads: vec![writer_thread, maintenance_thread],
        };
        Ok((Self { store, queue, maintenance, writes }, task))
    }

    /// The record stored under `key`, if any (a read; never waits for the
    /// writer).
    pub fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, quorumkey_store::StoreError> {
        self.store.login_record(key)
    }

    /// The store's login tables, for counting what they hold at start
    /// ([`crate::pending_records::PendingRecordCaps::rebuild`]).
    pub(crate) fn tables(&self) -> &NodeStore {
        &self.store
    }

    /// Forgets the records that expired at `now` (Unix seconds), on the
    /// maintenance thread (inserts go on meanwhile, but for the moment the
    /// store holds its log to move the latest records into redb); returns
    /// how many went.
    pub async fn sweep(&self, now: u64) -> Result<usize, SweepError> {
        let (answer, answered) = oneshot::channel();
        self.maintenance.send(Maintenance::Sweep { now, answer }).await.map_err(|_| SweepError::Stopped)?;
        answered.await.map_err(|_| SweepError::Stopped)?.map_err(SweepError::Store)
    }

    /// Writes the writer has run (each one durable append, or none when
    /// every record of its group was already stored).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Stores `record` unless a record is stored under its key, durably;
    /// returns the record already stored, if any (see
    /// [`quorumkey_store::NodeStore::insert_login_records`]).
    pub async fn insert(&self, record: NewLoginRecord) -> Result<Option<Vec<u8>>, LoginRecordError> {
        Ok(self.insert_all(vec![record]).await?.pop().flatten())
    }

    /// [`Self::insert`] for the records of one request, made durable in
    /// the same write: for each, in order, the record already stored under
    /// its key, if any.
    pub(crate) async fn insert_all(
        &self,
        records: Vec<NewLoginRecord>,
    ) -> Result<Vec<Option<Vec<u8>>>, LoginRecordError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(WriterMessage::Insert(Pending { records, answer }))
            .await
            .map_err(|_| LoginRecordError::Stopped)?;
        match answered.await {
            Ok(Ok(existing)) => Ok(existing),
            Ok(Err(reason)) => Err(LoginRecordError::Store(reason)),
            Err(_) => Err(LoginRecordError::Stopped),
        }
    }
}
