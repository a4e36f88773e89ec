//! `ShareRequest`: parsing, and the rule on the node signatures it carries.
//!
//! A node answers a reveal only if at least [`required_signatures`]
//! distinct nodes of the network signed, recently, this token's commitment
//! for this verifier and the temporary key this node recorded itself. The
//! client does not check the signatures it forwards, so an entry may be
//! anything a faulty node answered: `null`, garbage, a copy of another
//! node's signature, a signature on another key. Such entries do not count
//! and do not fail the request on their own; the request fails only when
//! too few entries count, and the error says why each other entry did not.

use quorumkey_crypto::group::{PublicKey, public_key_from_xy_hex};
use quorumkey_crypto::hash::{keccak256, token_commitment};
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_ledger::{VerifierId, VerifierName};
use serde_json::{Map, Value};

use crate::commitment::SignedData;
use crate::lookup::{verifier_id, verifier_name};
use crate::{LoginError, kind_of, object, quote, string_field};

/// Longest id token accepted (as the verifiers' limit).
pub const MAX_ID_TOKEN_LEN: usize = 16 * 1024;
/// Most sub-tokens in an aggregate login.
pub const MAX_SUB_TOKENS: usize = 8;
/// Separator of an aggregate's sorted sub-tokens before hashing (ASCII
/// 0x1D, as Torus' customauth joins them).
pub const SUB_TOKEN_SEPARATOR: char = '\u{1d}';
/// What separates a script login's sub-tokens from its evidence in the
/// text its `idtoken` hashes (0x1E).
pub const EVIDENCE_SEPARATOR: char = '\u{1e}';
pub use quorumkey_verifier::config::{MAX_EVIDENCE_FIELDS, MAX_EVIDENCE_NAME_LEN};
/// Most evidence bytes of a script login (names and values).
pub const MAX_EVIDENCE_LEN: usize = 32 * 1024;

/// How many node signatures a reveal needs in a network of `nodes` with
/// threshold `threshold`: ⌈(n + t) / 2⌉, so that any two sets of that many
/// nodes share at least `t` nodes. Up to `t − 1` nodes may sign anything,
/// even one commitment for two temporary keys; every other node signs a
/// commitment for one key only. If the user's key gathered this many
/// signatures, any other key's signers share `t` nodes with the user's, at
/// least one of them honest: no second key can gather as many, so no node
/// that follows this rule serves anyone but the user (`docs/api.md`).
pub fn required_signatures(nodes: usize, threshold: usize) -> usize {
    (nodes + threshold).div_ceil(2).clamp(threshold.min(nodes), nodes)
}

/// How old (and how far in the future) a commitment signature may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// Oldest accepted signature, in seconds.
    pub max_age_secs: u64,
    /// Latest accepted signature time ahead of this node's clock.
    pub max_future_secs: u64,
}

impl Default for SignaturePolicy {
    /// Ten minutes old, one minute ahead: a client reveals seconds after it
    /// commits.
    fn default() -> Self {
        Self { max_age_secs: 600, max_future_secs: 60 }
    }
}

/// A node of the network: its index and secp256k1 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKey {
    /// Index from 1.
    pub index: u16,
    /// Its key.
    pub public: PublicKey,
}

/// The node set in force as the login rules read it: every node's index
/// and secp256k1 key, the threshold and the reveal quorum of that set, and
/// this node's own index in it (by its key: indexes are positions in the
/// set in force, so they change with the set). A node builds it once per
/// epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSetKeys {
    /// The epoch in force.
    pub epoch: u64,
    /// Its nodes, node `j` at position `j - 1`.
    pub nodes: Vec<NodeKey>,
    /// Shares needed to rebuild a key in this set.
    pub threshold: usize,
    /// Signatures a reveal needs in this set ([`required_signatures`]).
    pub required: usize,
    /// This node's index in the set; `None` if it is not in it.
    pub own_index: Option<u16>,
}

impl NodeSetKeys {
    /// The keys of `set`, for the node whose secp256k1 key is `own_key`.
    /// A key that does not parse (never, in a set the ledger accepted) is
    /// an internal error.
    pub fn new(set: &quorumkey_ledger::NodeSet, own_key: &PublicKey) -> Result<Self, LoginError> {
        let nodes = set
            .nodes
            .iter()
            .zip(1u16..)
            .map(|(node, index)| {
                quorumkey_crypto::group::public_key_from_sec1(&node.secp256k1_key)
                    .map(|public| NodeKey { index, public })
                    .map_err(|e| LoginError::Internal(format!("node {index} of epoch {}: {e}", set.epoch)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let threshold = set.threshold();
        Ok(Self {
            epoch: set.epoch,
            own_index: nodes.iter().find(|node| &node.public == own_key).map(|node| node.index),
            required: required_signatures(nodes.len(), threshold),
            nodes,
            threshold,
        })
    }

    /// This node's index in the set, or the refusal of a node that is not
    /// in it: it must sign no commitment and serve no share under an
    /// index it does not have.
    pub fn member(&self) -> Result<u16, LoginError> {
        self.own_index.ok_or(LoginError::NotInNodeSet { epoch: self.epoch })
    }
}

/// The sub-tokens of an aggregate or script login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateLogin {
    /// The sub-verifiers, in request order.
    pub sub_verifier_ids: Vec<String>,
    /// Their tokens, in the same order.
    pub tokens: Vec<String>,
    /// A script login's evidence (`script_params`: field name to text),
    /// bound by its `idtoken` ([`script_id_token`]); `None` for an
    /// aggregate login.
    pub evidence: Option<std::collections::BTreeMap<String, String>>,
}

/// A parsed `ShareRequest` (one login).
#[derive(Clone, PartialEq, Eq)]
pub struct ShareRequest {
    /// The verifier.
    pub verifier: VerifierName,
    /// The user the request claims.
    pub verifier_id: VerifierId,
    /// The revealed token (for an aggregate: the hash that binds the
    /// sub-tokens).
    pub id_token: String,
    /// `keccak256(id_token)`.
    pub commitment: [u8; 32],
    /// The node signatures, as sent.
    pub node_signatures: Vec<Value>,
    /// With an aggregate verifier: the sub-tokens.
    pub aggregate: Option<AggregateLogin>,
}

impl std::fmt::Debug for ShareRequest {
    // Tokens are credentials: never in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareRequest")
            .field("verifier", &self.verifier)
            .field("commitment", &hex::encode(self.commitment))
            .field("node_signatures", &self.node_signatures.len())
            .finish_non_exhaustive()
    }
}

fn token_field(object: &Map<String, Value>, name: &'static str) -> Result<String, LoginError> {
    let token = string_field(object, name)?;
    if token.is_empty() || token.len() > MAX_ID_TOKEN_LEN {
        return Err(LoginError::InvalidParams(format!(
            "`{name}` must have 1 to {MAX_ID_TOKEN_LEN} bytes, got {}",
            token.len()
        )));
    }
    Ok(token.to_owned())
}

fn array<'a>(object: &'a Map<String, Value>, name: &'static str, max: usize) -> Result<&'a [Value], LoginError> {
    match object.get(name) {
        Some(Value::Array(items)) if items.len() <= max => Ok(items),
        Some(Value::Array(items)) => {
            Err(LoginError::InvalidParams(format!("`{name}` has {} entries, at most {max} allowed", items.len())))
        }
        Some(other) => Err(LoginError::InvalidParams(format!("`{name}` must be an array, not {}", kind_of(other)))),
        None => Err(LoginError::InvalidParams(format!("`{name}` is missing"))),
    }
}

/// The token an aggregate login commits to: keccak256 of its sub-tokens,
/// sorted and joined with 0x1D, as 64 hex digits (what Torus' customauth
/// sends as `idtoken`).
pub fn aggregate_id_token(sub_tokens: &[String]) -> String {
    let mut sorted: Vec<&str> = sub_tokens.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    hex::encode(keccak256(sorted.join(&SUB_TOKEN_SEPARATOR.to_string()).as_bytes()))
}

/// The evidence's one spelling: a JSON object of strings, keys sorted, no
/// blanks (serde_json's escaping), whatever spelling the client sent.
pub fn canonical_evidence(evidence: &std::collections::BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(evidence).unwrap_or_default()
}

/// A script login's `idtoken`: keccak256 of its sub-tokens sorted and
/// joined with 0x1D, then 0x1E and the evidence in its one spelling, as 64
/// lower-case hex digits. Committing to it commits to every sub-token and
/// every piece of evidence: a node or proxy that changes either between
/// the commitment and the reveal changes the commitment, which then has
/// no quorum of signatures.
pub fn script_id_token(sub_tokens: &[String], evidence: &std::collections::BTreeMap<String, String>) -> String {
    let mut sorted: Vec<&str> = sub_tokens.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let text = format!(
        "{}{EVIDENCE_SEPARATOR}{}",
        sorted.join(&SUB_TOKEN_SEPARATOR.to_string()),
        canonical_evidence(evidence)
    );
    hex::encode(keccak256(text.as_bytes()))
}

/// Parses `script_params`: at most [`MAX_EVIDENCE_FIELDS`] fields of text,
/// names of 1 to [`MAX_EVIDENCE_NAME_LEN`] bytes, at most
/// [`MAX_EVIDENCE_LEN`] bytes in all.
fn parse_evidence(value: &Value) -> Result<std::collections::BTreeMap<String, String>, LoginError> {
    let invalid = |reason: String| LoginError::InvalidParams(format!("`script_params` {reason}"));
    let Value::Object(fields) = value else { return Err(invalid("must be an object".to_owned())) };
    if fields.len() > MAX_EVIDENCE_FIELDS {
        return Err(invalid(format!("has {} fields; at most {MAX_EVIDENCE_FIELDS}", fields.len())));
    }
    let mut evidence = std::collections::BTreeMap::new();
    let mut total = 0usize;
    for (name, value) in fields {
        if name.is_empty() || name.len() > MAX_EVIDENCE_NAME_LEN {
            return Err(invalid(format!("field names have 1 to {MAX_EVIDENCE_NAME_LEN} bytes")));
        }
        let Value::String(text) = value else {
            return Err(invalid(format!("field {name:?} must be a string")));
        };
        total = total.saturating_add(name.len() + text.len());
        if total > MAX_EVIDENCE_LEN {
            return Err(invalid(format!("holds more than {MAX_EVIDENCE_LEN} bytes")));
        }
        evidence.insert(name.clone(), text.clone());
    }
    Ok(evidence)
}

impl ShareRequest {
    /// Parses the params: `encrypted` absent or `"yes"`; `item` with
    /// exactly one login holding `idtoken`, `verifieridentifier`,
    /// `verifier_id`, `nodesignatures` (at most `max_signatures` entries)
    /// and, for an aggregate, `verify_params` and `sub_verifier_ids`; for a
    /// script login, those and `script_params` too. Other fields are
    /// ignored.
    pub fn parse(params: &Value, max_signatures: usize) -> Result<Self, LoginError> {
        let params = object(params, "params")?;
        match params.get("encrypted") {
            None => {}
            Some(Value::String(yes)) if yes == "yes" => {}
            Some(_) => {
                return Err(LoginError::InvalidParams(
                    "`encrypted` must be \"yes\": this node only sends encrypted shares".to_owned(),
                ));
            }
        }
        let items = array(params, "item", 1)?;
        let [item] = items else {
            return Err(LoginError::InvalidParams("`item` must hold exactly one login".to_owned()));
        };
        let item = object(item, "`item[0]`")?;
        let id_token = token_field(item, "idtoken")?;
        let verifier = verifier_name(string_field(item, "verifieridentifier")?, "verifieridentifier")?;
        let claimed = verifier_id(string_field(item, "verifier_id")?)?;
        let node_signatures = array(item, "nodesignatures", max_signatures)?.to_vec();
        let aggregate = match (item.get("verify_params"), item.get("sub_verifier_ids"), item.get("script_params")) {
            (None, None, None) => None,
            (Some(_), Some(_), evidence) => Some(Self::parse_aggregate(item, &claimed, &id_token, evidence)?),
            _ => {
                return Err(LoginError::InvalidParams(
                    "an aggregate or script login needs both `verify_params` and `sub_verifier_ids`".to_owned(),
                ));
            }
        };
        Ok(Self {
            commitment: token_commitment(&id_token),
            verifier,
            verifier_id: claimed,
            id_token,
            node_signatures,
            aggregate,
        })
    }

    fn parse_aggregate(
        item: &Map<String, Value>,
        claimed: &VerifierId,
        id_token: &str,
        evidence: Option<&Value>,
    ) -> Result<AggregateLogin, LoginError> {
        let evidence = evidence.map(parse_evidence).transpose()?;
        let params = array(item, "verify_params", MAX_SUB_TOKENS)?;
        let ids = array(item, "sub_verifier_ids", MAX_SUB_TOKENS)?;
        if params.is_empty() || params.len() != ids.len() {
            return Err(LoginError::InvalidParams(format!(
                "`verify_params` ({}) and `sub_verifier_ids` ({}) must be non-empty and of the same length",
                params.len(),
                ids.len()
            )));
        }
        let mut login =
            AggregateLogin { sub_verifier_ids: Vec::with_capacity(ids.len()), tokens: Vec::new(), evidence: None };
        for (position, (param, id)) in params.iter().zip(ids).enumerate() {
            let param = object(param, "an entry of `verify_params`")?;
            // In a script login the sub-tokens may name other users (an
            // email, a wallet): the script names the login's.
            let sub_id = string_field(param, "verifier_id")?;
            if evidence.is_none() && sub_id != claimed.as_str() {
                return Err(LoginError::InvalidParams(format!(
                    "`verify_params[{position}].verifier_id` differs from the login's `verifier_id`"
                )));
            }
            login.tokens.push(token_field(param, "idtoken")?);
            match id {
                Value::String(id) if !id.is_empty() && id.len() <= 64 => login.sub_verifier_ids.push(id.clone()),
                _ => {
                    return Err(LoginError::InvalidParams(format!(
                        "`sub_verifier_ids[{position}]` must be a string of 1 to 64 bytes"
                    )));
                }
            }
        }
        // Exactly as computed (lower-case hex): a token with two spellings
        // would have two commitments.
        match &evidence {
            None if aggregate_id_token(&login.tokens) != id_token => {
                return Err(LoginError::CommitmentMismatch(
                    "an aggregate's `idtoken` must be keccak256 of its sub-tokens, sorted and joined with 0x1D, in lower-case hex".to_owned(),
                ));
            }
            Some(evidence) if script_id_token(&login.tokens, evidence) != id_token => {
                return Err(LoginError::CommitmentMismatch(
                    "a script login's `idtoken` must be keccak256 of its sub-tokens, sorted and joined with 0x1D, then 0x1E and its `script_params` as sorted compact JSON, in lower-case hex: the evidence is not what was committed".to_owned(),
                ));
            }
            _ => {}
        }
        login.evidence = evidence;
        Ok(login)
    }

    /// An aggregate login's sub-token commitments (keccak256 of each
    /// sub-token, sorted, duplicates kept); empty for any other login.
    pub fn sub_token_commitments(&self) -> Vec<[u8; 32]> {
        let mut commitments: Vec<[u8; 32]> =
            self.aggregate.iter().flat_map(|login| login.tokens.iter().map(|token| token_commitment(token))).collect();
        commitments.sort_unstable();
        commitments
    }

    /// Checks the node signatures against `nodes` (the network), the
    /// temporary key this node recorded for the commitment, and the time
    /// `now`. Returns the indexes of the nodes whose signatures counted.
    /// Stops checking once `required` count.
    pub fn check_node_signatures(
        &self,
        nodes: &[NodeKey],
        recorded: &PublicKey,
        required: usize,
        now: u64,
        policy: SignaturePolicy,
    ) -> Result<Vec<u16>, LoginError> {
        let mut signers: Vec<u16> = Vec::with_capacity(required);
        let mut problems = Vec::new();
        let commitment = hex::encode(self.commitment);
        for (position, entry) in self.node_signatures.iter().enumerate() {
            if signers.len() >= required {
                break;
            }
            if entry.is_null() {
                continue;
            }
            match check_entry(entry, nodes, &commitment, self.verifier.as_str(), recorded, now, policy) {
                Ok(index) if signers.contains(&index) => {
                    problems.push(format!("entry {position}: a second signature from node {index}"));
                }
                Ok(index) => signers.push(index),
                Err(reason) => problems.push(format!("entry {position}: {reason}")),
            }
        }
        if signers.len() >= required {
            Ok(signers)
        } else {
            Err(LoginError::NotEnoughSignatures { valid: signers.len(), required, problems })
        }
    }
}

/// Longest `data` string of a commitment signature.
const MAX_DATA_LEN: usize = 512;

/// Why an entry does not count when its key is none of the nodes given.
const NOT_A_NODE: &str = "signed by a key that is not a node of this network";

/// Checks one node's answer to a `CommitmentRequest` as the nodes will in
/// a reveal, except for its age (each node judges that by its own clock):
/// `node`'s signature over `commitment` (hex), `verifier` and
/// `temp_public`. A client counts only such answers, so that a faulty
/// node's signature cannot make it reveal with fewer usable signatures
/// than the nodes need.
pub fn check_commitment_signature(
    entry: &Value,
    node: &NodeKey,
    commitment: &str,
    verifier: &str,
    temp_public: &PublicKey,
) -> Result<(), String> {
    let any_time = SignaturePolicy { max_age_secs: u64::MAX, max_future_secs: u64::MAX };
    check_entry(entry, std::slice::from_ref(node), commitment, verifier, temp_public, 0, any_time).map(|_| ()).map_err(
        |reason| match reason.as_str() {
            NOT_A_NODE => format!("not signed by node {}'s key", node.index),
            _ => reason,
        },
    )
}

fn check_entry(
    entry: &Value,
    nodes: &[NodeKey],
    commitment: &str,
    verifier: &str,
    recorded: &PublicKey,
    now: u64,
    policy: SignaturePolicy,
) -> Result<u16, String> {
    let entry = entry.as_object().ok_or_else(|| format!("{}, not a signed commitment", kind_of(entry)))?;
    let field = |name: &'static str, max: usize| match entry.get(name) {
        Some(Value::String(value)) if value.len() <= max => Ok(value.as_str()),
        Some(Value::String(_)) => Err(format!("`{name}` is longer than {max} bytes")),
        Some(other) => Err(format!("`{name}` is {}, not a string", kind_of(other))),
        None => Err(format!("`{name}` is missing")),
    };
    let node_key = public_key_from_xy_hex(field("nodepubx", 64)?, field("nodepuby", 64)?)
        .map_err(|e| format!("`nodepubx`/`nodepuby`: {e}"))?;
    let node = nodes.iter().find(|node| node.public == node_key).ok_or(NOT_A_NODE)?;
    let data = field("data", MAX_DATA_LEN)?;
    let signed = SignedData::parse(data)?;
    if !signed.commitment.eq_ignore_ascii_case(commitment) {
        return Err("signs another token commitment".to_owned());
    }
    if signed.verifier != verifier {
        return Err(format!("signs verifier {:?}, not this one", quote(signed.verifier)));
    }
    let temp = public_key_from_xy_hex(signed.temp_x, signed.temp_y).map_err(|e| format!("temporary key: {e}"))?;
    if &temp != recorded {
        return Err("signs another temporary key than the one this node recorded".to_owned());
    }
    if now.saturating_sub(signed.timestamp) > policy.max_age_secs {
        return Err(format!("signed {} s ago, over the limit of {} s", now - signed.timestamp, policy.max_age_secs));
    }
    if signed.timestamp.saturating_sub(now) > policy.max_future_secs {
        return Err(format!("dated {} s in the future", signed.timestamp - now));
    }
    let signature =
        RecoverableSignature::from_torus_hex(field("signature", 130)?).map_err(|e| format!("`signature`: {e}"))?;
    signature
        .verify_keccak(&node.public, data.as_bytes())
        .map_err(|_| format!("the signature is not node {}'s signature of `data`", node.index))?;
    Ok(node.index)
}
