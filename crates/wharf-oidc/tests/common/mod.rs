//! Shared helpers for the integration tests: fixture keys, token signing, fake fetchers and
//! a log capture.
#![allow(dead_code)] // each test file uses a different subset

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wharf_oidc::jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use wharf_oidc::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use wharf_oidc::{FetchError, Issuer, IssuerKind, JwksFetcher, KeyStore, builtin_issuers};

pub(crate) const RSA_ISSUER: &[u8] = include_bytes!("../fixtures/rsa_issuer.pem");
pub(crate) const RSA_ISSUER_PUB: &[u8] = include_bytes!("../fixtures/rsa_issuer.pub.pem");
pub(crate) const RSA_FOREIGN: &[u8] = include_bytes!("../fixtures/rsa_foreign.pem");
pub(crate) const EC_ISSUER: &[u8] = include_bytes!("../fixtures/ec_issuer.pem");

pub(crate) const NOW: i64 = 1_700_000_000;
pub(crate) const AUDIENCE: &str = "wharf";

pub(crate) fn rsa_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).unwrap_or_else(|e| panic!("fixture RSA key: {e}"))
}

pub(crate) fn ec_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_ec_pem(pem).unwrap_or_else(|e| panic!("fixture EC key: {e}"))
}

/// The public JWK of a fixture key, with `kid`, `use: sig` and `alg`.
pub(crate) fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap_or_else(|e| panic!("jwk: {e}"));
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

pub(crate) fn rsa_jwk(kid: &str) -> Jwk {
    jwk(&rsa_key(RSA_ISSUER), Algorithm::RS256, kid)
}

pub(crate) fn ec_jwk(kid: &str) -> Jwk {
    jwk(&ec_key(EC_ISSUER), Algorithm::ES256, kid)
}

pub(crate) fn set(keys: Vec<Jwk>) -> JwkSet {
    JwkSet { keys }
}

pub(crate) fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap_or_else(|e| panic!("sign: {e}"))
}

pub(crate) fn sign_rs256(kid: &str, claims: &Value) -> String {
    sign(Algorithm::RS256, &rsa_key(RSA_ISSUER), Some(kid), claims)
}

/// A compact token from raw header and payload JSON and a raw signature segment.
pub(crate) fn raw_token(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn github() -> Issuer {
    builtin_issuers()
        .into_iter()
        .find(|i| i.kind == IssuerKind::GitHub)
        .unwrap_or_else(|| panic!("github issuer"))
}

pub(crate) fn operator() -> Issuer {
    Issuer::operator(
        "forgejo",
        IssuerKind::Generic,
        "https://code.example.com/api/actions",
    )
}

/// Standard claims valid at `NOW` for `issuer`.
pub(crate) fn claims_for(issuer: &Issuer) -> Value {
    json!({
        "iss": issuer.url,
        "aud": AUDIENCE,
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "exp": NOW + 300,
        "jti": "jti-123",
        "sub": "repo:octo/app:ref:refs/heads/main",
        "repository": "octo/app",
        "repository_owner": "octo",
        "repository_owner_id": "42",
        "job_workflow_ref": "octo/app/.github/workflows/release.yml@refs/heads/main",
        "ref": "refs/heads/main",
        "sha": "abc123",
        "event_name": "push",
    })
}

pub(crate) fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_owned(), value);
    }
    v
}

pub(crate) fn without(mut v: Value, key: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
    v
}

/// What the fake fetcher answers.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Keys(JwkSet),
    Fail,
    MissingJwksUri,
}

/// A fetcher that counts calls and answers whatever it was last told.
#[derive(Debug)]
pub(crate) struct FakeFetcher {
    calls: AtomicUsize,
    answer: Mutex<Answer>,
    delay: Duration,
}

impl FakeFetcher {
    pub(crate) fn new(answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(answer),
            delay: Duration::ZERO,
        })
    }

    pub(crate) fn slow(answer: Answer, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(answer),
            delay,
        })
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = answer;
    }
}

#[async_trait]
impl JwksFetcher for FakeFetcher {
    async fn fetch(&self, issuer: &Issuer) -> Result<JwkSet, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let answer = self
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match answer {
            Answer::Keys(set) => Ok(set),
            Answer::Fail => Err(FetchError::Status {
                url: issuer.url.clone(),
                status: 503,
            }),
            Answer::MissingJwksUri => Err(FetchError::MissingJwksUri {
                issuer: issuer.url.clone(),
            }),
        }
    }
}

/// A key store over a fake fetcher serving the RSA fixture as `k1` and the EC one as `ec1`.
pub(crate) fn store(cooldown: Duration) -> (Arc<FakeFetcher>, KeyStore) {
    let fetcher = FakeFetcher::new(Answer::Keys(set(vec![rsa_jwk("k1"), ec_jwk("ec1")])));
    let store = KeyStore::new(fetcher.clone(), cooldown);
    (fetcher, store)
}

/// Captures everything logged (all levels, span creation included) by every test of the
/// binary: a global subscriber, because a thread-scoped one misses events whose callsite
/// interest another test thread cached first. Tests look for their own unique markers.
#[derive(Clone, Default)]
pub(crate) struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub(crate) fn global() -> LogCapture {
        static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = LogCapture::default();
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::TRACE)
                    .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
                    .with_ansi(false)
                    .with_writer(capture.clone())
                    .finish();
                if tracing::subscriber::set_global_default(subscriber).is_err() {
                    panic!("another global subscriber is installed");
                }
                capture
            })
            .clone()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
