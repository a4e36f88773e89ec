//! How the state machine judges a complaint against an old dealer of a
//! reshare batch: from public data only, the same verdict on every node.

use quorumkey_crypto::group::{AffinePoint, Point};

use super::ReshareContext;
use super::dealing::{ParsedReshareDealing, ReshareDealing, ShareCheck, check_reshare_shares, open_reshare_shares};
use super::recipient::reshare_complaint_transcript;
use crate::complaint::{Complaint, Verdict, proven_pair};
use crate::dealing::ShareFault;

/// Judges new node `recipient`'s complaint against old dealer `dealer`:
/// checks the DLEQ proof of the revealed shared point, decrypts the
/// recipient's ciphertext with it, and checks the shares against the
/// dealer's public shares (`old_public_shares`, from the ledger) and its
/// commitments, with weights hashed from everything judged.
#[allow(clippy::too_many_arguments)]
pub fn adjudicate_reshare(
    context: &ReshareContext,
    dealer: u16,
    dealing: &ReshareDealing,
    parsed: &ParsedReshareDealing,
    old_public_shares: &[AffinePoint],
    recipient: u16,
    recipient_key: &Point,
    complaint: &Complaint,
) -> Verdict {
    let transcript = reshare_complaint_transcript(context, dealer, recipient);
    let (shared, ciphertext) = match proven_pair(
        complaint,
        dealer,
        recipient,
        recipient_key,
        &parsed.ephemeral,
        transcript,
        &dealing.ciphertexts,
    ) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    let shares = match open_reshare_shares(context, dealer, recipient, &parsed.ephemeral, &shared, ciphertext) {
        Ok(shares) => shares,
        Err(fault) => return Verdict::DealerFaulty(fault),
    };
    let weights = context.weights(
        b"reshare-complaint-check",
        &[&dealer.to_be_bytes(), &recipient.to_be_bytes(), &complaint.shared_point, &dealing.commitments, ciphertext],
        shares.len(),
    );
    let check = ShareCheck {
        old_public_shares,
        commitments: &parsed.commitments,
        shares: shares.as_slice(),
        weights: &weights,
    };
    if check_reshare_shares(context.params(), &[check], recipient) {
        Verdict::ComplaintFalse("the shares match the commitments")
    } else {
        Verdict::DealerFaulty(ShareFault::Inconsistent)
    }
}
