//! How a quorumkey network checks an application's tokens, as pure
//! functions: a verifier's configuration as registered on the ledger
//! ([`VerifierConfig`]), the keys of a JWKS document ([`KeySet`]), the check
//! of one JWT at a given time ([`verify_jwt`]), of an introspection
//! endpoint's answer ([`check_introspection`]) and the aggregate rule
//! ([`check_aggregate_request`], [`check_aggregate_agreement`]), and the one
//! spelling of a token that is accepted with its identity ([`canonical`]). No I/O: the node fetches
//! keys and answers of introspection endpoints, and reads the clock.

pub mod address;
pub mod aggregate;
pub mod canonical;
pub mod config;
pub mod error;
pub mod introspection;
pub mod jwks;
pub mod jwt;

pub use aggregate::{AggregateError, check_aggregate_agreement, check_aggregate_request, check_sub_token_request};
pub use canonical::{TokenIdentity, canonical_spelling, other_spellings};
pub use config::{
    AggregateConfig, IntrospectionConfig, JwtConfig, KeySource, ScriptConfig, SubVerifierConfig, VerifierConfig,
};
pub use error::{ConfigError, JwksError, TokenError};
pub use introspection::{IntrospectedToken, check_introspection, check_opaque_token};
pub use jwks::{KeySet, VerificationKey};
pub use jwt::{TokenHeader, VerifiedToken, token_header, verify_jwt};
