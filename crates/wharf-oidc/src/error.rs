//! PyPI's mint-token error codes and texts (spec b.3).

use std::fmt;

/// The `code` of a mint-token error, exactly as PyPI spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid-payload`: the body or the JWT could not be read, or the issuer is unknown.
    InvalidPayload,
    /// `not-enabled`: trusted publishing (or this issuer) is switched off.
    NotEnabled,
    /// `invalid-token`: signature or standard-claim verification failed.
    InvalidToken,
    /// `invalid-pending-publisher`: a pending publisher matched but its project exists now.
    InvalidPendingPublisher,
    /// `invalid-reuse-token`: the token's `jti` was already used.
    InvalidReuseToken,
    /// `invalid-publisher`: the token is valid but no publisher accepts it.
    InvalidPublisher,
    /// `rate-limited` (Wharf's own; PyPI has no such limit): too many exchanges for one
    /// identity, answered with `429` and `Retry-After`.
    RateLimited,
}

impl ErrorCode {
    /// The wire spelling, e.g. `"invalid-payload"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid-payload",
            Self::NotEnabled => "not-enabled",
            Self::InvalidToken => "invalid-token",
            Self::InvalidPendingPublisher => "invalid-pending-publisher",
            Self::InvalidReuseToken => "invalid-reuse-token",
            Self::InvalidPublisher => "invalid-publisher",
            Self::RateLimited => "rate-limited",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mint-token failure: PyPI answers 422 with exactly one `{code, description}`.
///
/// `Display` is the description, so the error can be shown as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct MintError {
    /// The error code.
    pub code: ErrorCode,
    /// PyPI's human-readable text.
    pub description: String,
    /// For [`ErrorCode::RateLimited`], the seconds after which to try again.
    pub retry_after: Option<u64>,
}

impl MintError {
    /// Any code with any text.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// `rate-limited`: too many exchanges for one identity; try again in `retry_after` s.
    pub fn rate_limited(retry_after: u64) -> Self {
        let unit = if retry_after == 1 {
            "second"
        } else {
            "seconds"
        };
        Self {
            code: ErrorCode::RateLimited,
            description: format!(
                "Too many token requests for this identity. Try again in {retry_after} {unit}."
            ),
            retry_after: Some(retry_after),
        }
    }

    /// `invalid-payload` / `malformed JWT`.
    pub fn malformed_jwt() -> Self {
        Self::new(ErrorCode::InvalidPayload, "malformed JWT")
    }

    /// `invalid-payload` / `unknown trusted publishing issuer`.
    pub fn unknown_issuer() -> Self {
        Self::new(
            ErrorCode::InvalidPayload,
            "unknown trusted publishing issuer",
        )
    }

    /// `invalid-payload` with a free text (pydantic-style body errors, project-creation errors).
    pub fn invalid_payload(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, description)
    }

    /// `not-enabled` / `<service> trusted publishing functionality not enabled`.
    pub fn not_enabled(service: &str) -> Self {
        Self::new(
            ErrorCode::NotEnabled,
            format!("{service} trusted publishing functionality not enabled"),
        )
    }

    /// `invalid-token` / `malformed or invalid token`.
    pub fn invalid_token() -> Self {
        Self::new(ErrorCode::InvalidToken, "malformed or invalid token")
    }

    /// `invalid-pending-publisher` / `valid token, but project already exists`.
    pub fn project_already_exists() -> Self {
        Self::new(
            ErrorCode::InvalidPendingPublisher,
            "valid token, but project already exists",
        )
    }

    /// `invalid-reuse-token` / `invalid token: already used`.
    pub fn reused_token() -> Self {
        Self::new(ErrorCode::InvalidReuseToken, "invalid token: already used")
    }

    /// `invalid-publisher` / `valid token, but no corresponding publisher (<reason>)`.
    pub fn invalid_publisher(reason: &str) -> Self {
        Self::new(
            ErrorCode::InvalidPublisher,
            format!("valid token, but no corresponding publisher ({reason})"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pypi_spellings() {
        let all = [
            (ErrorCode::InvalidPayload, "invalid-payload"),
            (ErrorCode::NotEnabled, "not-enabled"),
            (ErrorCode::InvalidToken, "invalid-token"),
            (
                ErrorCode::InvalidPendingPublisher,
                "invalid-pending-publisher",
            ),
            (ErrorCode::InvalidReuseToken, "invalid-reuse-token"),
            (ErrorCode::InvalidPublisher, "invalid-publisher"),
            (ErrorCode::RateLimited, "rate-limited"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
        }
    }

    #[test]
    fn descriptions_are_pypi_texts() {
        assert_eq!(MintError::malformed_jwt().to_string(), "malformed JWT");
        assert_eq!(
            MintError::unknown_issuer().to_string(),
            "unknown trusted publishing issuer"
        );
        assert_eq!(
            MintError::not_enabled("github").to_string(),
            "github trusted publishing functionality not enabled"
        );
        assert_eq!(
            MintError::invalid_token().to_string(),
            "malformed or invalid token"
        );
        assert_eq!(
            MintError::project_already_exists().to_string(),
            "valid token, but project already exists"
        );
        assert_eq!(
            MintError::reused_token().to_string(),
            "invalid token: already used"
        );
        let e = MintError::invalid_publisher("Missing claim 'sub'");
        assert_eq!(e.code, ErrorCode::InvalidPublisher);
        assert_eq!(
            e.description,
            "valid token, but no corresponding publisher (Missing claim 'sub')"
        );
    }
}
