//! `HttpJwksFetcher` against a local HTTP server: discovery then JWKS, size caps, timeouts,
//! and plain HTTP only when the issuer allows it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wharf_oidc::{
    FetchError, HttpJwksFetcher, Issuer, IssuerKind, JwksFetcher, KeyStore, verify_token,
};

/// One canned answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    /// Send `Content-Length` (otherwise the body ends when the connection closes).
    content_length: bool,
    /// Wait before sending anything.
    delay: Duration,
    /// Wait after the headers, before the body.
    body_delay: Duration,
}

impl Reply {
    fn json(value: serde_json::Value) -> Self {
        Self {
            status: 200,
            body: value.to_string().into_bytes(),
            content_length: true,
            delay: Duration::ZERO,
            body_delay: Duration::ZERO,
        }
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1:0 answering by path; counts requests.
struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (Arc::clone(&routes), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (routes, hits) = (Arc::clone(&r), Arc::clone(&h));
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024
                    {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let reply = routes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&path)
                        .cloned();
                    let reply = reply.unwrap_or(Reply {
                        status: 404,
                        ..Reply::json(json!({}))
                    });
                    tokio::time::sleep(reply.delay).await;
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nConnection: close\r\n",
                        reply.status
                    );
                    if reply.content_length {
                        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
                    }
                    head.push_str("\r\n");
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = socket.flush().await;
                    tokio::time::sleep(reply.body_delay).await;
                    let _ = socket.write_all(&reply.body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            addr,
            routes,
            hits,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn route(&self, path: &str, reply: Reply) {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), reply);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Discovery pointing at `/jwks` and a JWKS with the RSA fixture as `k1`.
    fn serve_issuer(&self) {
        self.route(
            "/.well-known/openid-configuration",
            Reply::json(json!({"issuer": self.url(), "jwks_uri": format!("{}/jwks", self.url())})),
        );
        self.route(
            "/jwks",
            Reply::json(serde_json::to_value(set(vec![rsa_jwk("k1")])).unwrap_or_default()),
        );
    }

    fn issuer(&self, allow_http: bool) -> Issuer {
        Issuer::operator("local", IssuerKind::Generic, self.url()).with_allow_http(allow_http)
    }
}

fn fetcher(timeout_ms: u64, max: usize) -> HttpJwksFetcher {
    HttpJwksFetcher::new(Duration::from_millis(timeout_ms), max)
        .unwrap_or_else(|e| panic!("client: {e}"))
}

#[tokio::test]
async fn discovery_then_jwks() {
    let server = Server::start().await;
    server.serve_issuer();
    let set = fetcher(2000, 64 * 1024).fetch(&server.issuer(true)).await;
    let kids: Vec<Option<String>> = set
        .map(|s| s.keys.into_iter().map(|k| k.common.key_id).collect())
        .unwrap_or_default();
    assert_eq!(kids, vec![Some("k1".to_owned())]);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn end_to_end_verification_through_http() {
    let server = Server::start().await;
    server.serve_issuer();
    let issuer = server.issuer(true);
    let store = KeyStore::new(Arc::new(fetcher(2000, 64 * 1024)), Duration::from_secs(60));
    let token = sign_rs256("k1", &claims_for(&issuer));
    let claims = verify_token(&token, &issuer, AUDIENCE, &store, NOW).await;
    assert_eq!(
        claims
            .map(|c| c.get_str("repository").map(str::to_owned))
            .ok(),
        Some(Some("octo/app".to_owned()))
    );
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let server = Server::start().await;
    server.serve_issuer();
    let result = fetcher(2000, 64 * 1024).fetch(&server.issuer(false)).await;
    assert!(
        matches!(result, Err(FetchError::InsecureUrl { .. })),
        "{result:?}"
    );
    assert_eq!(server.hits(), 0, "no request may be sent");
}

#[tokio::test]
async fn jwks_uri_must_be_http_s_and_present() {
    let server = Server::start().await;
    let fetcher = fetcher(2000, 64 * 1024);
    for uri in ["file:///etc/passwd", "ftp://127.0.0.1/jwks", "not a url"] {
        server.route(
            "/.well-known/openid-configuration",
            Reply::json(json!({"jwks_uri": uri})),
        );
        let result = fetcher.fetch(&server.issuer(true)).await;
        assert!(
            matches!(result, Err(FetchError::InsecureUrl { .. })),
            "{uri}: {result:?}"
        );
    }
    server.route(
        "/.well-known/openid-configuration",
        Reply::json(json!({"issuer": server.url()})),
    );
    let result = fetcher.fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::MissingJwksUri { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn oversize_documents_are_rejected() {
    let server = Server::start().await;
    server.serve_issuer();
    let big =
        json!({"jwks_uri": format!("{}/jwks", server.url()), "padding": "x".repeat(8 * 1024)});
    // Announced by Content-Length…
    server.route(
        "/.well-known/openid-configuration",
        Reply::json(big.clone()),
    );
    let result = fetcher(2000, 4096).fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::TooLarge { limit: 4096, .. })),
        "{result:?}"
    );
    // …or only noticed while streaming the body.
    server.route(
        "/.well-known/openid-configuration",
        Reply {
            content_length: false,
            ..Reply::json(big)
        },
    );
    let result = fetcher(2000, 4096).fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::TooLarge { .. })),
        "{result:?}"
    );
    // The JWKS document has the same cap.
    server.serve_issuer();
    let many = set((0..40).map(|i| rsa_jwk(&format!("k{i}"))).collect());
    server.route(
        "/jwks",
        Reply::json(serde_json::to_value(many).unwrap_or_default()),
    );
    let result = fetcher(2000, 4096).fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::TooLarge { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn slow_servers_hit_the_timeout() {
    let server = Server::start().await;
    server.serve_issuer();
    // No answer at all within the timeout.
    server.route(
        "/.well-known/openid-configuration",
        Reply {
            delay: Duration::from_secs(3),
            ..Reply::json(json!({"jwks_uri": format!("{}/jwks", server.url())}))
        },
    );
    let started = std::time::Instant::now();
    let result = fetcher(300, 64 * 1024).fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Headers quickly, then a stalled body.
    server.serve_issuer();
    server.route(
        "/jwks",
        Reply {
            body_delay: Duration::from_secs(3),
            ..Reply::json(serde_json::to_value(set(vec![rsa_jwk("k1")])).unwrap_or_default())
        },
    );
    let started = std::time::Instant::now();
    let result = fetcher(300, 64 * 1024).fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn error_statuses_and_bad_documents() {
    let server = Server::start().await;
    let fetcher = fetcher(2000, 64 * 1024);
    // Nothing routed: 404 on discovery.
    let result = fetcher.fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::Status { status: 404, .. })),
        "{result:?}"
    );
    server.serve_issuer();
    server.route(
        "/jwks",
        Reply {
            status: 500,
            ..Reply::json(json!({}))
        },
    );
    let result = fetcher.fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::Status { status: 500, .. })),
        "{result:?}"
    );
    server.route(
        "/jwks",
        Reply {
            body: b"<html>".to_vec(),
            ..Reply::json(json!({}))
        },
    );
    let result = fetcher.fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::InvalidDocument { .. })),
        "{result:?}"
    );
    server.route("/jwks", Reply::json(json!(["not", "an", "object"])));
    let result = fetcher.fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::InvalidDocument { .. })),
        "{result:?}"
    );
    server.route("/jwks", Reply::json(json!({"no_keys": []})));
    let result = fetcher.fetch(&server.issuer(true)).await;
    assert!(
        matches!(result, Err(FetchError::InvalidDocument { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_failing_issuer_keeps_cached_keys_through_http() {
    let server = Server::start().await;
    server.serve_issuer();
    let issuer = server.issuer(true);
    let store = KeyStore::new(Arc::new(fetcher(2000, 64 * 1024)), Duration::ZERO);
    assert!(store.decoding_key(&issuer, "k1").await.is_ok());
    server.route(
        "/jwks",
        Reply {
            status: 503,
            ..Reply::json(json!({}))
        },
    );
    assert!(store.decoding_key(&issuer, "k2").await.is_err());
    assert!(store.decoding_key(&issuer, "k1").await.is_ok());
}
