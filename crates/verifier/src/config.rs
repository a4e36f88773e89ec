//! What a verifier's configuration says, as registered on the ledger: JSON
//! with every field named and checked, so that every node parses the same
//! bytes to the same rules (and refuses the same malformed ones).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::AddressScope;
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
/// The most fuel a script verifier may give one login (about 45 ms of
/// interpretation on the reference machine: `crates/script`).
pub const MAX_SCRIPT_FUEL: u64 = 100_000_000;
/// The most memory a script verifier may give one login, in 64 KiB pages
/// (4 MiB).
pub const MAX_SCRIPT_MEMORY_PAGES: u32 = 64;

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
    /// Tokens checked by sub-verifiers, then a WebAssembly program of the
    /// application's that names the user (`docs/verifiers.md`, "Scripts").
    Script(ScriptConfig),
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

/// A script verifier: the tokens of a login are checked by its
/// sub-verifiers, as an aggregate's are; then the module (published on the
/// ledger, named by its sha-256) runs on their verified claims and the
/// login's evidence, within the budget, and names the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// The module's sha-256, 64 lower-case hex digits.
    pub module: String,
    /// Fuel per login (1 to [`MAX_SCRIPT_FUEL`]).
    pub fuel: u64,
    /// Memory per login, in 64 KiB pages (1 to [`MAX_SCRIPT_MEMORY_PAGES`]).
    pub memory_pages: u32,
    /// The sub-verifiers by their id in requests.
    pub sub_verifiers: BTreeMap<String, SubVerifierConfig>,
    /// Every sub-verifier must be presented (otherwise any non-empty
    /// subset, and the script decides).
    #[serde(default)]
    pub require_all: bool,
    /// The evidence fields a login may carry besides its tokens (what the
    /// script reads with `param`: a wallet's `message` and `signature`);
    /// a login with any other is refused. At most
    /// [`MAX_EVIDENCE_FIELDS`] names of 1 to [`MAX_EVIDENCE_NAME_LEN`]
    /// bytes; none if absent.
    #[serde(default)]
    pub evidence: std::collections::BTreeSet<String>,
}

/// Most evidence fields a script verifier may take (as a login may carry).
pub const MAX_EVIDENCE_FIELDS: usize = 16;
/// Longest evidence field name.
pub const MAX_EVIDENCE_NAME_LEN: usize = 64;

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
            Self::Script(script) => script.validate(),
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
            Self::Aggregate(AggregateConfig { sub_verifiers, .. })
            | Self::Script(ScriptConfig { sub_verifiers, .. }) => sub_verifiers
                .values()
                .map(|sub| match sub {
                    SubVerifierConfig::Jwt(jwt) => jwt.acceptance_window_secs(),
                    SubVerifierConfig::Introspection(introspection) => introspection.freshness_secs,
                })
                .max()
                .unwrap_or(0),
        }
    }

    /// Whether a login presents sub-tokens (`aggregate` and `script`).
    pub fn takes_sub_tokens(&self) -> bool {
        matches!(self, Self::Aggregate(_) | Self::Script(_))
    }

    /// The sub-verifiers and the presence rule, for a verifier that takes
    /// sub-tokens.
    pub fn sub_verifiers(&self) -> Option<(&BTreeMap<String, SubVerifierConfig>, bool)> {
        match self {
            Self::Aggregate(aggregate) => Some((&aggregate.sub_verifiers, aggregate.require_all)),
            Self::Script(script) => Some((&script.sub_verifiers, script.require_all)),
            Self::Jwt(_) | Self::Introspection(_) => None,
        }
    }

    /// `jwt`, `introspection`, `aggregate` or `script`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jwt(_) => "jwt",
            Self::Introspection(_) => "introspection",
            Self::Aggregate(_) => "aggregate",
            Self::Script(_) => "script",
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

/// Longest host name (RFC 1035).
const MAX_HOST_NAME_LEN: usize = 253;
/// Longest label of a host name (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A provider's URL, as every node will fetch it: parsed as the nodes'
/// HTTP client parses it (WHATWG, the `url` crate), then
/// - printable ASCII only, no backslash (no spelling that parsers read
///   differently);
/// - no user name or password: in `http://localhost:1@169.254.169.254/`
///   the host is 169.254.169.254;
/// - `https`, or `http` only to a loopback IP literal (127.0.0.0/8, [::1]),
///   for development;
/// - the host is a DNS name (at least two labels of letters, digits and
///   inner hyphens, no trailing dot, not `localhost`) or an IP literal
///   that is public or loopback ([`crate::address::address_scope`]): no
///   private, link-local (cloud metadata), shared, documentation,
///   multicast or reserved address, in any of its spellings (`0x7f.1`,
///   `[::ffff:10.0.0.1]`);
/// - a port other than 0, if any.
///
/// A DNS name may still resolve to a private address: nodes check every
/// address they connect to (`docs/verifiers.md`).
/// Whether `url` carries user info: any `@` before the path, even an empty
/// user info that URL parsers drop (`https://:@host/`). Judged on the text
/// as written, so that no parser can read another host out of it.
pub fn has_user_info(url: &str) -> bool {
    let authority =
        url.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#', '\\']).next().unwrap_or(""));
    authority.contains('@')
}

pub fn check_url(name: &'static str, url: &str) -> Result<(), ConfigError> {
    field(name, url)?;
    let invalid = |reason: String| ConfigError::Invalid { field: name, reason };
    if !url.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'\\') {
        return Err(invalid("must be printable ASCII without blanks or backslashes".to_owned()));
    }
    if has_user_info(url) {
        return Err(invalid("must not carry a user name or password (user@host)".to_owned()));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("is not a URL ({e})")))?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(invalid("must be an https:// URL".to_owned())),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not carry a user name or password (user@host)".to_owned()));
    }
    if parsed.port() == Some(0) {
        return Err(invalid("must not name port 0".to_owned()));
    }
    let address = match parsed.host() {
        None => return Err(invalid("has no host".to_owned())),
        Some(url::Host::Domain(host)) => {
            check_host_name(host).map_err(|reason| invalid(format!("host {reason}")))?;
            None
        }
        Some(url::Host::Ipv4(address)) => Some(std::net::IpAddr::V4(address)),
        Some(url::Host::Ipv6(address)) => Some(std::net::IpAddr::V6(address)),
    };
    let scope = address.map(crate::address::address_scope);
    match scope {
        Some(AddressScope::NonPublic(range)) => {
            Err(invalid(format!("host is {range}, which no node connects to (providers are at public addresses)")))
        }
        Some(AddressScope::Loopback) => Ok(()),
        _ if https => Ok(()),
        _ => Err(invalid("must use https (http only to a loopback IP literal: 127.0.0.1 or [::1])".to_owned())),
    }
}

/// A DNS host name as the URL parser leaves it (lowercase, IDNA to
/// ASCII): at least two labels of letters, digits and inner hyphens, 1 to
/// 63 bytes each, at most 253 in all, no trailing dot, not `localhost`.
fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.len() > MAX_HOST_NAME_LEN {
        return Err("is longer than 253 bytes");
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err("is a localhost name; for development use http://127.0.0.1 or http://[::1]");
    }
    if host.ends_with('.') {
        return Err("ends with a dot (write the name without it)");
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("is not a fully qualified DNS name (it needs a dot, as in issuer.example.com)");
    }
    for label in &labels {
        let bytes = label.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_LABEL_LEN {
            return Err("has an empty label or one longer than 63 bytes");
        }
        if !bytes.iter().all(|byte| byte.is_ascii_alphanumeric() || *byte == b'-')
            || bytes.first() == Some(&b'-')
            || bytes.last() == Some(&b'-')
        {
            return Err("is not a DNS name (letters, digits and inner hyphens between dots)");
        }
    }
    if labels.last().is_some_and(|top| top.bytes().all(|byte| byte.is_ascii_digit())) {
        return Err("is not a DNS name (its last label is a number)");
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
        validate_sub_verifiers(&self.sub_verifiers)
    }
}

fn validate_sub_verifiers(sub_verifiers: &BTreeMap<String, SubVerifierConfig>) -> Result<(), ConfigError> {
    if sub_verifiers.is_empty() || sub_verifiers.len() > MAX_SUB_VERIFIERS {
        return Err(ConfigError::Invalid {
            field: "sub_verifiers",
            reason: format!("must name 1 to {MAX_SUB_VERIFIERS} sub-verifiers"),
        });
    }
    for (name, sub) in sub_verifiers {
        field("sub_verifiers", name)?;
        match sub {
            SubVerifierConfig::Jwt(jwt) => jwt.validate()?,
            SubVerifierConfig::Introspection(introspection) => introspection.validate()?,
        }
    }
    Ok(())
}

impl ScriptConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let hex_digits =
            |text: &str| text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_digits(&self.module) {
            return Err(ConfigError::Invalid {
                field: "module",
                reason: "must be the module's sha-256 as 64 lower-case hex digits".to_owned(),
            });
        }
        if !(1..=MAX_SCRIPT_FUEL).contains(&self.fuel) {
            return Err(ConfigError::Invalid { field: "fuel", reason: format!("must be 1 to {MAX_SCRIPT_FUEL}") });
        }
        if !(1..=MAX_SCRIPT_MEMORY_PAGES).contains(&self.memory_pages) {
            return Err(ConfigError::Invalid {
                field: "memory_pages",
                reason: format!("must be 1 to {MAX_SCRIPT_MEMORY_PAGES}"),
            });
        }
        if self.evidence.len() > MAX_EVIDENCE_FIELDS
            || self.evidence.iter().any(|name| name.is_empty() || name.len() > MAX_EVIDENCE_NAME_LEN)
        {
            return Err(ConfigError::Invalid {
                field: "evidence",
                reason: format!("must name at most {MAX_EVIDENCE_FIELDS} fields of 1 to {MAX_EVIDENCE_NAME_LEN} bytes"),
            });
        }
        validate_sub_verifiers(&self.sub_verifiers)
    }

    /// The module's id as bytes (validated: 64 hex digits).
    pub fn module_id(&self) -> Option<[u8; 32]> {
        let mut id = [0u8; 32];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(self.module.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_script_configuration_is_checked_within_the_maxima() {
        let jwt = r#"{"type":"jwt","issuer":"https://issuer.example","audiences":["app"],"keys":{"jwks_url":"https://issuer.example/jwks"},"verifier_id_claim":"sub","max_token_age_secs":600}"#;
        let config = |module: &str, fuel: u64, pages: u32, evidence: &str| {
            format!(
                r#"{{"type":"script","module":"{module}","fuel":{fuel},"memory_pages":{pages},"sub_verifiers":{{"google":{jwt}}},"evidence":{evidence}}}"#
            )
        };
        let module = "ab".repeat(32);
        let parsed = VerifierConfig::parse(config(&module, 1_000, 2, r#"["message","signature"]"#).as_bytes()).unwrap();
        assert!(matches!(&parsed, VerifierConfig::Script(script) if script.module_id() == Some([0xab; 32])));
        assert_eq!(parsed.kind(), "script");
        assert!(parsed.takes_sub_tokens());
        assert_eq!(parsed.acceptance_window_secs(), 600 + DEFAULT_CLOCK_SKEW_SECS);
        let refused = |text: String| VerifierConfig::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(refused(config(&"AB".repeat(32), 1_000, 2, "[]")).contains("module"));
        assert!(refused(config("abc", 1_000, 2, "[]")).contains("module"));
        assert!(refused(config(&module, 0, 2, "[]")).contains("fuel"));
        assert!(refused(config(&module, MAX_SCRIPT_FUEL + 1, 2, "[]")).contains("fuel"));
        assert!(refused(config(&module, 1_000, MAX_SCRIPT_MEMORY_PAGES + 1, "[]")).contains("memory_pages"));
        assert!(refused(config(&module, 1_000, 2, r#"[""]"#)).contains("evidence"));
        let many: Vec<String> = (0..=MAX_EVIDENCE_FIELDS).map(|i| format!("\"f{i}\"")).collect();
        assert!(refused(config(&module, 1_000, 2, &format!("[{}]", many.join(",")))).contains("evidence"));
        let no_subs =
            format!(r#"{{"type":"script","module":"{module}","fuel":1,"memory_pages":1,"sub_verifiers":{{}}}}"#);
        assert!(refused(no_subs).contains("sub_verifiers"));
    }

    #[test]
    fn provider_urls_are_checked_as_nodes_parse_them() {
        let accepted = [
            "https://issuer.example/jwks",
            "https://accounts.google.com/.well-known/openid-configuration",
            "https://issuer.example:8443/jwks?x=1",
            "https://8.8.8.8/jwks",
            "https://[2606:4700::1111]/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]:8080/jwks",
            "https://127.0.0.1/jwks",
        ];
        for url in accepted {
            check_url("url", url).unwrap_or_else(|e| unreachable!("{url}: {e}"));
        }
        let refused = [
            // User info: the host is the part after `@`.
            ("http://localhost:1@10.0.0.1/", "user name or password"),
            ("https://issuer.example@10.0.0.1/", "user name or password"),
            ("https://user:pass@issuer.example/", "user name or password"),
            ("http://127.0.0.1:80@169.254.169.254/", "user name or password"),
            // Private, link-local and other non-public IP literals, in any spelling.
            ("https://10.0.0.1/jwks", "private address"),
            ("https://192.168.1.1/jwks", "private address"),
            ("https://172.16.0.1/jwks", "private address"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://[fd00::1]/jwks", "unique-local"),
            ("https://[fe80::1]/jwks", "link-local"),
            ("https://[::ffff:10.0.0.1]/jwks", "private address"),
            ("https://[::ffff:169.254.169.254]/", "link-local"),
            ("https://[64:ff9b::192.168.0.1]/", "private address"),
            ("https://0x0a.1/jwks", "private address"),
            ("https://167772161/jwks", "private address"),
            ("https://012.0.0.1/jwks", "private address"),
            ("https://%31%30.0.0.1/jwks", "private address"),
            ("https://0.0.0.0/jwks", "unspecified"),
            ("https://[::]/jwks", "unspecified"),
            ("https://100.64.0.1/", "carrier-grade NAT"),
            ("https://224.0.0.1/", "multicast"),
            ("https://255.255.255.255/", "reserved"),
            // Plain http to anything but a loopback literal.
            ("http://issuer.example/jwks", "must use https"),
            ("http://8.8.8.8/jwks", "must use https"),
            // Names that are not (public) DNS names.
            ("http://localhost:8080/jwks", "localhost"),
            ("https://localhost/jwks", "localhost"),
            ("https://a.localhost/jwks", "localhost"),
            ("https://intranet/jwks", "fully qualified"),
            ("https://issuer.example./jwks", "ends with a dot"),
            ("https://issuer_x.example/jwks", "not a DNS name"),
            ("https://-x.example/jwks", "not a DNS name"),
            // Other schemes, no host, blanks, backslashes, port 0.
            ("ftp://issuer.example/jwks", "https://"),
            ("file:///etc/passwd", "https://"),
            ("https:///jwks", "fully qualified"),
            ("https://:@issuer.example/jwks", "user name or password"),
            ("https://@issuer.example/jwks", "user name or password"),
            ("https://issuer.example/a b", "printable ASCII"),
            ("https://issuer.example\\@10.0.0.1/", "printable ASCII"),
            ("https://issuer.example:0/jwks", "port 0"),
            ("", "is empty"),
        ];
        for (url, reason) in refused {
            match check_url("url", url) {
                Ok(()) => unreachable!("{url} was accepted"),
                Err(error) => assert!(error.to_string().contains(reason), "{url}: {error}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// An IPv4 literal is judged the same in every spelling the URL
        /// parser reads as that address (dotted, one integer, hex, as an
        /// IPv4-mapped IPv6 literal), and accepted only if public or
        /// loopback.
        #[test]
        fn every_spelling_of_an_ipv4_literal_is_judged_alike(bits in any::<u32>()) {
            let address = std::net::Ipv4Addr::from(bits);
            let scope = crate::address::address_scope(std::net::IpAddr::V4(address));
            let expected = !matches!(scope, AddressScope::NonPublic(_));
            let [a, b, c, d] = address.octets();
            for url in [
                format!("https://{address}/jwks"),
                format!("https://{bits}/jwks"),
                format!("https://0x{bits:x}/jwks"),
                format!("https://0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}/jwks"),
                format!("https://[::ffff:{address}]/jwks"),
            ] {
                prop_assert_eq!(check_url("url", &url).is_ok(), expected, "{}", url);
            }
        }

        /// A URL with user info is refused whatever the user info and the
        /// host.
        #[test]
        fn user_info_is_always_refused(user in "[a-zA-Z0-9.:_~-]{1,20}", host in prop_oneof![
            Just("issuer.example".to_owned()), Just("127.0.0.1".to_owned()), Just("8.8.8.8".to_owned()),
            Just("10.0.0.1".to_owned()), Just("[::1]".to_owned())]) {
            for scheme in ["http", "https"] {
                let url = format!("{scheme}://{user}@{host}/jwks");
                prop_assert!(check_url("url", &url).is_err(), "{}", url);
            }
        }
    }
}
