//! The replicated ledger of a quorumkey network as a pure, deterministic
//! state machine: it is given finalized blocks of transactions and returns
//! the writes to persist, a receipt per transaction and the state root. It
//! does no I/O; the node reads its state through [`StateRead`] and persists
//! [`WriteSet`]s atomically.
//!
//! - [`Genesis`]: the nodes and the verifiers a network starts with.
//! - [`SignedTransaction`]: key assignment (node-signed), verifier
//!   registration and updates (owner-signed), the abuse policy (signed by
//!   2f + 1 nodes), and, with the `test-dealer` feature only, keys from a
//!   trusted dealer.
//! - [`NetworkPolicy`]: who may register verifiers and how many keys leave
//!   the pool per window, enforced by the state machine.
//! - [`Ledger`]: applies blocks; [`LedgerView`]: reads the state.
//! - [`dkg`]: the batched DKG's phases, decided by the state machine, which
//!   fill the key pool.
//! - [`epoch`], [`handover`]: the node set in force, the next one the
//!   operators decide, and the batched handover of every key to it.
//! - The state root is an LtHash ([`lthash`]) of every state entry, updated
//!   per change, so two nodes agree on the root iff they agree on the state.

pub mod dkg;
pub mod epoch;
pub mod genesis;
pub mod handover;
pub mod lthash;
pub mod machine;
pub mod policy;
pub mod state;
#[cfg(feature = "test-dealer")]
pub mod testkit;
pub mod transaction;
pub mod types;

pub use dkg::{BatchRecord, DkgEvent, DkgView, Phase};
pub use epoch::{EpochNode, NodeSet, NodeSetError};
pub use genesis::{DkgSettings, EpochSettings, Genesis, GenesisError, GenesisNode, GenesisVerifier};
pub use handover::{EpochView, HandoverRecord, HandoverStage, LastHandover, ReshareBatchRecord, ResharePhase};
pub use machine::{
    BlockOutcome, Effect, Ledger, LedgerError, LedgerView, MAX_TRANSACTION_LEN, NodeSets, Receipt, Rejection,
    TransactionClass, state_root, transaction_class,
};
pub use policy::{NetworkPolicy, RegistrationRule};
pub use state::{MemoryState, StateRead, StorageError, WriteSet};
pub use transaction::{Authorization, SignedTransaction, TransactionBody, transaction_hash};
pub use types::{Assignment, KeyRecord, VerifierId, VerifierName, VerifierRecord};
