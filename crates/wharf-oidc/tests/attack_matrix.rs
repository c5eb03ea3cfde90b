//! Attack matrix on `verify_token` with real RSA and EC keys: every forged, stale or
//! misaddressed token is refused with `invalid-token` / `malformed or invalid token`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use wharf_oidc::jsonwebtoken::jwk::{Jwk, KeyAlgorithm};
use wharf_oidc::jsonwebtoken::{Algorithm, EncodingKey};
use wharf_oidc::{ErrorCode, Issuer, KeyStore, MAX_JWT_BYTES, Refusal, verify_token};

const HOUR: Duration = Duration::from_secs(3600);

async fn verify(
    token: &str,
    issuer: &Issuer,
    store: &KeyStore,
) -> Result<wharf_oidc::Claims, Refusal> {
    verify_token(token, issuer, AUDIENCE, store, NOW).await
}

fn assert_invalid_token(result: Result<wharf_oidc::Claims, Refusal>, case: &str) {
    match result {
        Ok(_) => panic!("{case}: accepted"),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidToken, "{case}");
            assert_eq!(e.message, "malformed or invalid token", "{case}");
        }
    }
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let token = sign_rs256("k1", &claims_for(&issuer));
    let claims = verify(&token, &issuer, &store).await.map_err(|e| e.message);
    let claims = claims.as_ref().map(|c| {
        (
            c.get_str("repository"),
            wharf_oidc::jti_of(c),
            wharf_oidc::expires_at(c),
        )
    });
    assert_eq!(
        claims,
        Ok((Some("octo/app"), Some("jti-123"), Some(NOW + 300)))
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let claims = claims_for(&issuer);
    for header in [
        json!({"alg": "none", "kid": "k1"}),
        json!({"alg": "None", "kid": "k1"}),
        json!({"alg": "NONE"}),
    ] {
        for signature in ["", "AAAA"] {
            let token = raw_token(&header, &claims, signature);
            assert_invalid_token(
                verify(&token, &issuer, &store).await,
                &format!("{header} sig={signature:?}"),
            );
        }
    }
    // Nor without a signature segment at all.
    let token = raw_token(&json!({"alg": "none", "kid": "k1"}), &claims, "");
    let token = token.trim_end_matches('.');
    assert_invalid_token(verify(token, &issuer, &store).await, "two segments");
}

#[tokio::test]
async fn hmac_keyed_with_the_rsa_public_key_is_refused() {
    let (_, store) = store(HOUR);
    let issuer = operator();
    let claims = claims_for(&issuer);
    // The classic algorithm-confusion forgery: HS256 with the PEM (and the raw modulus) of the
    // issuer's public key as the shared secret, under the RSA key's kid.
    let modulus = match &rsa_jwk("k1").algorithm {
        wharf_oidc::jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => rsa.n.clone(),
        _ => String::new(),
    };
    for secret in [RSA_ISSUER_PUB.to_vec(), modulus.into_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &EncodingKey::from_secret(&secret), Some("k1"), &claims);
            assert_invalid_token(verify(&token, &issuer, &store).await, &format!("{alg:?}"));
        }
    }
}

#[tokio::test]
async fn symmetric_keys_in_the_jwks_are_never_used() {
    let secret = b"shared-secret-from-a-confused-issuer";
    let oct: Jwk = serde_json::from_value(json!({
        "kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64(secret)
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let fetcher = FakeFetcher::new(Answer::Keys(set(vec![oct, rsa_jwk("k1")])));
    let store = KeyStore::new(fetcher, HOUR);
    let issuer = operator();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret),
        Some("hmac"),
        &claims_for(&issuer),
    );
    assert_invalid_token(verify(&token, &issuer, &store).await, "oct key");
}

#[tokio::test]
async fn a_foreign_key_under_a_known_kid_is_refused() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let token = sign(
        Algorithm::RS256,
        &rsa_key(RSA_FOREIGN),
        Some("k1"),
        &claims_for(&issuer),
    );
    assert_invalid_token(verify(&token, &issuer, &store).await, "foreign key");
}

#[tokio::test]
async fn unknown_missing_or_empty_kid_is_refused() {
    let (fetcher, store) = store(HOUR);
    let issuer = github();
    let claims = claims_for(&issuer);
    let token = sign_rs256("k-unknown", &claims);
    assert_invalid_token(verify(&token, &issuer, &store).await, "unknown kid");
    assert_invalid_token(verify(&token, &issuer, &store).await, "unknown kid again");
    // One fetch for the first unknown kid, none for the second within the cool-down.
    assert_eq!(fetcher.calls(), 1);
    let no_kid = sign(Algorithm::RS256, &rsa_key(RSA_ISSUER), None, &claims);
    assert_invalid_token(verify(&no_kid, &issuer, &store).await, "no kid");
    let empty_kid = sign(Algorithm::RS256, &rsa_key(RSA_ISSUER), Some(""), &claims);
    assert_invalid_token(verify(&empty_kid, &issuer, &store).await, "empty kid");
    let numeric_kid = raw_token(&json!({"alg": "RS256", "kid": 1}), &claims, "AAAA");
    assert_invalid_token(verify(&numeric_kid, &issuer, &store).await, "numeric kid");
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let token = sign_rs256("k1", &claims_for(&issuer));
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _payload, signature] = parts[..] else {
        panic!("three segments")
    };

    let forged = with(claims_for(&issuer), "repository", json!("evil/app"));
    let tampered = format!("{header}.{}.{signature}", b64(forged.to_string()));
    assert_invalid_token(verify(&tampered, &issuer, &store).await, "tampered payload");

    let other_header = b64(json!({"alg": "RS256", "kid": "k1", "typ": "JWT", "x": 1}).to_string());
    let tampered = format!("{other_header}.{}", parts[1..].join("."));
    assert_invalid_token(verify(&tampered, &issuer, &store).await, "tampered header");

    let mut sig = signature.to_owned();
    let last = if sig.ends_with('A') { 'B' } else { 'A' };
    sig.pop();
    sig.push(last);
    let tampered = format!("{header}.{}.{sig}", parts[1]);
    assert_invalid_token(
        verify(&tampered, &issuer, &store).await,
        "tampered signature",
    );

    let truncated = format!(
        "{header}.{}.{}",
        parts[1],
        &signature[..signature.len() / 2]
    );
    assert_invalid_token(
        verify(&truncated, &issuer, &store).await,
        "truncated signature",
    );
    assert_invalid_token(
        verify(&format!("{token}.extra"), &issuer, &store).await,
        "four segments",
    );
}

#[tokio::test]
async fn time_claims_with_30s_leeway() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let base = claims_for(&issuer);
    let ok = |v: Value| sign_rs256("k1", &v);
    let accepted = [
        (
            "exp just inside leeway",
            with(base.clone(), "exp", json!(NOW - 29)),
        ),
        (
            "nbf at the leeway edge",
            with(base.clone(), "nbf", json!(NOW + 30)),
        ),
        (
            "iat at the leeway edge",
            with(base.clone(), "iat", json!(NOW + 30)),
        ),
        ("no nbf", without(base.clone(), "nbf")),
        (
            "fractional dates",
            with(
                with(base.clone(), "exp", json!(NOW as f64 + 60.5)),
                "iat",
                json!(NOW as f64 - 0.5),
            ),
        ),
    ];
    for (case, claims) in accepted {
        assert!(verify(&ok(claims), &issuer, &store).await.is_ok(), "{case}");
    }
    let refused = [
        ("expired", with(base.clone(), "exp", json!(NOW - 31))),
        (
            "expired at the leeway edge",
            with(base.clone(), "exp", json!(NOW - 30)),
        ),
        ("future nbf", with(base.clone(), "nbf", json!(NOW + 31))),
        (
            "iat in the future",
            with(base.clone(), "iat", json!(NOW + 31)),
        ),
        ("string exp", with(base.clone(), "exp", json!("9999999999"))),
        ("null nbf", with(base.clone(), "nbf", Value::Null)),
        ("boolean iat", with(base.clone(), "iat", json!(true))),
        ("missing exp", without(base.clone(), "exp")),
        ("missing iat", without(base.clone(), "iat")),
    ];
    for (case, claims) in refused {
        assert_invalid_token(verify(&ok(claims), &issuer, &store).await, case);
    }
}

#[tokio::test]
async fn audience_and_issuer() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let base = claims_for(&issuer);
    let refused = [
        (
            "aud as a list containing the audience",
            with(base.clone(), "aud", json!([AUDIENCE])),
        ),
        (
            "aud as a list of two",
            with(base.clone(), "aud", json!([AUDIENCE, "pypi"])),
        ),
        ("wrong aud", with(base.clone(), "aud", json!("pypi"))),
        (
            "aud differing in case",
            with(base.clone(), "aud", json!("Wharf")),
        ),
        ("missing aud", without(base.clone(), "aud")),
        ("null aud", with(base.clone(), "aud", Value::Null)),
        (
            "wrong iss",
            with(base.clone(), "iss", json!("https://gitlab.com")),
        ),
        (
            "iss with a trailing slash",
            with(base.clone(), "iss", json!(format!("{}/", issuer.url))),
        ),
        (
            "iss as a list",
            with(base.clone(), "iss", json!([issuer.url])),
        ),
        ("missing iss", without(base.clone(), "iss")),
    ];
    for (case, claims) in refused {
        assert_invalid_token(
            verify(&sign_rs256("k1", &claims), &issuer, &store).await,
            case,
        );
    }
    // A token minted for a test instance's audience is refused by production, and back.
    let token = sign_rs256("k1", &with(base, "aud", json!("wharf-test")));
    assert!(
        verify_token(&token, &issuer, "wharf-test", &store, NOW)
            .await
            .is_ok()
    );
    assert_invalid_token(
        verify_token(&token, &issuer, "wharf", &store, NOW).await,
        "other instance",
    );
}

#[tokio::test]
async fn token_for_one_issuer_is_refused_by_another_with_the_same_keys() {
    let (_, store) = store(HOUR);
    let token = sign_rs256("k1", &claims_for(&operator()));
    assert_invalid_token(verify(&token, &github(), &store).await, "cross-issuer");
}

#[tokio::test]
async fn es256_only_for_operator_issuers() {
    let (_, store) = store(HOUR);
    let builtin = github();
    let token = sign(
        Algorithm::ES256,
        &ec_key(EC_ISSUER),
        Some("ec1"),
        &claims_for(&builtin),
    );
    assert_invalid_token(
        verify(&token, &builtin, &store).await,
        "ES256 from a built-in issuer",
    );

    let op = operator();
    let token = sign(
        Algorithm::ES256,
        &ec_key(EC_ISSUER),
        Some("ec1"),
        &claims_for(&op),
    );
    assert!(
        verify(&token, &op, &store).await.is_ok(),
        "ES256 from an operator issuer"
    );
    assert!(
        verify(&sign_rs256("k1", &claims_for(&op)), &op, &store)
            .await
            .is_ok(),
        "RS256 from an operator issuer"
    );
}

#[tokio::test]
async fn the_header_algorithm_must_be_the_keys() {
    let (_, store) = store(HOUR);
    let op = operator();
    let claims = claims_for(&op);
    // RS256 header naming the EC key, and ES256 header naming the RSA key.
    let token = sign(Algorithm::RS256, &rsa_key(RSA_ISSUER), Some("ec1"), &claims);
    assert_invalid_token(verify(&token, &op, &store).await, "RS256 token, EC key");
    let token = sign(Algorithm::ES256, &ec_key(EC_ISSUER), Some("k1"), &claims);
    assert_invalid_token(verify(&token, &op, &store).await, "ES256 token, RSA key");
    // Other RSA algorithms, even with the right key.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let token = sign(alg, &rsa_key(RSA_ISSUER), Some("k1"), &claims);
        assert_invalid_token(verify(&token, &op, &store).await, &format!("{alg:?}"));
    }
}

#[tokio::test]
async fn a_jwk_whose_alg_contradicts_its_key_type_is_dropped() {
    let mut confused = rsa_jwk("k1");
    confused.common.key_algorithm = Some(KeyAlgorithm::ES256);
    let fetcher = FakeFetcher::new(Answer::Keys(set(vec![confused])));
    let store = KeyStore::new(fetcher, HOUR);
    let op = operator();
    let token = sign_rs256("k1", &claims_for(&op));
    assert_invalid_token(verify(&token, &op, &store).await, "RSA key labelled ES256");
}

#[tokio::test]
async fn crit_headers_and_oversized_tokens_are_refused() {
    let (_, store) = store(HOUR);
    let issuer = github();
    let mut header = wharf_oidc::jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.crit = Some(vec!["exp".into()]);
    let token =
        wharf_oidc::jsonwebtoken::encode(&header, &claims_for(&issuer), &rsa_key(RSA_ISSUER))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_invalid_token(verify(&token, &issuer, &store).await, "crit");

    let big = with(
        claims_for(&issuer),
        "padding",
        json!("x".repeat(MAX_JWT_BYTES)),
    );
    assert_invalid_token(
        verify(&sign_rs256("k1", &big), &issuer, &store).await,
        "oversized",
    );
}

#[tokio::test]
async fn garbage_is_refused() {
    let (_, store) = store(HOUR);
    let issuer = github();
    for token in [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "\u{0}\u{1}.x.y",
    ] {
        assert_invalid_token(verify(token, &issuer, &store).await, token);
    }
}

#[tokio::test]
async fn refusals_log_the_reason_never_the_token() {
    let logs = LogCapture::global();
    let (_, store) = store(HOUR);
    let issuer = Issuer::operator(
        "log-test",
        wharf_oidc::IssuerKind::Generic,
        "https://log-test.example",
    );
    let token = sign_rs256("k1", &with(claims_for(&issuer), "exp", json!(NOW - 3600)));
    assert_invalid_token(verify(&token, &issuer, &store).await, "expired");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("OIDC token refused") && l.contains("https://log-test.example"));
    assert!(
        line.is_some_and(|l| l.contains("DEBUG") && l.contains("reason=expired")),
        "{text}"
    );
    for (i, segment) in token.split('.').enumerate() {
        assert!(
            !text.contains(segment),
            "segment {i} of the token was logged: {text}"
        );
    }
}
