//! Generated protobuf and gRPC types for Wharf (`proto/wharf/v1`), and the conversions between
//! the wire forms and `wharf_core`'s types: a refusal, so every service reads and writes the one
//! error-code table the same way, and the release metadata (in `metadata`).

/// Version 1 of Wharf's wire types: the verifier service and the bus messages.
#[allow(
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    missing_debug_implementations,
    rustdoc::broken_intra_doc_links
)]
pub mod v1 {
    tonic::include_proto!("wharf.v1");
}

pub mod grant;
mod metadata;

use wharf_core::refusal::{ErrorCode, GrpcCode, Refusal};

impl From<ErrorCode> for v1::ErrorCode {
    fn from(code: ErrorCode) -> v1::ErrorCode {
        match code {
            ErrorCode::InvalidRequest => v1::ErrorCode::InvalidRequest,
            ErrorCode::Forbidden => v1::ErrorCode::Forbidden,
            ErrorCode::RequestTimeout => v1::ErrorCode::RequestTimeout,
            ErrorCode::Conflict => v1::ErrorCode::Conflict,
            ErrorCode::Gone => v1::ErrorCode::Gone,
            ErrorCode::RateLimited => v1::ErrorCode::RateLimited,
            ErrorCode::Unavailable => v1::ErrorCode::Unavailable,
            ErrorCode::Internal => v1::ErrorCode::Internal,
            ErrorCode::InvalidPayload => v1::ErrorCode::InvalidPayload,
            ErrorCode::NotEnabled => v1::ErrorCode::NotEnabled,
            ErrorCode::InvalidToken => v1::ErrorCode::InvalidToken,
            ErrorCode::InvalidPendingPublisher => v1::ErrorCode::InvalidPendingPublisher,
            ErrorCode::InvalidReuseToken => v1::ErrorCode::InvalidReuseToken,
            ErrorCode::InvalidPublisher => v1::ErrorCode::InvalidPublisher,
        }
    }
}

/// The core code of a wire code; an unspecified (or, from a newer peer, unknown) code is an
/// internal failure, never a success.
impl From<v1::ErrorCode> for ErrorCode {
    fn from(code: v1::ErrorCode) -> ErrorCode {
        match code {
            v1::ErrorCode::Unspecified | v1::ErrorCode::Internal => ErrorCode::Internal,
            v1::ErrorCode::InvalidRequest => ErrorCode::InvalidRequest,
            v1::ErrorCode::Forbidden => ErrorCode::Forbidden,
            v1::ErrorCode::RequestTimeout => ErrorCode::RequestTimeout,
            v1::ErrorCode::Conflict => ErrorCode::Conflict,
            v1::ErrorCode::Gone => ErrorCode::Gone,
            v1::ErrorCode::RateLimited => ErrorCode::RateLimited,
            v1::ErrorCode::Unavailable => ErrorCode::Unavailable,
            v1::ErrorCode::InvalidPayload => ErrorCode::InvalidPayload,
            v1::ErrorCode::NotEnabled => ErrorCode::NotEnabled,
            v1::ErrorCode::InvalidToken => ErrorCode::InvalidToken,
            v1::ErrorCode::InvalidPendingPublisher => ErrorCode::InvalidPendingPublisher,
            v1::ErrorCode::InvalidReuseToken => ErrorCode::InvalidReuseToken,
            v1::ErrorCode::InvalidPublisher => ErrorCode::InvalidPublisher,
        }
    }
}

impl From<Refusal> for v1::Refusal {
    fn from(refusal: Refusal) -> v1::Refusal {
        v1::Refusal {
            code: v1::ErrorCode::from(refusal.code).into(),
            message: refusal.message,
            retry_after_seconds: refusal.retry_after.unwrap_or(0),
        }
    }
}

impl From<v1::Refusal> for Refusal {
    fn from(refusal: v1::Refusal) -> Refusal {
        let code = ErrorCode::from(
            v1::ErrorCode::try_from(refusal.code).unwrap_or(v1::ErrorCode::Unspecified),
        );
        Refusal {
            code,
            message: refusal.message,
            retry_after: (code == ErrorCode::RateLimited).then_some(refusal.retry_after_seconds),
        }
    }
}

/// The two verdicts of an upload's one authorization call, as results: the wire form is
/// [`v1::AuthorizeUploadResponse`], and both services convert through this type.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadVerdicts {
    /// Who holds the token, or PyPI's refusal when nobody does.
    pub identity: Result<v1::Identity, Refusal>,
    /// Whether that holder may upload to the project; `None` when the identity was refused or
    /// no project was named.
    pub project: Option<Result<v1::UploadGrant, Refusal>>,
}

impl From<UploadVerdicts> for v1::AuthorizeUploadResponse {
    fn from(verdicts: UploadVerdicts) -> v1::AuthorizeUploadResponse {
        use v1::authorize_upload_response::{IdentityVerdict, ProjectVerdict};
        v1::AuthorizeUploadResponse {
            identity_verdict: Some(match verdicts.identity {
                Ok(identity) => IdentityVerdict::Identity(identity),
                Err(refusal) => IdentityVerdict::Unauthenticated(refusal.into()),
            }),
            project_verdict: verdicts.project.map(|verdict| match verdict {
                Ok(grant) => ProjectVerdict::Granted(grant),
                Err(refusal) => ProjectVerdict::Denied(refusal.into()),
            }),
        }
    }
}

/// An answer without an identity verdict (a broken or newer peer): never a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the authorization answer has no identity verdict")]
pub struct NoIdentityVerdict;

impl TryFrom<v1::AuthorizeUploadResponse> for UploadVerdicts {
    type Error = NoIdentityVerdict;

    fn try_from(
        response: v1::AuthorizeUploadResponse,
    ) -> Result<UploadVerdicts, NoIdentityVerdict> {
        use v1::authorize_upload_response::{IdentityVerdict, ProjectVerdict};
        let identity = match response.identity_verdict.ok_or(NoIdentityVerdict)? {
            IdentityVerdict::Identity(identity) => Ok(identity),
            IdentityVerdict::Unauthenticated(refusal) => Err(Refusal::from(refusal)),
        };
        let project = response.project_verdict.map(|verdict| match verdict {
            ProjectVerdict::Granted(grant) => Ok(grant),
            ProjectVerdict::Denied(refusal) => Err(Refusal::from(refusal)),
        });
        Ok(UploadVerdicts { identity, project })
    }
}

/// The tonic code of a table entry's gRPC code.
pub fn tonic_code(code: GrpcCode) -> tonic::Code {
    tonic::Code::from_i32(code as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_the_wire() {
        for code in ErrorCode::ALL {
            let refusal = if code == ErrorCode::RateLimited {
                Refusal::rate_limited("wait", 7)
            } else {
                Refusal::new(code, "no")
            };
            let wire = v1::Refusal::from(refusal.clone());
            assert_eq!(Refusal::from(wire), refusal, "{code}");
        }
    }

    #[test]
    fn unknown_codes_are_internal() {
        let wire = v1::Refusal {
            code: 999,
            message: "?".to_owned(),
            retry_after_seconds: 5,
        };
        let refusal = Refusal::from(wire);
        assert_eq!(refusal.code, ErrorCode::Internal);
        assert_eq!(refusal.retry_after, None);
    }

    #[test]
    fn upload_verdicts_survive_the_wire() {
        let identity = v1::Identity {
            kind: "user".to_owned(),
            user_id: "u".to_owned(),
            user_name: "alice".to_owned(),
            publisher_id: String::new(),
            token_id: "t".to_owned(),
            signature_verified: true,
        };
        let grant = v1::UploadGrant {
            project_id: String::new(),
            may_create_project: true,
            project_total_size: 0,
            signed: None,
        };
        for verdicts in [
            UploadVerdicts {
                identity: Err(Refusal::forbidden("who?")),
                project: None,
            },
            UploadVerdicts {
                identity: Ok(identity.clone()),
                project: None,
            },
            UploadVerdicts {
                identity: Ok(identity.clone()),
                project: Some(Ok(grant)),
            },
            UploadVerdicts {
                identity: Ok(identity),
                project: Some(Err(Refusal::bad_request("no"))),
            },
        ] {
            let wire = v1::AuthorizeUploadResponse::from(verdicts.clone());
            assert_eq!(UploadVerdicts::try_from(wire), Ok(verdicts));
        }
        assert_eq!(
            UploadVerdicts::try_from(v1::AuthorizeUploadResponse::default()),
            Err(NoIdentityVerdict)
        );
    }

    #[test]
    fn grpc_codes_map_to_tonic() {
        assert_eq!(
            tonic_code(ErrorCode::Forbidden.grpc_code()),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            tonic_code(ErrorCode::Unavailable.grpc_code()),
            tonic::Code::Unavailable
        );
        for code in ErrorCode::ALL {
            assert_eq!(tonic_code(code.grpc_code()) as i32, code.grpc_code() as i32);
        }
    }
}
