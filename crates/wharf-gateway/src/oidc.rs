//! Trusted publishing endpoints (`/_/oidc/…`, spec §b.1–b.3). The gateway only parses the
//! request and forwards it: the verifier decides.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use serde_json::{Value, json};
use tracing::instrument;
use wharf_core::refusal::{ErrorCode, Refusal};
use wharf_proto::v1::{
    BurnTokenRequest, MintTokenRequest, OidcAudienceRequest, mint_token_response,
};

use crate::Gateway;
use crate::rate_limit::{Limited, client_ip};
use crate::response::{Api, refusal_response};

/// Largest accepted mint-token request body (a JWT is a few KiB).
const MAX_BODY_BYTES: usize = crate::SMALL_BODY_BYTES;

/// A small request body, read up to [`MAX_BODY_BYTES`] and no further.
enum SmallBody {
    Read(Bytes),
    /// Longer than the limit: reading stopped there.
    TooLarge,
    /// The client broke off or sent a malformed body.
    Failed(axum::Error),
}

/// Reads `body` but never more than [`MAX_BODY_BYTES`] of it (the router's limit refuses an
/// oversized `Content-Length` before this runs; this stops a body sent without one).
async fn read_small_body(body: Body) -> SmallBody {
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => SmallBody::Read(bytes),
        Err(error) => {
            // The limit is either this read's or the router's; both say so in the chain.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(cause) = source {
                if cause.is::<LengthLimitError>() {
                    return SmallBody::TooLarge;
                }
                source = cause.source();
            }
            SmallBody::Failed(error)
        }
    }
}

/// The `503` when the verifier cannot be asked.
fn verifier_unavailable(status: &tonic::Status) -> Response {
    tracing::warn!(code = ?status.code(), "verifier unavailable");
    refusal_response(
        Api::TrustedPublishing,
        &Refusal::unavailable("The verifier"),
    )
}

/// Reads the `token` string from a JSON object body, with pydantic-like texts for the
/// failures (PyPI validates the body with pydantic). The content type is not required:
/// clients do not reliably send one.
fn token_from_body(body: &[u8]) -> Result<String, String> {
    if body.len() > MAX_BODY_BYTES {
        return Err(TOO_LARGE.to_owned());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "Invalid JSON: the request body is not valid JSON".to_owned())?;
    let Value::Object(object) = value else {
        return Err("Input should be a valid dictionary or instance of TokenPayload".to_owned());
    };
    match object.get("token") {
        Some(Value::String(token)) => Ok(token.clone()),
        Some(_) => Err("token: Input should be a valid string".to_owned()),
        None => Err("token: Field required".to_owned()),
    }
}

/// The payload error of a body over [`MAX_BODY_BYTES`].
const TOO_LARGE: &str = "request body too large";

/// The `400` when the body could not be read at all (axum's text for a failed read).
fn body_unreadable(error: &axum::Error) -> Response {
    tracing::debug!(error = %error, "unreadable request body");
    (
        StatusCode::BAD_REQUEST,
        format!("Failed to buffer the request body: {error}"),
    )
        .into_response()
}

/// Counts one request of the client IP under `limited`; the `429` (or `503`) when it is over.
async fn check_ip_rate(
    gateway: &Gateway,
    limited: Limited,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<(), Refusal> {
    let Some(ip) = client_ip(&gateway.settings.rate_limits, headers, extensions) else {
        return Ok(());
    };
    gateway.check_rate(limited, &ip.to_string()).await
}

/// The answer to a refused exchange, and the operator's one line for it (code and text, as
/// the caller gets them: never the JWT).
fn exchange_refused(refusal: &Refusal) -> Response {
    tracing::info!(
        status = refusal.status(),
        code = %refusal.code,
        message = %refusal.message,
        "token exchange refused"
    );
    refusal_response(Api::TrustedPublishing, refusal)
}

/// `GET /_/oidc/audience`.
#[instrument(skip_all, name = "gateway.oidc_audience")]
pub(crate) async fn audience(State(gateway): State<Gateway>) -> Response {
    let mut verifier = gateway.verifier.clone();
    match verifier.oidc_audience(OidcAudienceRequest {}).await {
        Ok(response) => {
            let response = response.into_inner();
            if response.enabled {
                axum::Json(json!({ "audience": response.audience })).into_response()
            } else {
                (
                    StatusCode::FORBIDDEN,
                    axum::Json(
                        json!({ "message": "Trusted publishing functionality not enabled" }),
                    ),
                )
                    .into_response()
            }
        }
        Err(status) => verifier_unavailable(&status),
    }
}

/// `POST /_/oidc/mint-token` (and the legacy `/_/oidc/github/mint-token` alias).
#[instrument(skip_all, name = "gateway.oidc_mint_token", fields(wharf.oidc.error = tracing::field::Empty))]
pub(crate) async fn mint_token(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    if let Err(refusal) = check_ip_rate(&gateway, Limited::MintPerIp, &headers, &extensions).await {
        return exchange_refused(&refusal);
    }
    // A body without a token is refused by the verifier too, so that every refusal is
    // audited in one place.
    let parsed = match read_small_body(body).await {
        SmallBody::Read(body) => token_from_body(&body),
        // The same refusal as a body read whole and found too long.
        SmallBody::TooLarge => Err(TOO_LARGE.to_owned()),
        SmallBody::Failed(error) => return body_unreadable(&error),
    };
    let request = match parsed {
        Ok(oidc_token) => MintTokenRequest {
            oidc_token,
            payload_error: String::new(),
        },
        Err(payload_error) => MintTokenRequest {
            oidc_token: String::new(),
            payload_error,
        },
    };
    let mut verifier = gateway.verifier.clone();
    // The client span (`gateway.verifier.mint_token`) is the transport's.
    let response = match verifier.mint_token(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return verifier_unavailable(&status),
    };
    match response.result {
        Some(mint_token_response::Result::Minted(minted)) => axum::Json(json!({
            "success": true,
            "token": minted.token,
            "expires": minted.expires,
        }))
        .into_response(),
        Some(mint_token_response::Result::Refused(refusal)) => {
            let refusal = Refusal::from(refusal);
            tracing::Span::current().record("wharf.oidc.error", refusal.code.as_str());
            if refusal.code == ErrorCode::RateLimited {
                gateway.metrics.rate_limited("mint-token-identity");
            }
            exchange_refused(&refusal)
        }
        None => verifier_unavailable(&tonic::Status::internal("empty answer")),
    }
}

/// `POST /_/oidc/burn-token`: revokes a minted token; always 202, whatever happened, unless
/// the client IP is over its burn rate limit (`429`).
#[instrument(skip_all, name = "gateway.oidc_burn_token")]
pub(crate) async fn burn_token(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    // Each burn costs the verifier a token lookup and a signature check.
    if let Err(refusal) = check_ip_rate(&gateway, Limited::BurnPerIp, &headers, &extensions).await {
        return refusal_response(Api::TrustedPublishing, &refusal);
    }
    let body = match read_small_body(body).await {
        SmallBody::Read(body) => body,
        // Too long for a token: nothing to burn, and PyPI's answer is 202 whatever happened.
        SmallBody::TooLarge => Bytes::new(),
        SmallBody::Failed(error) => return body_unreadable(&error),
    };
    if let Ok(token) = token_from_body(&body) {
        let mut verifier = gateway.verifier.clone();
        if let Err(status) = verifier.burn_token(BurnTokenRequest { token }).await {
            tracing::warn!(code = ?status.code(), "could not burn a token");
        }
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "message": "Accepted", "errors": [] })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_must_be_an_object_with_a_string_token() {
        assert_eq!(
            token_from_body(br#"{"token": "a.b.c"}"#),
            Ok("a.b.c".to_owned())
        );
        assert_eq!(
            token_from_body(b"not json").unwrap_err(),
            "Invalid JSON: the request body is not valid JSON"
        );
        assert!(
            token_from_body(b"[1]")
                .unwrap_err()
                .contains("valid dictionary")
        );
        assert_eq!(
            token_from_body(br#"{"token": 1}"#).unwrap_err(),
            "token: Input should be a valid string"
        );
        assert_eq!(token_from_body(b"{}").unwrap_err(), "token: Field required");
        assert_eq!(
            token_from_body(&vec![b' '; MAX_BODY_BYTES + 1]).unwrap_err(),
            "request body too large"
        );
    }
}
