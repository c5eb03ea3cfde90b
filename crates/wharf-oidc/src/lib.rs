//! OIDC identity tokens for trusted publishing.
//!
//! The verifier service trades a CI job's OIDC token for a short-lived upload token. This
//! crate holds the pure logic of that exchange, with PyPI's rules, codes and texts
//! (spec §b), in three steps:
//!
//! 1. [`peek_unverified`] reads `iss` (and `kid`) *without* verification, only to choose the
//!    [`Issuer`]; the caller maps an unknown issuer to [`wharf_core::messages::trusted_publishing::unknown_issuer`].
//! 2. [`verify_token`] verifies the token against the issuer's keys from a [`KeyStore`]
//!    (JWKS via OIDC discovery through a [`JwksFetcher`], cached per issuer, refreshed on an
//!    unknown `kid` at most once per cool-down) and checks the standard claims.
//! 3. [`match_publisher`] matches the verified [`Claims`] against the caller's publishers
//!    ([`PublisherPolicy`]), with PyPI's per-provider rules and Wharf's explain mode.
//!
//! Storage (publishers, the `jti` replay table, minted tokens) lives in the caller; use
//! [`jti_of`] and [`expires_at`] for the replay guard.

mod issuer;
mod jwks;
mod keystore;
mod policy;
mod unverified;
mod verify;

pub use issuer::{
    ACTIVESTATE_ISSUER_URL, GITHUB_ISSUER_URL, GITLAB_ISSUER_URL, GOOGLE_ISSUER_URL, Issuer,
    IssuerKind, UnknownIssuerKind, builtin_issuers,
};
pub use jwks::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_DOCUMENT_BYTES, FetchError, HttpJwksFetcher, JwksFetcher,
};
pub use keystore::{DEFAULT_REFRESH_COOLDOWN, KeyStore};
pub use policy::{
    ActiveStatePolicy, Candidate, GenericPolicy, GitHubPolicy, GitLabPolicy, GooglePolicy, Matched,
    NOT_FOUND, NoMatch, PolicyError, PublisherPolicy, glob_match, match_publisher,
};
pub use unverified::{MAX_JWT_BYTES, Unverified, peek_unverified};
pub use verify::{Claims, LEEWAY_SECONDS, expires_at, jti_of, verify_token};
pub use wharf_core::refusal::{ErrorCode, Refusal};

/// Re-exported so callers and fakes can build key sets without naming the dependency.
pub use jsonwebtoken;
