//! Group commit of login records: one thread owns the writes, takes every
//! record waiting when it starts a write, and makes them durable together
//! (one append to the store's login-record log and one `fdatasync` for all
//! of them: see `quorumkey_store`'s `login_log`), then answers each
//! request.
//!
//! A `CommitmentRequest` answers only once its record is durable; one
//! durable write per request would make the fsyncs a login's cost under
//! load. Alone, a record waits for exactly one write; under load,
//! concurrent records share one.
//!
//! A second thread runs the store's background checkpoints (the records'
//! move from the log into redb, tens of milliseconds for a few thousand),
//! so that no request waits for one: the writer only tells it when one is
//! due.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use quorumkey_store::NewLoginRecord;
use tokio::sync::{mpsc, oneshot};

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

/// One request's records: made durable in the same write, answered
/// together.
struct Pending {
    records: Vec<NewLoginRecord>,
    answer: oneshot::Sender<Result<Vec<Option<Vec<u8>>>, String>>,
}

/// The handle requests insert through; the writer thread stops when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub struct LoginRecordWriter {
    queue: mpsc::Sender<Pending>,
    writes: Arc<AtomicU64>,
}

impl LoginRecordWriter {
    /// Starts the writer thread and its checkpoint thread on `applier`'s
    /// store.
    pub fn start(applier: Arc<BlockApplier>) -> std::io::Result<Self> {
        let (queue, mut waiting) = mpsc::channel::<Pending>(QUEUE);
        let writes = Arc::new(AtomicU64::new(0));
        let counted = writes.clone();
        // One wake-up at most waits: a checkpoint takes every record
        // pending when it starts. The thread stops with the writer.
        let (checkpoint_due, checkpoints) = std::sync::mpsc::sync_channel::<()>(1);
        let checkpointed = applier.clone();
        std::thread::Builder::new().name("login-checkpoints".to_owned()).spawn(move || {
            let store = checkpointed.store();
            while checkpoints.recv().is_ok() {
                // A wake-up sent while the last checkpoint ran may find
                // nothing left to do.
                if !matches!(store.login_checkpoint_due(), Ok(true)) {
                    continue;
                }
                let started = Instant::now();
                match store.checkpoint_login_records() {
                    Ok(_) => {
                        metrics::histogram!(METRIC_LOGIN_RECORD_CHECKPOINT).record(started.elapsed().as_secs_f64())
                    }
                    // The records stay durable in the log; the next
                    // checkpoint or sweep retries (or the store refuses new
                    // records until a restart, which the writer reports).
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
        })?;
        std::thread::Builder::new().name("login-records".to_owned()).spawn(move || {
            let (mut records, mut answers) = (Vec::with_capacity(MAX_GROUP), Vec::with_capacity(MAX_GROUP));
            while let Some(first) = waiting.blocking_recv() {
                let mut next = Some(first);
                while let Some(Pending { records: mut of_request, answer }) = next {
                    answers.push((answer, of_request.len()));
                    records.append(&mut of_request);
                    next = if records.len() < MAX_GROUP { waiting.try_recv().ok() } else { None };
                }
                metrics::histogram!(METRIC_LOGIN_RECORD_GROUP).record(records.len() as f64);
                counted.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let stored = applier.store().insert_login_records(&records);
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
                if matches!(applier.store().login_checkpoint_due(), Ok(true)) {
                    // Full: a wake-up is waiting already.
                    let _ = checkpoint_due.try_send(());
                }
            }
        })?;
        Ok(Self { queue, writes })
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
    pub async fn insert_all(&self, records: Vec<NewLoginRecord>) -> Result<Vec<Option<Vec<u8>>>, LoginRecordError> {
        let (answer, answered) = oneshot::channel();
        self.queue.send(Pending { records, answer }).await.map_err(|_| LoginRecordError::Stopped)?;
        match answered.await {
            Ok(Ok(existing)) => Ok(existing),
            Ok(Err(reason)) => Err(LoginRecordError::Store(reason)),
            Err(_) => Err(LoginRecordError::Stopped),
        }
    }
}
