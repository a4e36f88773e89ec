//! The aggregate rule: a login presents one token per sub-verifier it
//! names (the public client's `verify_params` and `sub_verifier_ids`); every
//! token must pass its sub-verifier (checked by the caller) and all must
//! name the same user, which must be the `verifier_id` the request claims.

use std::collections::BTreeSet;

use crate::config::AggregateConfig;
use crate::error::quote;

/// Most tokens one aggregate login may present.
pub const MAX_SUB_TOKENS: usize = crate::config::MAX_SUB_VERIFIERS;

/// Why an aggregate login is refused (before or after its tokens are
/// checked).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregateError {
    /// No tokens, or more than the configuration has sub-verifiers.
    #[error("an aggregate login presents 1 to {max} tokens, this one {count}")]
    Count {
        /// How many.
        count: usize,
        /// The most.
        max: usize,
    },
    /// `verify_params` and `sub_verifier_ids` differ in length.
    #[error("verify_params has {params} entries but sub_verifier_ids {ids}")]
    Mismatched {
        /// `verify_params` entries.
        params: usize,
        /// `sub_verifier_ids` entries.
        ids: usize,
    },
    /// A sub-verifier the configuration does not have.
    #[error("unknown sub-verifier {0}")]
    UnknownSubVerifier(String),
    /// One sub-verifier named twice.
    #[error("sub-verifier {0} is named twice")]
    Duplicate(String),
    /// The configuration requires every sub-verifier.
    #[error("this verifier requires a token for every sub-verifier; {0} is missing")]
    Missing(String),
    /// The tokens name different users, or not the one claimed.
    #[error("sub-verifier {sub_verifier} names user {got}, not {expected}")]
    Disagree {
        /// The sub-verifier.
        sub_verifier: String,
        /// The verifier_id its token yields.
        got: String,
        /// The verifier_id the request claims.
        expected: String,
    },
}

/// Checks the shape of an aggregate login before any token is verified:
/// `sub_verifier_ids[i]` names the sub-verifier of `verify_params[i]`.
pub fn check_aggregate_request(
    config: &AggregateConfig,
    sub_verifier_ids: &[String],
    verify_params_len: usize,
) -> Result<(), AggregateError> {
    check_sub_token_request(&config.sub_verifiers, config.require_all, sub_verifier_ids, verify_params_len)
}

/// The aggregate rule's request checks, for any verifier that takes
/// sub-tokens (an aggregate's or a script's sub-verifiers and presence
/// rule).
pub fn check_sub_token_request(
    sub_verifiers: &std::collections::BTreeMap<String, crate::config::SubVerifierConfig>,
    require_all: bool,
    sub_verifier_ids: &[String],
    verify_params_len: usize,
) -> Result<(), AggregateError> {
    if verify_params_len != sub_verifier_ids.len() {
        return Err(AggregateError::Mismatched { params: verify_params_len, ids: sub_verifier_ids.len() });
    }
    let max = sub_verifiers.len().min(MAX_SUB_TOKENS);
    if sub_verifier_ids.is_empty() || sub_verifier_ids.len() > max {
        return Err(AggregateError::Count { count: sub_verifier_ids.len(), max });
    }
    let mut seen = BTreeSet::new();
    for id in sub_verifier_ids {
        if !sub_verifiers.contains_key(id) {
            return Err(AggregateError::UnknownSubVerifier(quote(id)));
        }
        if !seen.insert(id.as_str()) {
            return Err(AggregateError::Duplicate(quote(id)));
        }
    }
    if require_all && let Some(missing) = sub_verifiers.keys().find(|name| !seen.contains(name.as_str())) {
        return Err(AggregateError::Missing(missing.clone()));
    }
    Ok(())
}

/// After every token passed: all must yield `claimed` (the request's
/// `verifier_id`), which is then the login's user.
pub fn check_aggregate_agreement(claimed: &str, yielded: &[(&str, &str)]) -> Result<(), AggregateError> {
    for (sub_verifier, got) in yielded {
        if *got != claimed {
            return Err(AggregateError::Disagree {
                sub_verifier: (*sub_verifier).to_owned(),
                got: quote(got),
                expected: quote(claimed),
            });
        }
    }
    Ok(())
}
