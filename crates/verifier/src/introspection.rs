//! Checking what an introspection endpoint answered about an opaque token
//! (the node makes the call; this is the pure part): the user id and the
//! issue time at the configured JSON pointers, and the freshness window.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::canonical::TokenIdentity;
use crate::config::IntrospectionConfig;
use crate::error::TokenError;
use crate::jwt::{normalize_verifier_id, unix_number};

/// Largest introspection answer read.
pub const MAX_ANSWER_LEN: usize = 64 * 1024;

/// What a valid introspection answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntrospectedToken {
    /// The user, from the configured pointer (normalized as configured).
    pub verifier_id: String,
    /// When the token was issued (Unix seconds).
    pub issued_at: u64,
    /// When it stops being accepted here: `issued_at + freshness_secs`.
    pub expires_at: u64,
    /// What the token is, whatever its spelling: the endpoint, the user id
    /// it answered (as answered) and the issue time.
    pub identity: TokenIdentity,
    /// The answer's fields, if it is an object (what a verifier script
    /// reads).
    pub claims: serde_json::Map<String, Value>,
}

/// Checks an opaque token's form before it is sent anywhere: 1 to
/// [`crate::jwt::MAX_TOKEN_LEN`] bytes of RFC 6750's `b64token` (letters,
/// digits, `-._~+/`, then `=` padding only at the end). Nothing else can
/// follow `Bearer ` in a header, and refusing it leaves a provider no
/// spelling to tolerate (surrounding blanks, a line break) that would make
/// one token two.
pub fn check_opaque_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() || token.len() > crate::jwt::MAX_TOKEN_LEN {
        return Err(TokenError::InvalidClaim { claim: "token".to_owned(), reason: "empty or too long" });
    }
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
    {
        return Err(TokenError::NonCanonical {
            part: "token",
            reason: "an opaque token is RFC 6750 b64token characters (letters, digits, -._~+/, then = at the end only)",
        });
    }
    Ok(())
}

fn unix_seconds(pointer: &str, value: &Value) -> Result<u64, TokenError> {
    let invalid = |reason| TokenError::InvalidClaim { claim: pointer.to_owned(), reason };
    match value {
        Value::Number(number) => unix_number(number).ok_or(invalid("not a non-negative number")),
        Value::String(text) => {
            let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| invalid("not Unix seconds or RFC 3339"))?;
            u64::try_from(at.unix_timestamp()).map_err(|_| invalid("before 1970"))
        }
        _ => Err(invalid("not Unix seconds or RFC 3339")),
    }
}

/// Checks an introspection endpoint's `answer` at Unix time `now`.
pub fn check_introspection(
    config: &IntrospectionConfig,
    answer: &[u8],
    now: u64,
) -> Result<IntrospectedToken, TokenError> {
    if answer.len() > MAX_ANSWER_LEN {
        return Err(TokenError::Oversized { len: answer.len(), max: MAX_ANSWER_LEN });
    }
    let answer: Value =
        serde_json::from_slice(answer).map_err(|_| TokenError::Json { part: "introspection answer" })?;
    let id = match answer.pointer(&config.user_id_pointer) {
        Some(Value::String(id)) => id.clone(),
        // Discord and others send numeric ids as strings, some as numbers.
        Some(Value::Number(number)) if number.is_u64() || number.is_i64() => number.to_string(),
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: config.user_id_pointer.clone(),
                reason: "not a string or integer",
            });
        }
        None => return Err(TokenError::MissingClaim(config.user_id_pointer.clone())),
    };
    let issued_at = match answer.pointer(&config.issued_at_pointer) {
        Some(value) => unix_seconds(&config.issued_at_pointer, value)?,
        None => return Err(TokenError::MissingClaim(config.issued_at_pointer.clone())),
    };
    if issued_at > now.saturating_add(crate::config::DEFAULT_CLOCK_SKEW_SECS) {
        return Err(TokenError::NotYetValid {
            claim: "issued at",
            at: issued_at,
            now,
            skew: crate::config::DEFAULT_CLOCK_SKEW_SECS,
        });
    }
    if now.saturating_sub(issued_at) > config.freshness_secs {
        return Err(TokenError::TooOld { iat: issued_at, max_age: config.freshness_secs, now });
    }
    let identity = TokenIdentity::introspection(&config.url, &id, issued_at);
    let verifier_id = normalize_verifier_id(&config.user_id_pointer, id, config.lowercase_verifier_id)?;
    let claims = match answer {
        Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    Ok(IntrospectedToken {
        verifier_id,
        issued_at,
        expires_at: issued_at.saturating_add(config.freshness_secs),
        identity,
        claims,
    })
}
