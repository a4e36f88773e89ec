//! The batched distributed key generation of quorumkey, as pure functions.
//!
//! Every function here is deterministic given its inputs and the RNG the
//! caller passes; nothing does I/O. The ledger's state machine (which
//! orders the messages and decides the phases) and each node's participant
//! (which deals, checks and publishes) call into this crate. The protocol
//! and its security argument are in `docs/dkg.md`; in short:
//!
//! 1. [`dealing`]: each dealer shares `K` random secrets at once with
//!    Pedersen commitments `C_kl = a_kl·G + b_kl·H` and one authenticated
//!    ciphertext per recipient, under one Diffie-Hellman key exchange per
//!    dealer-recipient pair per batch.
//! 2. [`recipient`]: a recipient decrypts its shares and checks all `K` of
//!    a dealing with one random linear combination; if they are wrong it
//!    publishes a [`complaint::Complaint`] that reveals the pair's shared
//!    point with a DLEQ proof, so anyone can [`complaint::adjudicate`] it.
//! 3. [`aggregate`]: the qualified dealers' commitments, summed.
//! 4. [`public_shares`]: each node publishes `Y_kj = s_kj·G` for its
//!    aggregate shares with one proof per batch that they are the G-parts
//!    of the binding commitments; proofs from many nodes are verified in one
//!    multi-scalar multiplication; `t` of them give every key's public key
//!    and every node's public share by interpolation in the exponent.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod aggregate;
pub mod complaint;
pub mod context;
pub mod dealing;
pub mod error;
pub mod msm;
pub mod params;
pub mod points;
pub mod public_shares;
pub mod recipient;
pub mod reshare;
mod schnorr;

pub use aggregate::AggregateCommitments;
pub use complaint::{Complaint, Verdict, adjudicate};
pub use context::BatchContext;
pub use dealing::{DealerSecrets, Dealing, PreparedDealing};
pub use error::DkgError;
pub use params::BatchParams;
pub use public_shares::{FinishedKey, PublicShares, finish_keys, verify_public_shares};
pub use recipient::{KeyShares, ReceivedShares, open_dealing, open_dealings};
