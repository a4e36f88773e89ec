//! Which validators sign each consensus epoch, from the ledger.
//!
//! Consensus runs in epochs of the genesis's `boundary_blocks` heights
//! (epoch `e` is heights `e·L ..= e·L + L − 1`). The ledger changes its node
//! set only when it applies the last block of an epoch (the handover's
//! boundary is a multiple of `L`), so the validators of epoch `e + 1` are the
//! ledger's node set in force once `last(e)` is applied: a fact of the
//! finalized log that every honest node reads alike.
//!
//! [`ValidatorSchemes`] is marshal's and simplex's provider of signing
//! schemes. It answers only up to its **horizon**, the newest epoch whose
//! validators this node has read from its applied state: a certificate of a
//! later epoch cannot be checked yet (its signers are not known here), so
//! marshal ignores it rather than check it against the wrong set. A node that
//! is not a validator of an epoch gets a verify-only scheme for it and
//! follows that epoch as an observer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::types::Epoch;
use commonware_cryptography::certificate::{Provider, Scoped};
use commonware_cryptography::ed25519;
use commonware_utils::ordered::Set;

/// The signing scheme of each consensus epoch this node has reached.
#[derive(Clone)]
pub(crate) struct ValidatorSchemes {
    namespace: Arc<[u8]>,
    signer: ed25519::PrivateKey,
    inner: Arc<Mutex<Installed>>,
}

#[derive(Default)]
struct Installed {
    /// One scheme per distinct validator set, by the first epoch it signs;
    /// an epoch uses the entry at or below it.
    by_first_epoch: BTreeMap<Epoch, (Vec<ed25519::PublicKey>, Arc<Scheme>)>,
    /// The newest epoch installed.
    horizon: Option<Epoch>,
}

impl std::fmt::Debug for ValidatorSchemes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let installed = self.lock();
        f.debug_struct("ValidatorSchemes")
            .field("sets", &installed.by_first_epoch.len())
            .field("horizon", &installed.horizon)
            .finish_non_exhaustive()
    }
}

/// How many distinct validator sets are kept (older ones are dropped; an
/// epoch below the oldest kept is no longer answered).
const KEPT_SETS: usize = 8;

impl ValidatorSchemes {
    /// No epoch installed yet; `signer` is this node's consensus key.
    pub(crate) fn new(namespace: &[u8], signer: ed25519::PrivateKey) -> Self {
        Self { namespace: namespace.into(), signer, inner: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Installed> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `validators` sign `epoch` and every later epoch until
    /// another set is installed, and moves the horizon to `epoch` (never
    /// back). Returns the epoch's scheme.
    pub(crate) fn install(&self, epoch: Epoch, validators: Vec<ed25519::PublicKey>) -> Arc<Scheme> {
        let mut installed = self.lock();
        installed.horizon = Some(installed.horizon.map_or(epoch, |horizon| horizon.max(epoch)));
        if let Some((_, (known, scheme))) = installed.by_first_epoch.range(..=epoch).next_back()
            && *known == validators
        {
            return scheme.clone();
        }
        let participants = Set::from_iter_dedup(validators.iter().cloned());
        let scheme = Arc::new(
            Scheme::signer(&self.namespace, participants.clone(), self.signer.clone())
                .unwrap_or_else(|| Scheme::verifier(&self.namespace, participants)),
        );
        installed.by_first_epoch.insert(epoch, (validators, scheme.clone()));
        while installed.by_first_epoch.len() > KEPT_SETS {
            installed.by_first_epoch.pop_first();
        }
        scheme
    }
}

impl Provider for ValidatorSchemes {
    type Scope = Epoch;
    type Scheme = Scheme;

    fn scoped(&self, epoch: Epoch) -> Option<Scoped<Scheme>> {
        let installed = self.lock();
        if installed.horizon.is_none_or(|horizon| epoch > horizon) {
            return None;
        }
        // A verifier is handed out as a full scheme too: marshal's fetch of
        // a notarized block needs `scheme()`, and a verify-only scheme
        // cannot sign whatever it is called.
        installed.by_first_epoch.range(..=epoch).next_back().map(|(_, (_, scheme))| Scoped::scheme(scheme.clone()))
    }
}

#[cfg(test)]
mod tests {
    use commonware_cryptography::Signer as _;
    use commonware_cryptography::certificate::{Provider as _, Scheme as _};

    use super::*;

    fn key(seed: u64) -> ed25519::PrivateKey {
        ed25519::PrivateKey::from_seed(seed)
    }

    #[test]
    fn nothing_is_answered_beyond_the_horizon() {
        let schemes = ValidatorSchemes::new(b"ns", key(1));
        assert!(schemes.scoped(Epoch::zero()).is_none());
        let set: Vec<_> = (1..=4).map(|seed| key(seed).public_key()).collect();
        schemes.install(Epoch::new(2), set.clone());
        assert!(schemes.scoped(Epoch::new(2)).is_some());
        assert!(schemes.scoped(Epoch::new(3)).is_none(), "epoch 3's validators are not known yet");
        assert!(schemes.scoped(Epoch::new(1)).is_none(), "no set was installed for epoch 1");
        schemes.install(Epoch::new(3), set);
        assert!(schemes.scoped(Epoch::new(3)).is_some());
    }

    #[test]
    fn a_set_change_takes_effect_from_its_epoch_and_a_non_member_observes() {
        let me = key(1);
        let schemes = ValidatorSchemes::new(b"ns", me.clone());
        let first: Vec<_> = (1..=4).map(|seed| key(seed).public_key()).collect();
        let second: Vec<_> = (2..=6).map(|seed| key(seed).public_key()).collect();
        let signing = schemes.install(Epoch::zero(), first.clone());
        assert!(Arc::ptr_eq(&signing, &schemes.install(Epoch::new(1), first)), "an unchanged set shares its scheme");
        let observing = schemes.install(Epoch::new(2), second);
        assert!(signing.me().is_some());
        assert!(observing.me().is_none(), "node 1 left the set at epoch 2");
        let at = |epoch| schemes.scoped(Epoch::new(epoch)).and_then(|scoped| scoped.into_scheme()).unwrap();
        assert!(Arc::ptr_eq(&at(1), &signing));
        assert!(Arc::ptr_eq(&at(2), &observing));
    }

    #[test]
    fn old_sets_are_dropped_beyond_the_kept_number() {
        let schemes = ValidatorSchemes::new(b"ns", key(1));
        for epoch in 0..20u64 {
            schemes.install(Epoch::new(epoch), vec![key(100 + epoch).public_key()]);
        }
        assert!(schemes.scoped(Epoch::new(19)).is_some());
        assert!(schemes.scoped(Epoch::new(20 - KEPT_SETS as u64)).is_some());
        assert!(schemes.scoped(Epoch::new(5)).is_none());
    }
}
