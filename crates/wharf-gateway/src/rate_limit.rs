//! Rate limits on uploads and token exchanges, per client IP and per API token.
//!
//! The counters live in the index database, so every gateway replica sharing it enforces
//! one limit. A refused request gets `429 Too Many Requests` with `Retry-After` seconds.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderName};
use wharf_core::refusal::Refusal;
use wharf_index::RateLimit;

use crate::Gateway;

/// The operator's rate limits; `None` turns a limit off.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    /// Uploads per client IP.
    pub upload_per_ip: Option<RateLimit>,
    /// Uploads per API token (keyed by the token's identifier, never its secret).
    pub upload_per_token: Option<RateLimit>,
    /// Trusted-publishing token exchanges per client IP.
    pub mint_per_ip: Option<RateLimit>,
    /// Trusted-publishing token burns per client IP.
    pub burn_per_ip: Option<RateLimit>,
    /// Projects created by one user (PyPI: 20 an hour).
    pub new_project_per_user: Option<RateLimit>,
    /// Projects created from one client IP (PyPI: 40 an hour).
    pub new_project_per_ip: Option<RateLimit>,
    /// A header set by a trusted reverse proxy that carries the client address (e.g.
    /// `X-Forwarded-For`; its last entry is used). Unset: the socket peer address.
    pub client_ip_header: Option<HeaderName>,
}

/// What a limit counts; each is a separate counter scope in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    UploadPerIp,
    UploadPerToken,
    MintPerIp,
    BurnPerIp,
    NewProjectPerUser,
    NewProjectPerIp,
}

impl Limited {
    fn scope(self) -> &'static str {
        match self {
            Limited::UploadPerIp => "upload-ip",
            Limited::UploadPerToken => "upload-token",
            Limited::MintPerIp => "mint-token-ip",
            Limited::BurnPerIp => "burn-token-ip",
            Limited::NewProjectPerUser => "new-project-user",
            Limited::NewProjectPerIp => "new-project-ip",
        }
    }

    fn limit(self, limits: &RateLimits) -> Option<RateLimit> {
        match self {
            Limited::UploadPerIp => limits.upload_per_ip,
            Limited::UploadPerToken => limits.upload_per_token,
            Limited::MintPerIp => limits.mint_per_ip,
            Limited::BurnPerIp => limits.burn_per_ip,
            Limited::NewProjectPerUser => limits.new_project_per_user,
            Limited::NewProjectPerIp => limits.new_project_per_ip,
        }
    }

    /// The refusal text, in the style of PyPI's `Too many new projects created`.
    pub(crate) fn message(self, retry_after: u64) -> String {
        let what = match self {
            Limited::UploadPerIp => "Too many uploads from this IP address",
            Limited::UploadPerToken => "Too many uploads with this API token",
            Limited::MintPerIp => "Too many token requests from this IP address",
            Limited::BurnPerIp => "Too many token revocations from this IP address",
            // PyPI's exact words (spec a.7).
            Limited::NewProjectPerUser | Limited::NewProjectPerIp => {
                return "Too many new projects created".to_owned();
            }
        };
        let unit = if retry_after == 1 {
            "second"
        } else {
            "seconds"
        };
        format!("{what}. Try again in {retry_after} {unit}.")
    }
}

/// The client address: the trusted proxy header's last entry if configured and parseable,
/// else the socket peer. `None` only when neither is known (a router served without
/// connection info, as in unit tests).
pub(crate) fn client_ip(
    limits: &RateLimits,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Option<IpAddr> {
    let from_header = limits.client_ip_header.as_ref().and_then(|name| {
        // A proxy appends the address it saw, so the last entry is the one it vouches for.
        let last = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        last.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
    });
    from_header.or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
    })
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

impl Gateway {
    /// Counts one request of `key` under `limited`; refuses it when over the limit (`429`
    /// with the seconds to wait) or when the shared counter cannot be reached (`503`).
    pub(crate) async fn check_rate(&self, limited: Limited, key: &str) -> Result<(), Refusal> {
        let Some(limit) = limited.limit(&self.settings.rate_limits) else {
            return Ok(());
        };
        let now = now_micros();
        match self
            .index
            .rate_limit(limited.scope(), key, limit, now)
            .await
        {
            Ok(verdict) => match verdict.retry_after_seconds(now) {
                None => Ok(()),
                Some(retry_after) => {
                    self.metrics.rate_limited(limited.scope());
                    Err(Refusal::rate_limited(
                        limited.message(retry_after),
                        retry_after,
                    ))
                }
            },
            Err(error) => {
                tracing::warn!(error = %error, "rate limit counter unavailable");
                Err(Refusal::unavailable("The index"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(extensions: &mut Extensions, address: &str) {
        extensions.insert(ConnectInfo(address.parse::<SocketAddr>().expect("address")));
    }

    #[test]
    fn the_peer_address_unless_a_proxy_header_is_trusted() {
        let mut extensions = Extensions::new();
        peer(&mut extensions, "192.0.2.7:5000");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.4"),
        );
        let untrusting = RateLimits::default();
        assert_eq!(
            client_ip(&untrusting, &headers, &extensions),
            Some("192.0.2.7".parse().expect("ip"))
        );
        let trusting = RateLimits {
            client_ip_header: Some(HeaderName::from_static("x-forwarded-for")),
            ..RateLimits::default()
        };
        assert_eq!(
            client_ip(&trusting, &headers, &extensions),
            Some("198.51.100.4".parse().expect("ip"))
        );
        // A header that does not parse falls back to the peer.
        headers.insert("x-forwarded-for", HeaderValue::from_static("unknown"));
        assert_eq!(
            client_ip(&trusting, &headers, &extensions),
            Some("192.0.2.7".parse().expect("ip"))
        );
        assert_eq!(client_ip(&untrusting, &headers, &Extensions::new()), None);
    }

    #[test]
    fn messages_name_the_limit_and_the_wait() {
        assert_eq!(
            Limited::UploadPerIp.message(3),
            "Too many uploads from this IP address. Try again in 3 seconds."
        );
        assert_eq!(
            Limited::UploadPerToken.message(1),
            "Too many uploads with this API token. Try again in 1 second."
        );
    }
}
