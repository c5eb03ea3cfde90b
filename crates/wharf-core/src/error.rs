//! Upload rejections carrying PyPI's status class and reason text.

/// HTTP status class of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 409.
    Conflict,
    /// 410.
    Gone,
    /// 429.
    TooManyRequests,
}

impl RejectKind {
    /// Returns the HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Forbidden => 403,
            Self::Conflict => 409,
            Self::Gone => 410,
            Self::TooManyRequests => 429,
        }
    }
}

/// A refused request: the status class and the exact message PyPI puts in the reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Status class.
    pub kind: RejectKind,
    /// Human-readable reason, verbatim as PyPI words it.
    pub message: String,
}

impl Rejection {
    /// Builds a rejection of the given kind.
    pub fn new(kind: RejectKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Builds a 400 rejection.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(RejectKind::BadRequest, message)
    }

    /// Builds a 403 rejection.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(RejectKind::Forbidden, message)
    }

    /// Builds a 409 rejection.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(RejectKind::Conflict, message)
    }

    /// Builds a 410 rejection.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(RejectKind::Gone, message)
    }

    /// Builds a 429 rejection.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(RejectKind::TooManyRequests, message)
    }

    /// Returns the HTTP status code.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_kind_and_message() {
        let cases = [
            (Rejection::bad_request("a"), RejectKind::BadRequest, 400),
            (Rejection::forbidden("a"), RejectKind::Forbidden, 403),
            (Rejection::conflict("a"), RejectKind::Conflict, 409),
            (Rejection::gone("a"), RejectKind::Gone, 410),
            (
                Rejection::too_many_requests("a"),
                RejectKind::TooManyRequests,
                429,
            ),
        ];
        for (rej, kind, status) in cases {
            assert_eq!(rej.kind, kind);
            assert_eq!(rej.status(), status);
            assert_eq!(rej.message, "a");
        }
    }

    #[test]
    fn display_is_the_message() {
        let rej = Rejection::bad_request("File already exists ('x', with blake2_256 hash 'y').");
        assert_eq!(
            rej.to_string(),
            "File already exists ('x', with blake2_256 hash 'y')."
        );
    }
}
