//! The one error-code table of Wharf: every "no" any service says is a [`Refusal`] carrying an
//! [`ErrorCode`], and each code is mapped here, once, to its HTTP status and its gRPC code.
//!
//! Refusals are answers, not failures: they travel between the services as data (the proto
//! `Refusal` message carries the same code), and only the gateway, at the edge, turns one into
//! PyPI's response shape. PyPI's words for them live in [`crate::messages`].

use std::fmt;

/// What kind of "no" a refusal is. The wire spelling ([`ErrorCode::as_str`]) is stable: the
/// trusted-publishing codes are PyPI's own, the others are Wharf's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request breaks one of PyPI's rules (form, metadata, name, filename, file).
    InvalidRequest,
    /// No valid credential, or the credential may not do this.
    Forbidden,
    /// The client stopped sending the request body.
    RequestTimeout,
    /// The request conflicts with the index's state.
    Conflict,
    /// The API the request uses has been retired.
    Gone,
    /// Too many requests; `retry_after` says when to try again.
    RateLimited,
    /// A service the request needs cannot be reached right now; retrying later may succeed.
    Unavailable,
    /// An unexpected failure; the cause is logged, never sent.
    Internal,
    /// Trusted publishing, `invalid-payload`: the body or the JWT could not be read, or the
    /// issuer is unknown.
    InvalidPayload,
    /// Trusted publishing, `not-enabled`: trusted publishing (or this issuer) is switched off.
    NotEnabled,
    /// Trusted publishing, `invalid-token`: signature or standard-claim verification failed.
    InvalidToken,
    /// Trusted publishing, `invalid-pending-publisher`: a pending publisher matched but its
    /// project exists now.
    InvalidPendingPublisher,
    /// Trusted publishing, `invalid-reuse-token`: the token's `jti` was already used.
    InvalidReuseToken,
    /// Trusted publishing, `invalid-publisher`: the token is valid but no publisher accepts it.
    InvalidPublisher,
}

/// The gRPC status codes Wharf uses, numbered as the gRPC specification numbers them (the
/// proto crate converts them to `tonic::Code`; this crate stays free of I/O dependencies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4).
    DeadlineExceeded = 4,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8).
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition = 9,
    /// `ABORTED` (10).
    Aborted = 10,
    /// `UNIMPLEMENTED` (12).
    Unimplemented = 12,
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated = 16,
}

impl ErrorCode {
    /// Every code, in declaration order (for exhaustive tests and the proto mapping).
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Forbidden,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::Gone,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::InvalidPayload,
        ErrorCode::NotEnabled,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidPendingPublisher,
        ErrorCode::InvalidReuseToken,
        ErrorCode::InvalidPublisher,
    ];

    /// The table: each code's wire spelling, HTTP status and gRPC code, in one place.
    const fn row(self) -> (&'static str, u16, GrpcCode) {
        match self {
            Self::InvalidRequest => ("invalid-request", 400, GrpcCode::InvalidArgument),
            Self::Forbidden => ("forbidden", 403, GrpcCode::PermissionDenied),
            Self::RequestTimeout => ("request-timeout", 408, GrpcCode::DeadlineExceeded),
            Self::Conflict => ("conflict", 409, GrpcCode::Aborted),
            Self::Gone => ("gone", 410, GrpcCode::Unimplemented),
            Self::RateLimited => ("rate-limited", 429, GrpcCode::ResourceExhausted),
            Self::Unavailable => ("unavailable", 503, GrpcCode::Unavailable),
            Self::Internal => ("internal", 500, GrpcCode::Internal),
            // PyPI answers every mint-token refusal with 422 and one of these codes.
            Self::InvalidPayload => ("invalid-payload", 422, GrpcCode::InvalidArgument),
            Self::NotEnabled => ("not-enabled", 422, GrpcCode::FailedPrecondition),
            Self::InvalidToken => ("invalid-token", 422, GrpcCode::Unauthenticated),
            Self::InvalidPendingPublisher => (
                "invalid-pending-publisher",
                422,
                GrpcCode::FailedPrecondition,
            ),
            Self::InvalidReuseToken => ("invalid-reuse-token", 422, GrpcCode::Unauthenticated),
            Self::InvalidPublisher => ("invalid-publisher", 422, GrpcCode::PermissionDenied),
        }
    }

    /// The wire spelling, e.g. `"invalid-payload"`.
    pub const fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The HTTP status the gateway answers with.
    pub const fn http_status(self) -> u16 {
        self.row().1
    }

    /// The gRPC status code, when a refusal has to be a gRPC error.
    pub const fn grpc_code(self) -> GrpcCode {
        self.row().2
    }

    /// The code with this wire spelling.
    pub fn from_wire(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
    }

    /// Tells whether this is one of trusted publishing's `mint-token` codes (PyPI's 422
    /// shape with `errors: [{code, description}]`).
    pub const fn is_trusted_publishing(self) -> bool {
        matches!(
            self,
            Self::InvalidPayload
                | Self::NotEnabled
                | Self::InvalidToken
                | Self::InvalidPendingPublisher
                | Self::InvalidReuseToken
                | Self::InvalidPublisher
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: what kind of "no", the message the client sees (PyPI's words where
/// PyPI has words for it), and for [`ErrorCode::RateLimited`] the seconds to wait.
///
/// `Display` is the message, so a refusal can be shown as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// Human-readable reason, verbatim as PyPI words it.
    pub message: String,
    /// Seconds after which the request may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// Builds a refusal with the given code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Builds a 400 refusal ([`ErrorCode::InvalidRequest`]).
    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::InvalidRequest, message)
    }

    /// Builds a 403 refusal.
    pub fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::Forbidden, message)
    }

    /// Builds a 409 refusal.
    pub fn conflict(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::Conflict, message)
    }

    /// Builds a 410 refusal.
    pub fn gone(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::Gone, message)
    }

    /// Builds a 429 refusal that may be retried after `retry_after` seconds.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Refusal {
        Refusal {
            code: ErrorCode::RateLimited,
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// Builds a 503 refusal saying that `what` (e.g. "The index") cannot be reached.
    pub fn unavailable(what: &str) -> Refusal {
        Refusal::new(ErrorCode::Unavailable, crate::messages::unavailable(what))
    }

    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_unique_wire_spelling() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        let mut spellings: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        spellings.sort_unstable();
        spellings.dedup();
        assert_eq!(spellings.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_wire("nope"), None);
    }

    #[test]
    fn statuses_are_pypis() {
        let expected = [
            (ErrorCode::InvalidRequest, 400, GrpcCode::InvalidArgument),
            (ErrorCode::Forbidden, 403, GrpcCode::PermissionDenied),
            (ErrorCode::RequestTimeout, 408, GrpcCode::DeadlineExceeded),
            (ErrorCode::Conflict, 409, GrpcCode::Aborted),
            (ErrorCode::Gone, 410, GrpcCode::Unimplemented),
            (ErrorCode::RateLimited, 429, GrpcCode::ResourceExhausted),
            (ErrorCode::Unavailable, 503, GrpcCode::Unavailable),
            (ErrorCode::Internal, 500, GrpcCode::Internal),
        ];
        for (code, status, grpc) in expected {
            assert_eq!(code.http_status(), status, "{code}");
            assert_eq!(code.grpc_code(), grpc, "{code}");
            assert!(!code.is_trusted_publishing());
        }
        for code in ErrorCode::ALL
            .into_iter()
            .filter(|code| code.is_trusted_publishing())
        {
            assert_eq!(code.http_status(), 422, "{code}");
        }
    }

    #[test]
    fn trusted_publishing_codes_are_pypi_spellings() {
        let spellings = [
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
        for (code, text) in spellings {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
        }
    }

    #[test]
    fn constructors_set_code_message_and_retry_after() {
        let cases = [
            (Refusal::bad_request("a"), ErrorCode::InvalidRequest, 400),
            (Refusal::forbidden("a"), ErrorCode::Forbidden, 403),
            (Refusal::conflict("a"), ErrorCode::Conflict, 409),
            (Refusal::gone("a"), ErrorCode::Gone, 410),
        ];
        for (refusal, code, status) in cases {
            assert_eq!(refusal.code, code);
            assert_eq!(refusal.status(), status);
            assert_eq!(refusal.message, "a");
            assert_eq!(refusal.retry_after, None);
        }
        let limited = Refusal::rate_limited("slow down", 3);
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.retry_after, Some(3));
        let unavailable = Refusal::unavailable("The index");
        assert_eq!(unavailable.status(), 503);
        assert_eq!(
            unavailable.message,
            "The index is unavailable right now; please try again later."
        );
    }

    #[test]
    fn display_is_the_message() {
        let refusal = Refusal::bad_request("File already exists ('x', with blake2_256 hash 'y').");
        assert_eq!(
            refusal.to_string(),
            "File already exists ('x', with blake2_256 hash 'y')."
        );
    }
}
