//! Fetching an issuer's JWKS through OIDC discovery.

use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use reqwest::{Client, Url, redirect};
use serde_json::Value;

use crate::issuer::Issuer;

/// Production defaults: PyPI uses 5 s timeouts; discovery and JWKS documents are a few KiB.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on the size of the discovery and JWKS documents.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 256 * 1024;

const MAX_REDIRECTS: usize = 5;

/// Why a JWKS could not be fetched. The key store logs it and keeps the keys it had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is `http://` and the issuer does not allow plain HTTP, or not http(s) at all.
    #[error("refusing URL {url}: {reason}")]
    InsecureUrl {
        /// The refused URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The request did not finish within the timeout.
    #[error("request to {url} timed out")]
    Timeout {
        /// The URL.
        url: String,
    },
    /// Connection, TLS, redirect or body-read failure.
    #[error("request to {url} failed: {source}")]
    Request {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A non-2xx answer.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document is larger than the configured cap.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The document is not JSON of the expected shape.
    #[error("{url} did not return a JSON object: {detail}")]
    InvalidDocument {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The discovery document has no `jwks_uri`.
    #[error("discovery document of {issuer} has no jwks_uri")]
    MissingJwksUri {
        /// The issuer URL.
        issuer: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Source of an issuer's signing keys. [`HttpJwksFetcher`] in production, fakes in tests.
#[async_trait]
pub trait JwksFetcher: Send + Sync {
    /// The issuer's current key set.
    async fn fetch(&self, issuer: &Issuer) -> Result<JwkSet, FetchError>;
}

/// Fetches `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`.
///
/// Each request has the timeout (connect + headers + body); each document is read in chunks
/// and abandoned as soon as it passes `max_document_bytes`. Plain `http://` URLs, for the
/// issuer, the `jwks_uri` or a redirect, are refused unless the issuer has `allow_http`.
#[derive(Debug, Clone)]
pub struct HttpJwksFetcher {
    https_only: Client,
    http_allowed: Client,
    max_document_bytes: usize,
}

impl HttpJwksFetcher {
    /// A fetcher with this per-request timeout and document size cap.
    pub fn new(timeout: Duration, max_document_bytes: usize) -> Result<Self, FetchError> {
        Ok(Self {
            https_only: build_client(timeout, false)?,
            http_allowed: build_client(timeout, true)?,
            max_document_bytes,
        })
    }

    /// `DEFAULT_FETCH_TIMEOUT` and `DEFAULT_MAX_DOCUMENT_BYTES`.
    pub fn with_defaults() -> Result<Self, FetchError> {
        Self::new(DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_DOCUMENT_BYTES)
    }

    async fn get_json(&self, client: &Client, url: Url) -> Result<Value, FetchError> {
        let shown = url.to_string();
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                FetchError::Timeout { url: shown.clone() }
            } else {
                FetchError::Request {
                    url: shown.clone(),
                    source,
                }
            }
        };
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: shown,
                status: status.as_u16(),
            });
        }
        let limit = self.max_document_bytes;
        let too_large = || FetchError::TooLarge {
            url: shown.clone(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(FetchError::InvalidDocument {
                url: shown,
                detail: "not an object".to_owned(),
            }),
            Err(e) => Err(FetchError::InvalidDocument {
                url: shown,
                detail: e.to_string(),
            }),
        }
    }
}

fn build_client(timeout: Duration, allow_http: bool) -> Result<Client, FetchError> {
    let policy = redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if !allow_http && attempt.url().scheme() != "https" {
            attempt.error("redirect to a non-https URL")
        } else {
            attempt.follow()
        }
    });
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(policy)
        .user_agent(concat!("wharf-oidc/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(FetchError::Client)
}

/// Parses `url` and refuses anything but https (or http when allowed).
pub(crate) fn checked_url(url: &str, allow_http: bool) -> Result<Url, FetchError> {
    let refuse = |reason| FetchError::InsecureUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|_| refuse("not a valid URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(refuse("plain http is not allowed for this issuer")),
        _ => return Err(refuse("not an http(s) URL")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(refuse("no host"));
    }
    Ok(parsed)
}

/// `<issuer>/.well-known/openid-configuration`.
pub(crate) fn discovery_url(issuer: &Issuer) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.url.trim_end_matches('/')
    )
}

/// Reads `{"keys": [...]}` leniently: a key this crate cannot parse is skipped, not fatal.
pub(crate) fn parse_jwk_set(url: &str, document: &Value) -> Result<JwkSet, FetchError> {
    let Some(keys) = document.get("keys").and_then(Value::as_array) else {
        return Err(FetchError::InvalidDocument {
            url: url.to_owned(),
            detail: "no \"keys\" array".to_owned(),
        });
    };
    let mut set = JwkSet {
        keys: Vec::with_capacity(keys.len()),
    };
    for key in keys {
        match serde_json::from_value::<Jwk>(key.clone()) {
            Ok(jwk) => set.keys.push(jwk),
            Err(e) => tracing::debug!(%url, error = %e, "skipping unreadable JWK"),
        }
    }
    Ok(set)
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self, issuer: &Issuer) -> Result<JwkSet, FetchError> {
        let client = if issuer.allow_http {
            &self.http_allowed
        } else {
            &self.https_only
        };
        let discovery = checked_url(&discovery_url(issuer), issuer.allow_http)?;
        let config = self.get_json(client, discovery).await?;
        let Some(jwks_uri) = config.get("jwks_uri").and_then(Value::as_str) else {
            return Err(FetchError::MissingJwksUri {
                issuer: issuer.url.clone(),
            });
        };
        let jwks_url = checked_url(jwks_uri, issuer.allow_http)?;
        let document = self.get_json(client, jwks_url).await?;
        parse_jwk_set(jwks_uri, &document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::IssuerKind;

    #[test]
    fn url_checks() {
        assert!(checked_url("https://example.com/jwks", false).is_ok());
        assert!(checked_url("http://example.com/jwks", true).is_ok());
        for (url, allow) in [
            ("http://example.com/jwks", false),
            ("ftp://example.com/jwks", true),
            ("file:///etc/passwd", true),
            ("javascript:alert(1)", true),
            ("/relative", true),
            ("", true),
        ] {
            assert!(
                matches!(checked_url(url, allow), Err(FetchError::InsecureUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn discovery_url_ignores_trailing_slash() {
        let i = Issuer::operator("x", IssuerKind::Generic, "https://ci.example.com/oidc/");
        assert_eq!(
            discovery_url(&i),
            "https://ci.example.com/oidc/.well-known/openid-configuration"
        );
    }

    #[test]
    fn jwk_set_parsing_skips_bad_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "RSA", "kid": "broken"},
            "not a key",
        ]});
        // The incomplete RSA key still parses (as an "other" key; the key store drops it);
        // the string is skipped.
        let set = parse_jwk_set("u", &doc).map(|s| s.keys.len());
        assert_eq!(set.ok(), Some(2));
        assert!(parse_jwk_set("u", &serde_json::json!({"nokeys": []})).is_err());
    }
}
