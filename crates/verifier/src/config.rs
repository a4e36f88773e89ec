//! What a verifier's configuration says, as registered on the ledger: JSON
//! with every field named and checked, so that every node parses the same
//! bytes to the same rules (and refuses the same malformed ones).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::jwks::KeySet;

/// Longest string field (issuer, URL, claim name, audience, pointer).
pub const MAX_FIELD_LEN: usize = 512;
/// Most audiences (client ids) of one JWT verifier.
pub const MAX_AUDIENCES: usize = 32;
/// Most required claims of one JWT verifier.
pub const MAX_REQUIRED_CLAIMS: usize = 16;
/// Most sub-verifiers of an aggregate verifier.
pub const MAX_SUB_VERIFIERS: usize = 8;
/// Longest freshness window or token age a verifier may allow (one day).
/// Nodes keep every token's nullifier for the longest any configuration
/// could accept it ([`MAX_ACCEPTANCE_SECS`]), so this bounds how long they
/// keep login records.
pub const MAX_WINDOW_SECS: u64 = 24 * 3600;
/// Largest allowed clock skew (ten minutes).
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;
/// The longest any configuration a verifier could ever be given accepts a
/// token after its issue time: every [`VerifierConfig::acceptance_window_secs`]
/// is at most this. A swept nullifier can therefore never be revived by a
/// verifier update (`docs/api.md`).
pub const MAX_ACCEPTANCE_SECS: u64 = MAX_WINDOW_SECS + MAX_CLOCK_SKEW_SECS;
/// Clock skew allowed when a configuration does not say (one minute).
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;

/// A verifier: how the tokens of one application are checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifierConfig {
    /// OpenID Connect ID tokens or any JWT issuer.
    Jwt(JwtConfig),
    /// Opaque tokens checked by calling the provider (Discord, Twitch,
    /// Reddit style).
    Introspection(IntrospectionConfig),
    /// Several tokens that must all pass and name the same user.
    Aggregate(AggregateConfig),
}

/// Where a JWT verifier gets its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// Fetched (and cached) from this URL.
    JwksUrl(String),
    /// Given in the configuration (a JWKS document).
    Jwks(serde_json::Value),
}

/// How a JWT is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry, exactly.
    pub issuer: String,
    /// The accepted `aud` values (client ids); a token must name one.
    pub audiences: Vec<String>,
    /// The keys.
    pub keys: KeySource,
    /// The claim whose value becomes the verifier_id (`email`, `sub`, …).
    pub verifier_id_claim: String,
    /// Lowercase the verifier_id (for emails).
    #[serde(default)]
    pub lowercase_verifier_id: bool,
    /// Claims that must be present with exactly these values (e.g.
    /// `"email_verified": true`).
    #[serde(default)]
    pub required_claims: BTreeMap<String, serde_json::Value>,
    /// Oldest accepted token, by `iat`, in seconds.
    pub max_token_age_secs: u64,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
}

fn default_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECS
}

/// How an opaque token is checked: the provider's endpoint is called with
/// the token as a bearer credential and answers with JSON about the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint (HTTPS, or HTTP on a loopback address for development).
    pub url: String,
    /// JSON pointer (RFC 6901) to the user id in the answer.
    pub user_id_pointer: String,
    /// JSON pointer to the token's issue time (Unix seconds, or an RFC 3339
    /// string) in the answer.
    pub issued_at_pointer: String,
    /// Oldest accepted token, in seconds since its issue time.
    pub freshness_secs: u64,
    /// Lowercase the user id.
    #[serde(default)]
    pub lowercase_verifier_id: bool,
}

/// Several sub-verifiers; a login presents one token for each named in the
/// request (`sub_verifier_ids`), all must pass and all must yield the same
/// verifier_id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The sub-verifiers by their id in requests.
    pub sub_verifiers: BTreeMap<String, SubVerifierConfig>,
    /// Every sub-verifier must be presented (otherwise any non-empty subset).
    #[serde(default)]
    pub require_all: bool,
}

/// A sub-verifier of an aggregate: a JWT or introspection verifier (no
/// nesting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SubVerifierConfig {
    /// A JWT verifier.
    Jwt(JwtConfig),
    /// An introspection verifier.
    Introspection(IntrospectionConfig),
}

impl VerifierConfig {
    /// Parses and checks a configuration as registered on the ledger.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Canonical bytes (what `parse` reads back to the same value).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The checks `parse` applies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Jwt(jwt) => jwt.validate(),
            Self::Introspection(introspection) => introspection.validate(),
            Self::Aggregate(aggregate) => aggregate.validate(),
        }
    }

    /// The longest a token can stay acceptable after its issue time, in
    /// seconds: the oldest accepted token plus the clock skew allowed (the
    /// largest over an aggregate's sub-verifiers). A record that a token was
    /// committed to or used must outlive this.
    pub fn acceptance_window_secs(&self) -> u64 {
        match self {
            Self::Jwt(jwt) => jwt.acceptance_window_secs(),
            Self::Introspection(introspection) => introspection.freshness_secs,
            Self::Aggregate(aggregate) => aggregate
                .sub_verifiers
                .values()
                .map(|sub| match sub {
                    SubVerifierConfig::Jwt(jwt) => jwt.acceptance_window_secs(),
                    SubVerifierConfig::Introspection(introspection) => introspection.freshness_secs,
                })
                .max()
                .unwrap_or(0),
        }
    }

    /// `jwt`, `introspection` or `aggregate`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jwt(_) => "jwt",
            Self::Introspection(_) => "introspection",
            Self::Aggregate(_) => "aggregate",
        }
    }
}

fn field(name: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::Invalid { field: name, reason: "is empty".to_owned() });
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(ConfigError::Invalid { field: name, reason: format!("is longer than {MAX_FIELD_LEN} bytes") });
    }
    Ok(())
}

/// An `https://` URL, or `http://` to a loopback host (development).
pub fn check_url(name: &'static str, url: &str) -> Result<(), ConfigError> {
    field(name, url)?;
    let invalid = |reason: &str| ConfigError::Invalid { field: name, reason: reason.to_owned() };
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(invalid("must use https (http only to 127.0.0.1, [::1] or localhost)"));
        }
        rest
    } else {
        return Err(invalid("must be an https:// URL"));
    };
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(invalid("has no host or contains whitespace"));
    }
    Ok(())
}

fn window(name: &'static str, secs: u64, max: u64) -> Result<(), ConfigError> {
    if secs == 0 || secs > max {
        return Err(ConfigError::Invalid { field: name, reason: format!("must be between 1 and {max} seconds") });
    }
    Ok(())
}

fn pointer(name: &'static str, value: &str) -> Result<(), ConfigError> {
    field(name, value)?;
    if !value.starts_with('/') {
        return Err(ConfigError::Invalid {
            field: name,
            reason: "must be a JSON pointer starting with '/'".to_owned(),
        });
    }
    Ok(())
}

impl JwtConfig {
    /// The longest a token stays acceptable after its `iat`: the oldest
    /// accepted token plus the clock skew allowed.
    pub fn acceptance_window_secs(&self) -> u64 {
        self.max_token_age_secs.saturating_add(self.clock_skew_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        field("issuer", &self.issuer)?;
        if self.audiences.is_empty() || self.audiences.len() > MAX_AUDIENCES {
            return Err(ConfigError::Invalid {
                field: "audiences",
                reason: format!("must list 1 to {MAX_AUDIENCES} client ids"),
            });
        }
        for audience in &self.audiences {
            field("audiences", audience)?;
        }
        field("verifier_id_claim", &self.verifier_id_claim)?;
        if self.required_claims.len() > MAX_REQUIRED_CLAIMS {
            return Err(ConfigError::Invalid {
                field: "required_claims",
                reason: format!("at most {MAX_REQUIRED_CLAIMS}"),
            });
        }
        for (claim, value) in &self.required_claims {
            field("required_claims", claim)?;
            if value.is_array() || value.is_object() {
                return Err(ConfigError::Invalid {
                    field: "required_claims",
                    reason: format!("{claim}: only strings, numbers, booleans or null"),
                });
            }
        }
        window("max_token_age_secs", self.max_token_age_secs, MAX_WINDOW_SECS)?;
        if self.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(ConfigError::Invalid {
                field: "clock_skew_secs",
                reason: format!("at most {MAX_CLOCK_SKEW_SECS} seconds"),
            });
        }
        match &self.keys {
            KeySource::JwksUrl(url) => check_url("keys.jwks_url", url),
            KeySource::Jwks(document) => {
                let keys = KeySet::from_document(document)
                    .map_err(|e| ConfigError::Invalid { field: "keys.jwks", reason: e.to_string() })?;
                if keys.is_empty() {
                    return Err(ConfigError::Invalid { field: "keys.jwks", reason: "holds no usable key".to_owned() });
                }
                Ok(())
            }
        }
    }
}

impl IntrospectionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_url("url", &self.url)?;
        pointer("user_id_pointer", &self.user_id_pointer)?;
        pointer("issued_at_pointer", &self.issued_at_pointer)?;
        window("freshness_secs", self.freshness_secs, MAX_WINDOW_SECS)
    }
}

impl AggregateConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.sub_verifiers.is_empty() || self.sub_verifiers.len() > MAX_SUB_VERIFIERS {
            return Err(ConfigError::Invalid {
                field: "sub_verifiers",
                reason: format!("must name 1 to {MAX_SUB_VERIFIERS} sub-verifiers"),
            });
        }
        for (name, sub) in &self.sub_verifiers {
            field("sub_verifiers", name)?;
            match sub {
                SubVerifierConfig::Jwt(jwt) => jwt.validate()?,
                SubVerifierConfig::Introspection(introspection) => introspection.validate()?,
            }
        }
        Ok(())
    }
}
