//! Checking one JWT against a [`JwtConfig`] and a [`KeySet`], at a given
//! time: pure (the caller fetches keys and reads the clock).
//!
//! Order of checks: size, shape, header (the algorithm must be a public-key
//! one and equal to its key's), the signature's form (one spelling per
//! token: see [`crate::canonical`]), the signature, then claims. Nothing in
//! the payload is trusted before the signature verifies.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::canonical::{TokenIdentity, check_signature_form, decode_segment};
use crate::config::JwtConfig;
use crate::error::{TokenError, quote};
use crate::jwks::KeySet;

/// Longest token accepted (ID tokens are 1 to 2 KB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest verifier_id a claim may yield.
pub const MAX_VERIFIER_ID_LEN: usize = 256;

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The user, from the configured claim (normalized as configured).
    pub verifier_id: String,
    /// `iat`.
    pub issued_at: u64,
    /// `exp`: after this the token is no use, so a record that it was used
    /// may be forgotten.
    pub expires_at: u64,
    /// What the token is, whatever its spelling: its nullifier's key.
    pub identity: TokenIdentity,
    /// Its payload, checked (what a verifier script reads).
    pub claims: Map<String, Value>,
}

/// A token's header fields that decide which key checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHeader {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`, if any.
    pub kid: Option<String>,
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signed: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Oversized { len: token.len(), max: MAX_TOKEN_LEN });
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(TokenError::NotAJwt);
    };
    let signed = &token[..header.len() + 1 + payload.len()];
    Ok(Parts { header, payload, signature, signed })
}

fn json_object(part: &'static str, encoded: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = decode_segment(part, encoded)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Json { part }),
    }
}

/// The header of a token (for finding its key before checking it).
pub fn token_header(token: &str) -> Result<TokenHeader, TokenError> {
    header_of(&split(token)?)
}

fn header_of(parts: &Parts<'_>) -> Result<TokenHeader, TokenError> {
    let header = json_object("header", parts.header)?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(_) => return Err(TokenError::InvalidClaim { claim: "alg".to_owned(), reason: "not a string" }),
        None => return Err(TokenError::MissingClaim("alg (header)".to_owned())),
    };
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(TokenError::InvalidClaim { claim: "kid".to_owned(), reason: "not a string" }),
    };
    Ok(TokenHeader { alg, kid })
}

impl TokenHeader {
    /// The public-key algorithm the header names; `none`, HMAC and others
    /// are refused.
    pub fn algorithm(&self) -> Result<Algorithm, TokenError> {
        public_key_algorithm(&self.alg)
    }
}

fn public_key_algorithm(alg: &str) -> Result<Algorithm, TokenError> {
    match alg {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        _ if alg.eq_ignore_ascii_case("none") => Err(TokenError::AlgNone),
        _ if alg.to_ascii_uppercase().starts_with("HS") => Err(TokenError::HmacRefused(quote(alg))),
        _ => Err(TokenError::UnsupportedAlgorithm(quote(alg))),
    }
}

/// Unix seconds from a JSON number: integral, or with a fractional part
/// (allowed by RFC 7519), which is dropped; `None` if negative.
pub(crate) fn unix_number(number: &serde_json::Number) -> Option<u64> {
    number.as_u64().or_else(|| number.as_f64().filter(|v| *v >= 0.0).map(|v| v as u64))
}

fn seconds(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, TokenError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(number)) => unix_number(number)
            .map(Some)
            .ok_or(TokenError::InvalidClaim { claim: claim.to_owned(), reason: "not a non-negative number" }),
        Some(_) => Err(TokenError::InvalidClaim { claim: claim.to_owned(), reason: "not a number" }),
    }
}

/// Checks `token` against `config` with `keys` at Unix time `now`.
pub fn verify_jwt(config: &JwtConfig, keys: &KeySet, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
    let parts = split(token)?;
    let header = header_of(&parts)?;
    let algorithm = public_key_algorithm(&header.alg)?;
    let key = keys
        .find(header.kid.as_deref())
        .ok_or_else(|| TokenError::UnknownKey { kid: header.kid.as_deref().map_or("<none>".to_owned(), quote) })?;
    if key.algorithm != algorithm {
        return Err(TokenError::AlgorithmMismatch { token: quote(&header.alg), key: format!("{:?}", key.algorithm) });
    }
    let signature = decode_segment("signature", parts.signature)?;
    check_signature_form(algorithm, &signature, key.rsa_modulus())?;
    match jsonwebtoken::crypto::verify(parts.signature, parts.signed.as_bytes(), key.decoding_key(), algorithm) {
        Ok(true) => {}
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Base64(_)) => {
            return Err(TokenError::Base64 { part: "signature" });
        }
        _ => return Err(TokenError::BadSignature),
    }
    let claims = json_object("payload", parts.payload)?;
    let checked = check_claims(config, &claims, now)?;
    Ok(VerifiedToken {
        verifier_id: checked.verifier_id,
        issued_at: checked.issued_at,
        expires_at: checked.expires_at,
        identity: TokenIdentity::jwt(parts.signed),
        claims,
    })
}

/// What the claims of a token say, once checked.
pub(crate) struct CheckedClaims {
    pub(crate) verifier_id: String,
    pub(crate) issued_at: u64,
    pub(crate) expires_at: u64,
}

/// The claim checks of a token whose signature verified.
pub(crate) fn check_claims(
    config: &JwtConfig,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<CheckedClaims, TokenError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == config.issuer => {}
        Some(Value::String(iss)) => {
            return Err(TokenError::WrongIssuer { expected: config.issuer.clone(), got: quote(iss) });
        }
        Some(_) => return Err(TokenError::InvalidClaim { claim: "iss".to_owned(), reason: "not a string" }),
        None => return Err(TokenError::MissingClaim("iss".to_owned())),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(TokenError::InvalidClaim { claim: "aud".to_owned(), reason: "not a string or list" }),
        None => return Err(TokenError::MissingClaim("aud".to_owned())),
    };
    if !audiences.iter().any(|aud| config.audiences.iter().any(|ours| ours == aud)) {
        return Err(TokenError::WrongAudience { got: quote(&audiences.join(",")) });
    }
    let skew = config.clock_skew_secs;
    let exp = seconds(claims, "exp")?.ok_or_else(|| TokenError::MissingClaim("exp".to_owned()))?;
    if now > exp.saturating_add(skew) {
        return Err(TokenError::Expired { exp, now, skew });
    }
    if let Some(nbf) = seconds(claims, "nbf")?
        && nbf > now.saturating_add(skew)
    {
        return Err(TokenError::NotYetValid { claim: "nbf", at: nbf, now, skew });
    }
    let iat = seconds(claims, "iat")?.ok_or_else(|| TokenError::MissingClaim("iat".to_owned()))?;
    if iat > now.saturating_add(skew) {
        return Err(TokenError::NotYetValid { claim: "iat", at: iat, now, skew });
    }
    if now.saturating_sub(iat) > config.max_token_age_secs.saturating_add(skew) {
        return Err(TokenError::TooOld { iat, max_age: config.max_token_age_secs, now });
    }
    for (claim, expected) in &config.required_claims {
        match claims.get(claim) {
            Some(value) if value == expected => {}
            Some(_) => return Err(TokenError::ClaimMismatch { claim: claim.clone(), expected: expected.to_string() }),
            None => return Err(TokenError::MissingClaim(claim.clone())),
        }
    }
    let verifier_id = match claims.get(&config.verifier_id_claim) {
        Some(Value::String(id)) => id.clone(),
        Some(_) => {
            return Err(TokenError::InvalidClaim { claim: config.verifier_id_claim.clone(), reason: "not a string" });
        }
        None => return Err(TokenError::MissingClaim(config.verifier_id_claim.clone())),
    };
    let verifier_id = normalize_verifier_id(&config.verifier_id_claim, verifier_id, config.lowercase_verifier_id)?;
    Ok(CheckedClaims { verifier_id, issued_at: iat, expires_at: exp })
}

/// A verifier_id as the ledger will key it: non-empty, bounded, no control
/// characters, lowercased if configured.
///
/// Lowercasing must not make two users one: `to_lowercase` maps U+212A
/// KELVIN SIGN to `k` and U+212B ANGSTROM SIGN to `å`, so "\u{212A}ate" and
/// "Kate" would share a key. A character is lowercased only when its
/// lowercase is one character whose uppercase is that character again (so
/// only the two cases of one letter meet); an id with any other character
/// that lowercasing would change is refused.
pub(crate) fn normalize_verifier_id(claim: &str, id: String, lowercase: bool) -> Result<String, TokenError> {
    // Lowercase first: it can lengthen UTF-8 (U+023A 'Ⱥ' is 2 bytes, its
    // lowercase 3), and the bound is on what the ledger keys.
    let id = if lowercase && id.len() <= 4 * MAX_VERIFIER_ID_LEN {
        lowercase_one_to_one(&id).ok_or_else(|| TokenError::InvalidClaim {
            claim: claim.to_owned(),
            reason: "has a character whose lowercase another character shares (such as U+212A KELVIN SIGN), so lowercasing it could merge two users",
        })?
    } else {
        id
    };
    if id.is_empty() || id.len() > MAX_VERIFIER_ID_LEN || id.chars().any(char::is_control) {
        return Err(TokenError::InvalidClaim {
            claim: claim.to_owned(),
            reason: "empty, too long or with control characters",
        });
    }
    Ok(id)
}

/// `id` lowercased character by character where that is one-to-one (see
/// [`normalize_verifier_id`]); `None` if a character's lowercase could be
/// another character's too.
fn lowercase_one_to_one(id: &str) -> Option<String> {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        let mut lower = c.to_lowercase();
        let (Some(l), None) = (lower.next(), lower.next()) else { return None };
        if l != c {
            let mut upper = l.to_uppercase();
            if (upper.next(), upper.next()) != (Some(c), None) {
                return None;
            }
        }
        out.push(l);
    }
    Some(out)
}
