//! The whole exchange as the verifier service runs it: peek → issuer → verify → match →
//! replay-guard inputs, with real signatures.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use wharf_oidc::{
    Candidate, ErrorCode, GitHubPolicy, Issuer, Matched, PublisherPolicy, Refusal, builtin_issuers,
    expires_at, jti_of, match_publisher, peek_unverified, verify_token,
};

fn policy() -> PublisherPolicy {
    PublisherPolicy::GitHub(GitHubPolicy {
        owner: "octo".into(),
        owner_id: None,
        repository: "app".into(),
        workflow: "release.yml".into(),
        environment: None,
        workflow_repository: None,
        workflow_path: None,
    })
}

/// What the verifier does, minus storage.
async fn exchange(
    jwt: &str,
    issuers: &[Issuer],
    store: &wharf_oidc::KeyStore,
    candidates: &[Candidate<'_>],
) -> Result<(Matched, Option<String>, Option<i64>), Refusal> {
    let unverified = peek_unverified(jwt)?;
    let issuer = issuers
        .iter()
        .find(|i| i.url == unverified.issuer)
        .ok_or_else(wharf_core::messages::trusted_publishing::unknown_issuer)?;
    let claims = verify_token(jwt, issuer, AUDIENCE, store, NOW).await?;
    let matched = match_publisher(candidates, issuer, &claims)?;
    Ok((
        matched,
        jti_of(&claims).map(str::to_owned),
        expires_at(&claims),
    ))
}

#[tokio::test]
async fn github_exchange_end_to_end() {
    let (_, store) = store(Duration::from_secs(60));
    let issuers = builtin_issuers();
    let policy = policy();
    let candidates = [Candidate {
        id: "pub-1",
        label: "github:octo/app release.yml",
        policy: &policy,
    }];
    let token = sign_rs256("k1", &claims_for(&github()));
    let result = exchange(&token, &issuers, &store, &candidates).await;
    assert_eq!(
        result,
        Ok((
            Matched {
                id: "pub-1".into(),
                pin_owner_id: Some("42".into()),
                stored_claims: json!({"ref": "refs/heads/main", "sha": "abc123"}),
                publisher_url: Some("https://github.com/octo/app/commit/abc123".into()),
            },
            Some("jti-123".into()),
            Some(NOW + 300),
        ))
    );
}

#[tokio::test]
async fn each_stage_fails_with_pypis_code() {
    let (_, store) = store(Duration::from_secs(60));
    let issuers = builtin_issuers();
    let policy = policy();
    let candidates = [Candidate {
        id: "pub-1",
        label: "github:octo/app release.yml",
        policy: &policy,
    }];
    let code = |r: Result<_, Refusal>| r.err().map(|e| (e.code, e.message));

    assert_eq!(
        code(exchange("not-a-jwt", &issuers, &store, &candidates).await),
        Some((ErrorCode::InvalidPayload, "malformed JWT".into()))
    );
    let stranger = sign_rs256(
        "k1",
        &with(
            claims_for(&github()),
            "iss",
            json!("https://ci.stranger.example"),
        ),
    );
    assert_eq!(
        code(exchange(&stranger, &issuers, &store, &candidates).await),
        Some((
            ErrorCode::InvalidPayload,
            "unknown trusted publishing issuer".into()
        ))
    );
    let expired = sign_rs256("k1", &with(claims_for(&github()), "exp", json!(NOW - 100)));
    assert_eq!(
        code(exchange(&expired, &issuers, &store, &candidates).await),
        Some((ErrorCode::InvalidToken, "malformed or invalid token".into()))
    );
    // Another repository of the publisher's owner: explained.
    let other_repo = sign_rs256(
        "k1",
        &with(
            with(claims_for(&github()), "repository", json!("octo/lib")),
            "job_workflow_ref",
            json!("octo/lib/.github/workflows/release.yml@refs/heads/main"),
        ),
    );
    assert_eq!(
        code(exchange(&other_repo, &issuers, &store, &candidates).await),
        Some((
            ErrorCode::InvalidPublisher,
            "valid token, but no corresponding publisher (Publisher with matching claims was not found). \
             Closest publisher: github:octo/app release.yml: claim 'repository' expected 'octo/app'; \
             claim 'job_workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
                .into()
        ))
    );
    // Another owner's repository: PyPI's bare text, none of the publisher's configuration.
    let stranger = sign_rs256(
        "k1",
        &with(
            with(
                with(
                    with(claims_for(&github()), "repository", json!("mallory/app")),
                    "repository_owner",
                    json!("mallory"),
                ),
                "repository_owner_id",
                json!("666"),
            ),
            "job_workflow_ref",
            json!("mallory/app/.github/workflows/release.yml@refs/heads/main"),
        ),
    );
    assert_eq!(
        code(exchange(&stranger, &issuers, &store, &candidates).await),
        Some((
            ErrorCode::InvalidPublisher,
            "valid token, but no corresponding publisher (Publisher with matching claims was not found)"
                .into()
        ))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Mutating any byte of a valid token never panics and never verifies.
    #[test]
    fn mutated_tokens_never_panic_or_pass(index in 0usize..4096, byte in any::<u8>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let Ok(runtime) = runtime else { return Err(TestCaseError::fail("runtime")) };
        let token = sign_rs256("k1", &claims_for(&github()));
        let mut bytes = token.into_bytes();
        let i = index % bytes.len();
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let _ = peek_unverified(&mutated);
        let (_, store) = store(Duration::from_secs(60));
        let verified = runtime.block_on(verify_token(&mutated, &github(), AUDIENCE, &store, NOW));
        // Decoding is strict base64url (no spare-bit variants), so every mutation fails.
        prop_assert!(verified.is_err());
    }
}
