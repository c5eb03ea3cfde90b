//! Full verification of an OIDC token: header, key, signature and standard claims.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::issuer::Issuer;
use crate::keystore::KeyStore;
use crate::unverified::decode_parts;
use wharf_core::messages::trusted_publishing as tp;
use wharf_core::refusal::Refusal;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (PyPI: 30 s).
pub const LEEWAY_SECONDS: i64 = 30;

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Wraps claims (for tests and callers that build claim sets themselves).
    pub fn new(claims: Map<String, Value>) -> Self {
        Self(claims)
    }

    /// A string claim; `None` when absent or not a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// Any claim; JSON `null` counts as absent, as in PyPI (`claims.get(x) is None`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// All claims.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.0
    }

    /// All claims, owned.
    pub fn into_raw(self) -> Map<String, Value> {
        self.0
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(claims: Map<String, Value>) -> Self {
        Self(claims)
    }
}

/// The token's `jti`, for the caller's replay guard.
pub fn jti_of(claims: &Claims) -> Option<&str> {
    claims.get_str("jti")
}

/// The token's `exp` in whole Unix seconds, for expiring the replay-guard entry.
pub fn expires_at(claims: &Claims) -> Option<i64> {
    numeric_date(claims.get("exp")?)
}

/// A JSON NumericDate as whole seconds (fractions truncated towards minus infinity).
fn numeric_date(value: &Value) -> Option<i64> {
    if let Some(i) = value.as_i64() {
        return Some(i);
    }
    let f = value.as_f64()?;
    // i64::MAX as f64 rounds up, hence the strict bound.
    (f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64).then(|| f.floor() as i64)
}

fn parse_algorithm(alg: &str) -> Option<Algorithm> {
    match alg {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

/// Verifies `jwt` as a token of `issuer` for `audience` at time `now_unix`.
///
/// Header: `kid` required, `alg` RS256 (and ES256 for operator issuers), no `crit`. The key
/// for `kid` comes from `keys` and must be of that same algorithm. Claims: `iss` equal to the
/// issuer URL; `aud` a single string equal to `audience`; `exp` and `iat` required; `nbf`
/// checked when present; 30 s leeway; `iat` not in the future.
///
/// Every failure is `invalid-token` / `malformed or invalid token`; the precise reason is
/// logged at debug level (never the token).
pub async fn verify_token(
    jwt: &str,
    issuer: &Issuer,
    audience: &str,
    keys: &KeyStore,
    now_unix: i64,
) -> Result<Claims, Refusal> {
    verify_inner(jwt, issuer, audience, keys, now_unix)
        .await
        .map_err(|reason| {
            tracing::debug!(issuer = %issuer.url, %reason, "OIDC token refused");
            tp::invalid_token()
        })
}

async fn verify_inner(
    jwt: &str,
    issuer: &Issuer,
    audience: &str,
    keys: &KeyStore,
    now_unix: i64,
) -> Result<Claims, String> {
    let parts = decode_parts(jwt).map_err(|e| format!("undecodable token: {e}"))?;
    let header = &parts.header;

    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("no alg header")?;
    let algorithm = parse_algorithm(alg_name)
        .filter(|a| issuer.allowed_algorithms().contains(a))
        .ok_or_else(|| format!("algorithm {alg_name:?} not allowed for this issuer"))?;
    if header.contains_key("crit") {
        return Err("crit header present (no extensions are supported)".to_owned());
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("no kid header")?;

    let (key, key_algorithm) = keys
        .decoding_key(issuer, kid)
        .await
        .map_err(|_| format!("no usable key for kid {kid:?}"))?;
    if key_algorithm != algorithm {
        return Err(format!(
            "key {kid:?} is for {key_algorithm:?}, token says {algorithm:?}"
        ));
    }

    // jsonwebtoken checks the signature (and the algorithm once more); the claims are checked
    // below against the caller's clock, so its own time/audience checks are off.
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
        .map_err(|e| format!("signature check failed: {e}"))?;
    let claims = Claims(data.claims);

    check_standard_claims(&claims, issuer, audience, now_unix)?;
    Ok(claims)
}

fn check_standard_claims(
    claims: &Claims,
    issuer: &Issuer,
    audience: &str,
    now: i64,
) -> Result<(), String> {
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == issuer.url => {}
        Some(_) => return Err("iss does not match the issuer".to_owned()),
        None => return Err("no iss claim".to_owned()),
    }
    match claims.get("aud") {
        Some(Value::String(aud)) if aud == audience => {}
        Some(Value::String(_)) => return Err("wrong aud".to_owned()),
        Some(Value::Array(_)) => return Err("aud is a list, not a single string".to_owned()),
        Some(_) => return Err("aud is not a string".to_owned()),
        None => return Err("no aud claim".to_owned()),
    }
    let date = |name: &str, required: bool| -> Result<Option<i64>, String> {
        match claims.raw().get(name) {
            None if !required => Ok(None),
            None => Err(format!("no {name} claim")),
            Some(v) => numeric_date(v)
                .map(Some)
                .ok_or_else(|| format!("{name} is not a number")),
        }
    };
    let exp = date("exp", true)?.unwrap_or(i64::MIN);
    let iat = date("iat", true)?.unwrap_or(i64::MAX);
    let nbf = date("nbf", false)?;
    // PyJWT: expired when exp <= now - leeway; immature when nbf/iat > now + leeway.
    if exp <= now.saturating_sub(LEEWAY_SECONDS) {
        return Err("expired".to_owned());
    }
    if iat > now.saturating_add(LEEWAY_SECONDS) {
        return Err("iat is in the future".to_owned());
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECONDS)) {
        return Err("not yet valid (nbf)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::IssuerKind;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => Claims(m),
            _ => Claims::default(),
        }
    }

    fn issuer() -> Issuer {
        Issuer::operator("ci", IssuerKind::Generic, "https://ci.example")
    }

    const NOW: i64 = 1_700_000_000;

    fn base() -> Value {
        json!({"iss": "https://ci.example", "aud": "wharf", "iat": NOW, "exp": NOW + 300})
    }

    fn check(v: Value) -> Result<(), String> {
        check_standard_claims(&claims(v), &issuer(), "wharf", NOW)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut b = base();
        if let Some(m) = b.as_object_mut() {
            m.insert(key.to_owned(), value);
        }
        b
    }

    fn without(key: &str) -> Value {
        let mut b = base();
        if let Some(m) = b.as_object_mut() {
            m.remove(key);
        }
        b
    }

    #[test]
    fn standard_claims() {
        assert_eq!(check(base()), Ok(()));
        // Leeway boundaries, PyJWT's comparisons.
        assert_eq!(check(with("exp", json!(NOW - 29))), Ok(()));
        assert!(check(with("exp", json!(NOW - 30))).is_err());
        assert_eq!(check(with("iat", json!(NOW + 30))), Ok(()));
        assert!(check(with("iat", json!(NOW + 31))).is_err());
        assert_eq!(check(with("nbf", json!(NOW + 30))), Ok(()));
        assert!(check(with("nbf", json!(NOW + 31))).is_err());
        assert_eq!(check(with("exp", json!((NOW + 10) as f64 + 0.5))), Ok(()));
        for bad in [
            with("aud", json!(["wharf"])),
            with("aud", json!("other")),
            with("aud", json!(5)),
            with("iss", json!("https://ci.example/")),
            with("iss", json!(["https://ci.example"])),
            with("exp", json!("99999999999")),
            with("iat", json!(null)),
            with("nbf", json!(null)),
            with("exp", json!(1e300)),
            without("aud"),
            without("iss"),
            without("exp"),
            without("iat"),
        ] {
            assert!(check(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn helpers() {
        let c = claims(json!({"jti": "abc", "exp": 12.9, "n": 5}));
        assert_eq!(jti_of(&c), Some("abc"));
        assert_eq!(expires_at(&c), Some(12));
        assert_eq!(c.get_str("n"), None);
        assert_eq!(expires_at(&claims(json!({"exp": "12"}))), None);
        assert_eq!(jti_of(&claims(json!({"jti": 7}))), None);
    }
}
