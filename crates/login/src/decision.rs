//! The whole reveal decision as one pure function: given what a node knows
//! about a `ShareRequest` (its records, the network, the time, the token's
//! check, the key and its share, the token's nullifiers), [`decide`] says
//! what the node must learn next or the answer: a [`Grant`] (which share,
//! encrypted to which key) or the reason it refuses.
//!
//! The node gathers facts only when asked, cheapest first, and calls
//! [`decide`] again after each:
//!
//! ```text
//! facts = the request, its verifier, this node's records, the network, now
//! loop match decide(&facts)?
//!   CheckToken            => facts.token = the token's check (JWKS, an introspection call)
//!   LookUpKey             => facts.key = the pair's key and this node's share
//!   RecordNullifiers(ws)  => facts.nullifiers = what the store holds after inserting ws once
//!   Grant(g)              => encrypt g.share to g.recipient and answer
//! ```
//!
//! Nothing is written for a request that fails any other check, and a
//! nullifier's insert is itself a fact: two reveals racing with two
//! spellings of one token find each other's nullifier and only the first
//! is served.

use std::cell::OnceCell;

use quorumkey_crypto::group::{Point, PublicKey, Scalar, point_to_bytes, scalar_from_bytes};
use quorumkey_verifier::{TokenIdentity, VerifierConfig};
use zeroize::Zeroizing;

use crate::LoginError;
use crate::records::{LoginRecord, NullifierRecord, RecordWrite};
use crate::reveal::{NodeKey, ShareRequest, SignaturePolicy};

/// What a token's check established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedToken {
    /// The user it names (normalized as the verifier says).
    pub verifier_id: String,
    /// When it was issued (for an aggregate, the earliest sub-token's).
    pub issued_at: u64,
    /// What each token is, whatever its spelling (one per sub-token of an
    /// aggregate).
    pub identities: Vec<TokenIdentity>,
}

/// The pair's key as this node knows it.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyFacts {
    /// No key is assigned to the pair (or it waits for the pool).
    NotAssigned,
    /// The key.
    Assigned {
        /// Its index.
        key_index: u64,
        /// The key.
        public_key: PublicKey,
        /// This node's public share, compressed, from the ledger.
        own_public_share: Vec<u8>,
        /// This node's share, if it holds one (32 bytes, big-endian).
        share: Option<Zeroizing<[u8; 32]>>,
    },
}

impl std::fmt::Debug for KeyFacts {
    // The share is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAssigned => f.write_str("NotAssigned"),
            Self::Assigned { key_index, share, .. } => f
                .debug_struct("Assigned")
                .field("key_index", key_index)
                .field("share", &share.as_ref().map(|_| "<secret>"))
                .finish_non_exhaustive(),
        }
    }
}

/// Everything a node knows about one `ShareRequest`. The first fields are
/// known when the request arrives ([`RevealFacts::new`]); the others start
/// as `None` and are filled in when [`decide`] asks for them.
#[derive(Debug)]
pub struct RevealFacts<'a> {
    /// The parsed request.
    pub request: &'a ShareRequest,
    /// Its verifier's configuration (the verifier is registered and
    /// enabled).
    pub config: &'a VerifierConfig,
    /// Every node of the network.
    pub nodes: &'a [NodeKey],
    /// Signatures a reveal needs ([`crate::required_signatures`]).
    pub required: usize,
    /// This node's clock (Unix seconds).
    pub now: u64,
    /// How old a commitment signature may be.
    pub policy: SignaturePolicy,
    /// What this node stores under the request's token commitment.
    pub record: Option<Vec<u8>>,
    /// What it stores under each of the request's
    /// [`ShareRequest::sub_token_commitments`], in that order.
    pub sub_records: Vec<Option<Vec<u8>>>,
    /// The token's check, once made.
    pub token: Option<Result<CheckedToken, LoginError>>,
    /// The key, once looked up.
    pub key: Option<KeyFacts>,
    /// For each of the token's identities, once its nullifier was inserted
    /// (where none was): `None` if this reveal's was stored, or the one
    /// stored before.
    pub nullifiers: Option<Vec<Option<Vec<u8>>>>,
    /// The signature rule's verdict on the facts above (a few ECDSA
    /// verifications), worked out once however often [`decide`] runs.
    signatures: OnceCell<Result<(), LoginError>>,
}

impl<'a> RevealFacts<'a> {
    /// What a node knows when `request` arrives: its verifier's
    /// configuration, the network and the signatures it needs, its clock
    /// and signature policy, and what it stores under the token's
    /// commitment (`record`) and each sub-token's (`sub_records`, in the
    /// order of [`ShareRequest::sub_token_commitments`]).
    #[allow(clippy::too_many_arguments, reason = "every fact a node has before it asks anything")]
    pub fn new(
        request: &'a ShareRequest,
        config: &'a VerifierConfig,
        nodes: &'a [NodeKey],
        required: usize,
        now: u64,
        policy: SignaturePolicy,
        record: Option<Vec<u8>>,
        sub_records: Vec<Option<Vec<u8>>>,
    ) -> Self {
        Self {
            request,
            config,
            nodes,
            required,
            now,
            policy,
            record,
            sub_records,
            token: None,
            key: None,
            nullifiers: None,
            signatures: OnceCell::new(),
        }
    }
}

/// What the node must do next.
#[derive(Debug)]
pub enum RevealStep {
    /// Check the token (fill in [`RevealFacts::token`]).
    CheckToken,
    /// Look up the pair's key and this node's share (fill in
    /// [`RevealFacts::key`]).
    LookUpKey,
    /// Insert these nullifiers where none is, durably, and fill in
    /// [`RevealFacts::nullifiers`] with what the store held.
    RecordNullifiers(Vec<RecordWrite>),
    /// Serve the share.
    Grant(Box<Grant>),
}

/// A share to serve: encrypted to `recipient`, the temporary key this node
/// recorded for the commitment, never one from the request.
pub struct Grant {
    /// The key's index.
    pub key_index: u64,
    /// The key.
    pub public_key: PublicKey,
    /// This node's share of it, checked against its public share.
    pub share: Scalar,
    /// Who may decrypt it.
    pub recipient: PublicKey,
}

impl std::fmt::Debug for Grant {
    // The share is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("key_index", &self.key_index).finish_non_exhaustive()
    }
}

fn internal(error: impl std::fmt::Display) -> LoginError {
    LoginError::Internal(error.to_string())
}

/// The reveal decision; see the module's documentation. Checks, in order:
/// 1. the request's shape fits the verifier (aggregate, script or neither), and
///    a script login carries only the evidence its verifier takes;
/// 2. this node recorded the token's commitment, for this verifier, as a
///    login of its own (not as a sub-token of an aggregate), and for an
///    aggregate, exactly the sub-tokens presented, each recorded as a
///    sub-token of this login;
/// 3. at least `required` distinct nodes signed, recently, this commitment
///    for the temporary key this node recorded;
/// 4. the token passes its verifier, names the request's user, and stops
///    being acceptable before the record may be forgotten;
/// 5. the pair has a key and this node's share of it matches its public
///    share on the ledger;
/// 6. every identity of the token (whatever its spelling) is nullified for
///    this commitment and no other.
pub fn decide(facts: &RevealFacts<'_>) -> Result<RevealStep, LoginError> {
    let request = facts.request;
    let verifier = request.verifier.as_str();
    let aggregate_verifier = facts.config.takes_sub_tokens();
    let script_verifier = matches!(facts.config, VerifierConfig::Script(_));
    let evidence = request.aggregate.as_ref().map(|login| login.evidence.is_some());
    match (aggregate_verifier, script_verifier, evidence) {
        (true, true, Some(true)) | (true, false, Some(false)) | (false, _, None) => {}
        (true, true, _) => {
            return Err(LoginError::InvalidParams(format!(
                "verifier {verifier} is a script verifier: send `verify_params`, `sub_verifier_ids` and `script_params` (the evidence, `{{}}` if none)"
            )));
        }
        (true, false, _) => {
            return Err(LoginError::InvalidParams(format!(
                "verifier {verifier} is an aggregate verifier: send `verify_params` and `sub_verifier_ids`, and no `script_params`"
            )));
        }
        (false, _, Some(_)) => {
            return Err(LoginError::InvalidParams(format!(
                "verifier {verifier} is a {} verifier: send no `verify_params` or `sub_verifier_ids`",
                facts.config.kind()
            )));
        }
    }

    // A script verifier reads only the evidence its owner declared.
    if let (VerifierConfig::Script(script), Some(login)) = (facts.config, &request.aggregate)
        && let Some(field) =
            login.evidence.iter().flat_map(|evidence| evidence.keys()).find(|field| !script.evidence.contains(*field))
    {
        return Err(LoginError::InvalidParams(format!(
            "verifier {verifier} takes no evidence field {field:?} (its configuration's `evidence` lists what it takes)"
        )));
    }

    // 2. The records: the commitment's, and each sub-token's.
    let record = match facts.record.as_deref().map(LoginRecord::decode).transpose()? {
        None => return Err(LoginError::NoCommitment),
        Some(LoginRecord::SubToken(_)) => {
            return Err(LoginError::TokenUsed("it was committed as a sub-token of an aggregate login"));
        }
        Some(LoginRecord::Commitment(record)) => record,
    };
    if record.verifier != verifier {
        return Err(LoginError::TokenUsed("it was committed for another verifier"));
    }
    let commitment_hex = hex::encode(request.commitment);
    let presented: Vec<String> = request.sub_token_commitments().iter().map(hex::encode).collect();
    if presented != record.sub_tokens {
        return Err(LoginError::CommitmentMismatch(if aggregate_verifier {
            "the sub-tokens are not exactly those this login committed to in `sub_token_commitments`".to_owned()
        } else {
            "this commitment was made for an aggregate login".to_owned()
        }));
    }
    if facts.sub_records.len() != presented.len() {
        return Err(internal("the node gathered the records of other sub-tokens than the request's"));
    }
    for stored in &facts.sub_records {
        match stored.as_deref().map(LoginRecord::decode).transpose()? {
            Some(LoginRecord::SubToken(sub))
                if sub.aggregate == commitment_hex
                    && sub.verifier == verifier
                    && sub.temp_public == record.temp_public => {}
            Some(_) => return Err(LoginError::TokenUsed("a sub-token is committed for another login")),
            None => return Err(LoginError::NoCommitment),
        }
    }

    // 3. The signatures, on the key this node recorded.
    let recipient = record.temp_public()?;
    facts
        .signatures
        .get_or_init(|| {
            request.check_node_signatures(facts.nodes, &recipient, facts.required, facts.now, facts.policy).map(|_| ())
        })
        .clone()?;

    // 4. The token.
    let token = match &facts.token {
        None => return Ok(RevealStep::CheckToken),
        Some(Err(refused)) => return Err(refused.clone()),
        Some(Ok(token)) => token,
    };
    if token.verifier_id != request.verifier_id.as_str() {
        return Err(LoginError::WrongUser);
    }
    if token.issued_at.saturating_add(facts.config.acceptance_window_secs()) > record.expires_at {
        return Err(LoginError::OutlivesCommitment);
    }
    if token.identities.is_empty() {
        return Err(internal("a checked token without an identity"));
    }

    // 5. The key and this node's share.
    let (key_index, public_key, share) = match &facts.key {
        None => return Ok(RevealStep::LookUpKey),
        Some(KeyFacts::NotAssigned) => return Err(LoginError::NotAssigned),
        Some(KeyFacts::Assigned { share: None, key_index, .. }) => {
            return Err(LoginError::Unavailable(format!(
                "this node holds no share of key {key_index} (it missed that DKG batch); the other nodes do"
            )));
        }
        Some(KeyFacts::Assigned { key_index, public_key, own_public_share, share: Some(share) }) => {
            let share = scalar_from_bytes(share.as_slice()).map_err(internal)?;
            // Never hand out a share that does not match the ledger.
            if point_to_bytes(&Point::mul_by_generator(&share)).as_slice() != own_public_share.as_slice() {
                return Err(internal(format!("this node's share of key {key_index} does not match its public share")));
            }
            (*key_index, *public_key, share)
        }
    };

    // 6. The nullifiers.
    let Some(nullifiers) = &facts.nullifiers else {
        let writes =
            token.identities.iter().map(|identity| NullifierRecord::write(identity, &request.commitment, facts.now));
        return Ok(RevealStep::RecordNullifiers(writes.collect()));
    };
    if nullifiers.len() != token.identities.len() {
        return Err(internal("the node recorded other nullifiers than the token's"));
    }
    for stored in nullifiers.iter().flatten() {
        if !NullifierRecord::decode(stored)?.serves(&request.commitment) {
            return Err(LoginError::TokenUsed("it was revealed for another login, possibly in another spelling"));
        }
    }
    Ok(RevealStep::Grant(Box::new(Grant { key_index, public_key, share, recipient })))
}
