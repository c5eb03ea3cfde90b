//! OIDC identity tokens for trusted publishing.
