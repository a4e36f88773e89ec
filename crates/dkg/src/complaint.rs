//! Complaints, and how the state machine judges them.

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use quorumkey_crypto::dleq::{DLEQ_PROOF_LEN, DleqProof, DleqStatement};
use quorumkey_crypto::group::{Point, generator, point_from_bytes};
use quorumkey_crypto::transcript::Transcript;

use crate::context::BatchContext;
use crate::dealing::{Dealing, ParsedDealing, ShareFault, check_shares, open_shares};

/// A recipient's public accusation that a dealer sent it wrong shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Complaint {
    /// The accused dealer.
    pub dealer: u16,
    /// `sk_j·E`, the shared point of the pair (compressed).
    pub shared_point: [u8; 33],
    /// DLEQ proof that `log_G(pk_j) = log_E(shared_point)`.
    pub proof: [u8; DLEQ_PROOF_LEN],
}

impl Write for Complaint {
    fn write(&self, buf: &mut impl BufMut) {
        self.dealer.write(buf);
        self.shared_point.write(buf);
        self.proof.write(buf);
    }
}

impl EncodeSize for Complaint {
    fn encode_size(&self) -> usize {
        2 + 33 + DLEQ_PROOF_LEN
    }
}

impl Read for Complaint {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            dealer: u16::read(buf)?,
            shared_point: <[u8; 33]>::read(buf)?,
            proof: <[u8; DLEQ_PROOF_LEN]>::read(buf)?,
        })
    }
}

/// What a complaint comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The dealer cheated: it is disqualified from the batch.
    DealerFaulty(ShareFault),
    /// The complaint is not proven or the shares are fine: ignored.
    ComplaintFalse(&'static str),
}

pub(crate) fn complaint_transcript(context: &BatchContext, dealer: u16, recipient: u16) -> Transcript {
    let mut transcript = context.transcript(b"dkg-complaint");
    transcript.append_u64(b"dealer", u64::from(dealer));
    transcript.append_u64(b"recipient", u64::from(recipient));
    transcript
}

/// The part of judging a complaint that the DKG and resharing share: the
/// complaint names `dealer`, its shared point is `log_G(recipient_key)`
/// times the dealer's `ephemeral` key (the DLEQ proof, under
/// `transcript`), and the recipient has a ciphertext. Returns the shared
/// point and that ciphertext, or the verdict that the complaint is false.
pub(crate) fn proven_pair<'a>(
    complaint: &Complaint,
    dealer: u16,
    recipient: u16,
    recipient_key: &Point,
    ephemeral: &Point,
    mut transcript: Transcript,
    ciphertexts: &'a [bytes::Bytes],
) -> Result<(Point, &'a bytes::Bytes), Verdict> {
    if complaint.dealer != dealer {
        return Err(Verdict::ComplaintFalse("the complaint names another dealer"));
    }
    let Ok(shared) = point_from_bytes("complaint shared point", &complaint.shared_point) else {
        return Err(Verdict::ComplaintFalse("the shared point is not a point"));
    };
    let Ok(proof) = DleqProof::from_bytes(&complaint.proof) else {
        return Err(Verdict::ComplaintFalse("the proof does not parse"));
    };
    let statement = DleqStatement { base1: generator(), public1: *recipient_key, base2: *ephemeral, public2: shared };
    if proof.verify(&mut transcript, &statement).is_err() {
        return Err(Verdict::ComplaintFalse("the proof of the shared point does not verify"));
    }
    let Some(ciphertext) = usize::from(recipient).checked_sub(1).and_then(|p| ciphertexts.get(p)) else {
        return Err(Verdict::ComplaintFalse("no such recipient"));
    };
    Ok((shared, ciphertext))
}

/// Judges `recipient`'s complaint against `dealer`: checks the DLEQ proof
/// on the revealed shared point, decrypts the recipient's ciphertext with
/// it, and checks the shares against the commitments (weights derived from
/// everything judged, so the outcome is the same on every node).
pub fn adjudicate(
    context: &BatchContext,
    dealer: u16,
    dealing: &Dealing,
    parsed: &ParsedDealing,
    recipient: u16,
    recipient_key: &Point,
    complaint: &Complaint,
) -> Verdict {
    let transcript = complaint_transcript(context, dealer, recipient);
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
    let shares = match open_shares(context, dealer, recipient, &parsed.ephemeral, &shared, ciphertext) {
        Ok(shares) => shares,
        Err(fault) => return Verdict::DealerFaulty(fault),
    };
    let weights = context.weights(
        b"complaint-check",
        &[&dealer.to_be_bytes(), &recipient.to_be_bytes(), &complaint.shared_point, &dealing.commitments, ciphertext],
        shares.len(),
    );
    if check_shares(context.params(), &parsed.commitments, recipient, &shares, &weights) {
        Verdict::ComplaintFalse("the shares match the commitments")
    } else {
        Verdict::DealerFaulty(ShareFault::Inconsistent)
    }
}
