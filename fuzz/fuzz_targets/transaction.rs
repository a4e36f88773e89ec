//! The transaction codec and the ledger's handling of one transaction, on
//! a fixed four-node network whose DKG batch 0 is at one of its phases
//! (see `quorumkey_fuzz::ledger`):
//!
//! 1. any bytes through `Ledger::check_transaction` (decoding with the
//!    network's limits, then the signature checks) and through the decoder
//!    alone: a transaction that decodes re-encodes to exactly its bytes
//!    (the codec is canonical, so one transaction has one hash);
//! 2. the bytes as the only transaction of the next block
//!    (`Ledger::apply_block`): the block applies (`Ok`), with one receipt,
//!    the check's rejection if the check refused the transaction;
//! 3. a fuzzer cannot forge signatures, so when the bytes decode, the body
//!    is signed again with the fixture's keys (a node's for node
//!    transactions, keeping the node index modulo 4; the verifier owner's
//!    for owner transactions, a registration getting the owner's key as its
//!    owner): the check must accept it, and the block with it must apply.
//!    This reaches the state machine with fuzzed bodies: verifier
//!    registration (any configuration) and updates, DKG dealings (batch 0
//!    dealing), responses with complaints (batch 0 responding: complaints
//!    against the dealings of nodes 1 and 2 are adjudicated) and public
//!    shares (batch 0 publishing, with the other three nodes' shares in:
//!    one more from node 1 completes the batch and is verified with them).
//!
//! Nothing may panic.
#![no_main]

use commonware_codec::{Copying, Decode, Encode};
use libfuzzer_sys::fuzz_target;
use quorumkey_fuzz::ledger::{LedgerFixture, NODES, compressed, fixture, time_ms};
use quorumkey_ledger::transaction::TransactionLimits;
use quorumkey_ledger::{Authorization, Effect, Rejection, SignedTransaction, TransactionBody, transaction_hash};

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let ledger = &fixture.ledger;
    let limits: TransactionLimits = ledger.limits();
    let decoded = SignedTransaction::decode_cfg(Copying(data), &limits);
    if let Ok(transaction) = &decoded {
        assert_eq!(transaction.encode().as_ref(), data, "a non-canonical encoding decodes");
    }
    let checked = ledger.check_transaction(data);
    if let Ok(transaction) = &checked {
        assert_eq!(Some(transaction), decoded.as_ref().ok(), "checked but does not decode");
    }
    let receipt = apply(fixture, decoded.as_ref().ok().map(|tx| &tx.body), data);
    if let Err(rejection) = &checked {
        assert_eq!(receipt.as_ref(), Err(rejection), "the block and the check disagree");
    }

    let Ok(transaction) = decoded else { return };
    let resigned = resign(fixture, transaction);
    let encoded = resigned.encode();
    if let Err(rejection) = ledger.check_transaction(&encoded) {
        panic!("a transaction signed with the network's keys is refused: {rejection}");
    }
    let _ = apply(fixture, Some(&resigned.body), &encoded);
});

/// Applies `bytes` as the only transaction of the next block on the state
/// for `body`; returns its receipt.
fn apply(fixture: &LedgerFixture, body: Option<&TransactionBody>, bytes: &[u8]) -> Result<Effect, Rejection> {
    let (state, height) = match body {
        Some(body) => fixture.state_for(body),
        None => (&fixture.states[0], 2),
    };
    let outcome = match fixture.ledger.apply_block(state, height, time_ms(height), &[bytes]) {
        Ok(outcome) => outcome,
        Err(e) => panic!("a block with one transaction fails: {e}"),
    };
    assert_eq!(outcome.height, height);
    assert_eq!(outcome.receipts.len(), 1);
    let receipt = outcome.receipts.into_iter().next().expect("one receipt");
    assert_eq!(receipt.transaction, transaction_hash(bytes));
    receipt.result
}

/// The transaction's body signed with the fixture's keys.
fn resign(fixture: &LedgerFixture, transaction: SignedTransaction) -> SignedTransaction {
    let node = match transaction.authorization {
        Authorization::Node { index, .. } => (index.max(1) - 1) % NODES + 1,
        Authorization::Owner { .. } => 1,
    };
    match transaction.body {
        TransactionBody::RegisterVerifier { name, config, .. } => {
            fixture.owner_tx(TransactionBody::RegisterVerifier { name, owner: compressed(&fixture.owner), config })
        }
        body @ TransactionBody::UpdateVerifier { .. } => fixture.owner_tx(body),
        body => fixture.node_tx(node, body),
    }
}
