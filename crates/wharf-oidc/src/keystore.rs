//! Per-issuer cache of verification keys, refreshed on an unknown `kid` at most once per
//! cool-down (PyPI: 60 s), keeping the old keys whenever a refresh yields nothing usable.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::issuer::Issuer;
use crate::jwks::JwksFetcher;
use wharf_core::messages::trusted_publishing as tp;
use wharf_core::refusal::Refusal;

/// PyPI's refresh cool-down.
pub const DEFAULT_REFRESH_COOLDOWN: Duration = Duration::from_secs(60);

type KeyMap = HashMap<String, (DecodingKey, Algorithm)>;

#[derive(Default)]
struct IssuerSlot {
    keys: RwLock<Arc<KeyMap>>,
    /// Serialises refreshes; holds the time of the last refresh attempt.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// Verification keys per issuer, `kid → key`.
pub struct KeyStore {
    fetcher: Arc<dyn JwksFetcher>,
    refresh_cooldown: Duration,
    slots: Mutex<HashMap<String, Arc<IssuerSlot>>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<String> = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        f.debug_struct("KeyStore")
            .field("refresh_cooldown", &self.refresh_cooldown)
            .field("issuers", &issuers)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A key store that fetches through `fetcher` and refreshes an issuer's keys at most once
    /// per `refresh_cooldown` ([`DEFAULT_REFRESH_COOLDOWN`] in production).
    pub fn new(fetcher: Arc<dyn JwksFetcher>, refresh_cooldown: Duration) -> Self {
        Self {
            fetcher,
            refresh_cooldown,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, issuer: &Issuer) -> Arc<IssuerSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(issuer.url.clone()).or_default())
    }

    fn cached(slot: &IssuerSlot, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        slot.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// The key for `kid` and the one algorithm it may verify.
    ///
    /// On an unknown `kid` the issuer's JWKS is fetched again, unless it was already tried
    /// within the cool-down. A failed fetch, a missing `jwks_uri` or a set without usable keys
    /// keeps the old keys. Still unknown → `invalid-token`.
    pub async fn decoding_key(
        &self,
        issuer: &Issuer,
        kid: &str,
    ) -> Result<(DecodingKey, Algorithm), Refusal> {
        let slot = self.slot(issuer);
        if let Some(found) = Self::cached(&slot, kid) {
            return Ok(found);
        }
        let mut last_refresh = slot.last_refresh.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(found) = Self::cached(&slot, kid) {
            return Ok(found);
        }
        let now = Instant::now();
        if last_refresh.is_some_and(|at| now.duration_since(at) < self.refresh_cooldown) {
            tracing::debug!(issuer = %issuer.url, ?kid, "unknown kid; JWKS refresh cooling down");
            return Err(tp::invalid_token());
        }
        *last_refresh = Some(now);
        self.refresh(issuer, &slot).await;
        drop(last_refresh);
        Self::cached(&slot, kid).ok_or_else(|| {
            tracing::debug!(issuer = %issuer.url, ?kid, "unknown kid after JWKS refresh");
            tp::invalid_token()
        })
    }

    async fn refresh(&self, issuer: &Issuer, slot: &IssuerSlot) {
        let span = tracing::info_span!(
            "oidc.jwks_fetch",
            issuer = %issuer.url,
            keys = tracing::field::Empty,
        );
        let fetched = self.fetcher.fetch(issuer).instrument(span.clone()).await;
        let _entered = span.enter();
        match fetched {
            Ok(set) => {
                let keys = usable_keys(&set);
                span.record("keys", keys.len());
                if keys.is_empty() {
                    tracing::warn!(issuer = %issuer.url, "JWKS has no usable keys; keeping the cached ones");
                } else {
                    *slot.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                }
            }
            Err(error) => {
                tracing::warn!(issuer = %issuer.url, %error, "JWKS fetch failed; keeping the cached keys");
            }
        }
    }

    /// The `kid`s currently cached for `issuer` (sorted), without fetching.
    pub fn cached_kids(&self, issuer: &Issuer) -> Vec<String> {
        let slot = self.slot(issuer);
        let mut kids: Vec<String> = slot
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        kids.sort();
        kids
    }

    /// Drops everything cached for `issuer` (e.g. when the operator removes it).
    pub fn forget(&self, issuer: &Issuer) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&issuer.url);
    }
}

/// Keeps the signing keys this crate can use: RSA keys for RS256 and P-256 keys for ES256,
/// each bound to exactly that algorithm. A key whose declared `alg` disagrees with its key
/// type, symmetric (`oct`) keys, encryption keys and keys without `kid` are dropped.
fn usable_keys(set: &JwkSet) -> KeyMap {
    let mut keys = KeyMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.as_deref().filter(|k| !k.is_empty()) else {
            continue;
        };
        let Some(algorithm) = key_algorithm(jwk) else {
            tracing::debug!(
                ?kid,
                "skipping JWK with an unsupported or inconsistent algorithm"
            );
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.to_owned(), (key, algorithm));
            }
            Err(error) => tracing::debug!(?kid, %error, "skipping unreadable JWK"),
        }
    }
    keys
}

fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(keys: serde_json::Value) -> JwkSet {
        serde_json::from_value(json!({ "keys": keys })).unwrap_or_default()
    }

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn key_selection() {
        let keys = usable_keys(&set(json!([
            {"kty": "RSA", "kid": "rsa-noalg", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-rs256", "n": N, "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "RSA", "kid": "rsa-claims-es256", "n": N, "e": "AQAB", "alg": "ES256"},
            {"kty": "RSA", "kid": "rsa-hs256", "n": N, "e": "AQAB", "alg": "HS256"},
            {"kty": "RSA", "kid": "rsa-ps256", "n": N, "e": "AQAB", "alg": "PS256"},
            {"kty": "RSA", "kid": "rsa-enc", "n": N, "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "n": N, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
        ])));
        let mut kids: Vec<_> = keys.iter().map(|(k, (_, a))| (k.clone(), *a)).collect();
        kids.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kids,
            vec![
                ("rsa-noalg".to_owned(), Algorithm::RS256),
                ("rsa-rs256".to_owned(), Algorithm::RS256)
            ]
        );
    }
}
