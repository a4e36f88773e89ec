//! One simplex engine per consensus epoch.
//!
//! Simplex signs every vote for one epoch and one validator set. The
//! [`EpochEngines`] task runs the engine of the epoch this node is in, on
//! that epoch's subchannel of the vote, certificate and resolver channels
//! (multiplexed by epoch number), and switches to the next epoch when the
//! finalized-block feed asks it to ([`EpochSwitch::enter`]), after the
//! ledger has applied the epoch's last block:
//!
//! 1. the feed installs the next epoch's validators (the ledger's node set in
//!    force after that block) in [`ValidatorSchemes`];
//! 2. this task starts the next epoch's engine from that block
//!    (`Floor::Genesis` of its digest: its first proposal builds on it) and
//!    only then stops the old one;
//! 3. the feed acknowledges the block to marshal.
//!
//! An epoch's engine never finalizes a height beyond its last block: the
//! marshal wrapper refuses such proposals and re-proposes the last block
//! instead. So the chain crosses a boundary only through this switch, and a
//! crash anywhere in it resumes at the same place: the ledger's applied
//! height tells which epoch to start ([`starting_epoch`]), and entering an
//! epoch already entered does nothing.
//!
//! **Catching up.** A node behind still hears later epochs' votes and
//! certificates: they arrive on subchannels it has not registered and come
//! out of the muxer's backup queue. For each, this task asks marshal to
//! fetch the finalization of its own epoch's last block from that sender
//! (`hint_finalized`), which it can check with the validators it knows;
//! marshal then fills the blocks below by their hashes, the feed applies
//! them, and the node enters the next epoch: one epoch at a time, each
//! checked with validators read from its own applied state.

use std::collections::HashSet;
use std::sync::Arc;

use commonware_consensus::marshal::core::Mailbox as MarshalMailbox;
use commonware_consensus::marshal::standard::Standard;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::types::{Epoch, Epocher, FixedEpocher, Height};
use commonware_cryptography::certificate::Scheme as _;
use commonware_cryptography::ed25519;
use commonware_cryptography::sha256::Digest;
use commonware_p2p::utils::mux::{Builder as _, MuxHandle, Muxer, SubReceiver, SubSender};
use commonware_p2p::{Receiver, Sender};
use commonware_runtime::{Handle, Metrics, Spawner};
use commonware_utils::channel::oneshot;
use commonware_utils::vec::NonEmptyVec;
use futures::channel::mpsc;
use futures::{FutureExt as _, StreamExt as _};

use super::block::Block;

/// One epoch's three consensus channels.
pub(crate) type EpochChannels<S> = (
    (SubSender<S>, SubReceiver<ed25519::PublicKey>),
    (SubSender<S>, SubReceiver<ed25519::PublicKey>),
    (SubSender<S>, SubReceiver<ed25519::PublicKey>),
);

/// Starts one epoch's simplex engine: `(epoch, floor, scheme, channels)`.
pub(crate) type EngineStarter<S> = Box<dyn FnMut(Epoch, Digest, Arc<Scheme>, EpochChannels<S>) -> Handle<()> + Send>;

/// The epoch to run after a (re)start: the one holding the height after the
/// ledger's applied height. The ledger, not marshal, decides: marshal may be
/// a block behind after a crash between applying and acknowledging, and the
/// ledger keeps only the validators in force now, those of this epoch.
pub(crate) fn starting_epoch(epocher: &FixedEpocher, applied_height: u64) -> Epoch {
    epocher.containing(Height::new(applied_height.saturating_add(1))).map_or(Epoch::zero(), |info| info.epoch())
}

/// Whether `height` is the last of its epoch.
pub(crate) fn is_last_of_epoch(epocher: &FixedEpocher, height: u64) -> Option<Epoch> {
    let info = epocher.containing(Height::new(height))?;
    (epocher.last(info.epoch()) == Some(Height::new(height))).then(|| info.epoch())
}

struct Enter {
    epoch: Epoch,
    floor: Digest,
    scheme: Arc<Scheme>,
    entered: oneshot::Sender<()>,
}

/// Asks [`EpochEngines`] to move to a new epoch.
#[derive(Clone, Debug)]
pub(crate) struct EpochSwitch {
    sender: mpsc::Sender<Enter>,
}

impl EpochSwitch {
    /// Starts `epoch`'s engine from the block `floor` with `scheme`, then
    /// stops the engine of the epoch before; returns once done. An epoch at
    /// or below the running one is already entered: nothing happens.
    /// Returns `false` if the task has stopped (the node is stopping).
    pub(crate) async fn enter(&self, epoch: Epoch, floor: Digest, scheme: Arc<Scheme>) -> bool {
        let (entered, done) = oneshot::channel();
        let mut sender = self.sender.clone();
        if futures::SinkExt::send(&mut sender, Enter { epoch, floor, scheme, entered }).await.is_err() {
            return false;
        }
        done.await.is_ok()
    }
}

/// The task that owns the consensus channels and the engine of the
/// running epoch.
pub(crate) struct EpochEngines<E: Spawner + Metrics, S: Sender<PublicKey = ed25519::PublicKey>> {
    context: E,
    epocher: FixedEpocher,
    marshal: MarshalMailbox<Scheme, Standard<Block>>,
    start_engine: EngineStarter<S>,
    partition_prefix: String,
}

/// The simplex write-ahead log of one epoch.
pub(crate) fn epoch_partition(prefix: &str, epoch: Epoch) -> String {
    format!("{prefix}-simplex-e{}", epoch.get())
}

impl<E, S> EpochEngines<E, S>
where
    E: Spawner + Metrics + commonware_runtime::Storage,
    S: Sender<PublicKey = ed25519::PublicKey>,
{
    pub(crate) fn new(
        context: E,
        epocher: FixedEpocher,
        marshal: MarshalMailbox<Scheme, Standard<Block>>,
        partition_prefix: String,
        start_engine: EngineStarter<S>,
    ) -> Self {
        Self { context, epocher, marshal, start_engine, partition_prefix }
    }

    /// Starts the task on the three consensus channels, in `first` epoch
    /// from block `floor`. The returned handle ends when the node stops or
    /// an engine ends on its own (then the node must stop: consensus is no
    /// longer running).
    pub(crate) fn start<R: Receiver<PublicKey = ed25519::PublicKey>>(
        self,
        votes: (S, R),
        certificates: (S, R),
        resolver: (S, R),
        first: (Epoch, Digest, Arc<Scheme>),
    ) -> (Handle<()>, EpochSwitch) {
        let (sender, commands) = mpsc::channel(1);
        let context = self.context.child("epochs");
        let handle = context.spawn(move |context| self.run(context, votes, certificates, resolver, first, commands));
        (handle, EpochSwitch { sender })
    }

    async fn run<R: Receiver<PublicKey = ed25519::PublicKey>>(
        mut self,
        context: E,
        (vote_sender, vote_receiver): (S, R),
        (certificate_sender, certificate_receiver): (S, R),
        (resolver_sender, resolver_receiver): (S, R),
        (epoch, floor, scheme): (Epoch, Digest, Arc<Scheme>),
        mut commands: mpsc::Receiver<Enter>,
    ) {
        let (mux, mut votes, mut vote_backup) =
            Muxer::builder(context.child("vote_mux"), vote_sender, vote_receiver).with_backup().build();
        mux.start();
        let (mux, mut certificates, mut certificate_backup) =
            Muxer::builder(context.child("certificate_mux"), certificate_sender, certificate_receiver)
                .with_backup()
                .build();
        mux.start();
        let (mux, mut resolver) = Muxer::new(context.child("resolver_mux"), resolver_sender, resolver_receiver);
        mux.start();

        let channels = (&mut votes, &mut certificates, &mut resolver);
        let Some(mut active) = self.enter(epoch, floor, scheme, channels).await else {
            return;
        };
        // The peers already asked for this epoch's last finalization: one
        // hint per peer and epoch. Every vote and certificate of a later
        // epoch arrives here, and each hint costs marshal a storage read,
        // so a peer (faulty or just ahead) must not trigger one per message.
        let mut hinted: HashSet<ed25519::PublicKey> = HashSet::new();
        loop {
            let event = futures::select_biased! {
                command = commands.next() => Event::Command(command),
                backup = vote_backup.recv().fuse() => Event::Backup(backup.map(|(epoch, (from, _))| (epoch, from))),
                backup = certificate_backup.recv().fuse() => {
                    Event::Backup(backup.map(|(epoch, (from, _))| (epoch, from)))
                }
                ended = (&mut active.handle).fuse() => Event::EngineEnded(format!("{ended:?}")),
            };
            match event {
                Event::Command(None) => {
                    tracing::debug!("the block feed stopped; stopping consensus");
                    return;
                }
                Event::Command(Some(Enter { epoch, floor, scheme, entered })) => {
                    if epoch > active.epoch {
                        let channels = (&mut votes, &mut certificates, &mut resolver);
                        let Some(next) = self.enter(epoch, floor, scheme, channels).await else {
                            return;
                        };
                        // Dropping the old epoch stops its engine.
                        let left = std::mem::replace(&mut active, next).epoch;
                        hinted.clear();
                        // The write-ahead log of the epoch before `left` goes;
                        // `left`'s own stays one epoch longer, for the record.
                        // Best effort: a crash at the wrong moment can leave
                        // one behind.
                        if let Some(older) = left.previous() {
                            let partition = epoch_partition(&self.partition_prefix, older);
                            if let Err(error) = self.context.remove(&partition, None).await {
                                tracing::debug!(partition, %error, "no old consensus log to remove");
                            }
                        }
                    }
                    let _ = entered.send(());
                }
                Event::Backup(Some((their_epoch, from))) => {
                    if their_epoch > active.epoch.get() && hinted.insert(from.clone()) {
                        self.catch_up(active.epoch, their_epoch, from);
                    }
                }
                Event::Backup(None) => return,
                Event::EngineEnded(how) => {
                    tracing::error!(
                        epoch = active.epoch.get(),
                        how,
                        "the consensus engine stopped; stopping consensus"
                    );
                    return;
                }
            }
        }
    }

    async fn enter(
        &mut self,
        epoch: Epoch,
        floor: Digest,
        scheme: Arc<Scheme>,
        (votes, certificates, resolver): (&mut MuxHandle<S>, &mut MuxHandle<S>, &mut MuxHandle<S>),
    ) -> Option<RunningEpoch> {
        let subchannel = epoch.get();
        let (Ok(votes), Ok(certificates), Ok(resolver)) = (
            votes.register(subchannel).await,
            certificates.register(subchannel).await,
            resolver.register(subchannel).await,
        ) else {
            tracing::error!(epoch = subchannel, "cannot open the epoch's consensus channels; stopping consensus");
            return None;
        };
        let signer = scheme.me().is_some();
        let handle = (self.start_engine)(epoch, floor, scheme, (votes, certificates, resolver));
        tracing::info!(epoch = subchannel, validator = signer, "entered consensus epoch");
        metrics::gauge!(crate::observability::METRIC_CONSENSUS_EPOCH).set(subchannel as f64);
        Some(RunningEpoch { epoch, handle })
    }

    /// A message of `their_epoch` arrived while this node runs `ours`: if
    /// it is later, fetch the finalization of our epoch's last block from
    /// its sender.
    fn catch_up(&self, ours: Epoch, their_epoch: u64, from: ed25519::PublicKey) {
        if their_epoch <= ours.get() {
            return;
        }
        let Some(last) = self.epocher.last(ours) else { return };
        tracing::debug!(ours = ours.get(), their_epoch, last = last.get(), "a peer is in a later epoch; catching up");
        self.marshal.hint_finalized(last, NonEmptyVec::new(from));
    }
}

/// What woke the task.
enum Event {
    Command(Option<Enter>),
    Backup(Option<(u64, ed25519::PublicKey)>),
    EngineEnded(String),
}

/// The engine of the running epoch; dropping it stops the engine.
struct RunningEpoch {
    epoch: Epoch,
    handle: Handle<()>,
}

impl Drop for RunningEpoch {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use commonware_utils::NZU64;

    use super::*;

    #[test]
    fn the_starting_epoch_follows_the_applied_height() {
        let epocher = FixedEpocher::new(NZU64!(8));
        assert_eq!(starting_epoch(&epocher, 0), Epoch::zero());
        assert_eq!(starting_epoch(&epocher, 6), Epoch::zero());
        // Applying height 7, the last of epoch 0, moves the node to epoch 1.
        assert_eq!(starting_epoch(&epocher, 7), Epoch::new(1));
        assert_eq!(starting_epoch(&epocher, 8), Epoch::new(1));
        assert_eq!(starting_epoch(&epocher, 23), Epoch::new(3));
    }

    #[test]
    fn only_an_epochs_last_height_is_a_boundary() {
        let epocher = FixedEpocher::new(NZU64!(8));
        assert_eq!(is_last_of_epoch(&epocher, 0), None);
        assert_eq!(is_last_of_epoch(&epocher, 7), Some(Epoch::zero()));
        assert_eq!(is_last_of_epoch(&epocher, 8), None);
        assert_eq!(is_last_of_epoch(&epocher, 15), Some(Epoch::new(1)));
    }
}
