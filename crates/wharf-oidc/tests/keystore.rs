//! The key store: refresh at most once per cool-down per issuer, old keys kept when a
//! refresh yields nothing, rotation, and the `oidc.jwks_fetch` span.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use wharf_oidc::{ErrorCode, KeyStore, verify_token};

const HOUR: Duration = Duration::from_secs(3600);

async fn kid_ok(store: &KeyStore, kid: &str) -> bool {
    store.decoding_key(&github(), kid).await.is_ok()
}

#[tokio::test]
async fn known_kids_are_served_from_the_cache() {
    let (fetcher, store) = store(HOUR);
    for _ in 0..5 {
        assert!(kid_ok(&store, "k1").await);
        assert!(kid_ok(&store, "ec1").await);
    }
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(
        store.cached_kids(&github()),
        vec!["ec1".to_owned(), "k1".to_owned()]
    );
}

#[tokio::test]
async fn unknown_kid_refreshes_at_most_once_per_cooldown() {
    let (fetcher, store) = store(HOUR);
    assert!(kid_ok(&store, "k1").await);
    assert_eq!(fetcher.calls(), 1);
    for kid in ["a", "b", "c", "a"] {
        let err = store
            .decoding_key(&github(), kid)
            .await
            .err()
            .map(|e| e.code);
        assert_eq!(err, Some(ErrorCode::InvalidToken));
    }
    // The first unknown kid fell inside the cool-down of the initial fetch.
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test]
async fn the_cooldown_is_per_issuer() {
    let (fetcher, store) = store(HOUR);
    assert!(!kid_ok(&store, "nope").await);
    assert!(store.decoding_key(&operator(), "nope").await.is_err());
    assert_eq!(fetcher.calls(), 2);
    assert!(store.decoding_key(&operator(), "k1").await.is_ok());
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn refresh_happens_again_after_the_cooldown() {
    let (fetcher, store) = store(Duration::from_millis(200));
    assert!(!kid_ok(&store, "new").await);
    assert!(!kid_ok(&store, "new").await);
    assert_eq!(fetcher.calls(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    fetcher.answer(Answer::Keys(set(vec![rsa_jwk("new")])));
    assert!(
        kid_ok(&store, "new").await,
        "rotated key picked up after the cool-down"
    );
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn old_keys_survive_a_failing_refresh() {
    let (fetcher, store) = store(Duration::ZERO);
    assert!(kid_ok(&store, "k1").await);
    for failure in [
        Answer::Fail,
        Answer::MissingJwksUri,
        Answer::Keys(set(vec![])),
    ] {
        fetcher.answer(failure.clone());
        assert!(!kid_ok(&store, "unknown").await);
        assert!(kid_ok(&store, "k1").await, "k1 lost after {failure:?}");
    }
    assert_eq!(fetcher.calls(), 4);
    // And a token signed with the old key still verifies.
    let token = sign_rs256("k1", &claims_for(&github()));
    assert!(
        verify_token(&token, &github(), AUDIENCE, &store, NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_set_of_only_unusable_keys_keeps_the_old_ones() {
    let (fetcher, store) = store(Duration::ZERO);
    assert!(kid_ok(&store, "k1").await);
    let mut no_kid = rsa_jwk("x");
    no_kid.common.key_id = None;
    fetcher.answer(Answer::Keys(set(vec![no_kid])));
    assert!(!kid_ok(&store, "x").await);
    assert!(kid_ok(&store, "k1").await);
}

#[tokio::test]
async fn a_successful_refresh_replaces_the_set() {
    let (fetcher, store) = store(Duration::ZERO);
    assert!(kid_ok(&store, "k1").await);
    fetcher.answer(Answer::Keys(set(vec![rsa_jwk("k2")])));
    assert!(kid_ok(&store, "k2").await);
    // k1 was revoked by the issuer.
    assert_eq!(store.cached_kids(&github()), vec!["k2".to_owned()]);
    assert!(!kid_ok(&store, "k1").await);
}

#[tokio::test]
async fn the_first_fetch_failing_starts_the_cooldown_too() {
    let fetcher = FakeFetcher::new(Answer::Fail);
    let store = KeyStore::new(fetcher.clone(), HOUR);
    assert!(!kid_ok(&store, "k1").await);
    fetcher.answer(Answer::Keys(set(vec![rsa_jwk("k1")])));
    assert!(!kid_ok(&store, "k1").await);
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_fetch_once() {
    let fetcher = FakeFetcher::slow(
        Answer::Keys(set(vec![rsa_jwk("k1")])),
        Duration::from_millis(100),
    );
    let store = Arc::new(KeyStore::new(fetcher.clone(), HOUR));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let kid = if i % 2 == 0 {
                "k1".to_owned()
            } else {
                format!("unknown-{i}")
            };
            store.decoding_key(&github(), &kid).await.is_ok()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap_or(false) {
            ok += 1;
        }
    }
    assert_eq!(ok, 16);
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test]
async fn forget_drops_an_issuer() {
    let (fetcher, store) = store(HOUR);
    assert!(kid_ok(&store, "k1").await);
    store.forget(&github());
    assert!(store.cached_kids(&github()).is_empty());
    assert!(kid_ok(&store, "k1").await);
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn each_fetch_has_a_span_with_the_issuer_url() {
    let logs = LogCapture::global();
    let (_, store) = store(HOUR);
    let issuer = wharf_oidc::Issuer::operator(
        "span-test",
        wharf_oidc::IssuerKind::Generic,
        "https://span-test.example",
    );
    assert!(store.decoding_key(&issuer, "k1").await.is_ok());
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("oidc.jwks_fetch{issuer=https://span-test.example")),
        "{text}"
    );
}
