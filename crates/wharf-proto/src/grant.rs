//! Upload grants (issue #12, finding 5): the verifier signs what one upload may commit, and a
//! storage worker commits nothing it cannot verify, so an event published on the bus by
//! anyone but a gateway holding a fresh grant is refused.
//!
//! Ed25519 (through `aws-lc-rs`, which rustls and async-nats already build): the verifier
//! holds the private key, workers only public keys, so a worker (or anyone who reads its
//! configuration) cannot issue grants. The claims are signed as encoded bytes and decoded
//! only after the signature holds. Keys are PEM files as OpenSSL writes them
//! (`openssl genpkey -algorithm ed25519`, `openssl pkey -pubout`) or as `wharf admin
//! upload-grant-key` does.

use std::sync::Arc;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use crate::v1::{FileStaged, SignedUploadGrant, UploadGrantClaims};

/// Prefixed to the claims before signing, so a grant signature means nothing elsewhere.
const SIGNING_CONTEXT: &[u8] = b"wharf.v1.UploadGrantClaims\0";
/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key file or key text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GrantKeyError(String);

/// Why a worker refuses an event's grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// The event carries no grant.
    #[error("the event carries no upload grant")]
    Missing,
    /// Signed by a key this worker does not trust.
    #[error("the upload grant is signed by key '{0}', which this worker does not trust")]
    UnknownKey(String),
    /// The signature does not verify: the claims were altered, or forged.
    #[error("the upload grant's signature does not verify")]
    BadSignature,
    /// The signed bytes are not claims.
    #[error("the upload grant's claims cannot be decoded")]
    Malformed,
    /// Past its expiry.
    #[error("the upload grant expired {0} s ago")]
    Expired(i64),
    /// The event says something the grant does not.
    #[error("the event's {0} differs from its upload grant's")]
    Mismatch(&'static str),
}

/// The key id of a raw Ed25519 public key: the first 8 bytes of its SHA-256, in hex.
fn key_id_of(public_key: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key);
    hex::encode(&digest.as_ref()[..8])
}

/// Why a key text holds no usable `label` block (the PEM error says no more than that).
fn pem_error(label: &str, error: &rustls_pki_types::pem::Error) -> GrantKeyError {
    GrantKeyError(format!("no PEM '{label}' block: {error}"))
}

/// `der` as a PEM block labelled `label` (what `openssl` writes; reading is
/// rustls-pki-types', which has no writer).
fn pem(label: &str, der: &[u8]) -> String {
    let base64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

impl UploadGrantClaims {
    /// What `event` says about itself in the terms of a grant (the rest is left empty): a
    /// worker compares it with the verified grant's claims.
    pub fn stated_by(event: &FileStaged) -> UploadGrantClaims {
        let metadata = event.metadata.as_ref();
        let uploader = event.uploader.clone().unwrap_or_default();
        UploadGrantClaims {
            upload_id: event.upload_id.clone(),
            normalized_name: wharf_core::name::normalize(
                metadata
                    .and_then(|metadata| metadata.name.as_deref())
                    .unwrap_or_default(),
            ),
            filename: event.filename.clone(),
            version: metadata
                .and_then(|metadata| metadata.version.clone())
                .unwrap_or_default(),
            user_id: uploader.user_id,
            publisher_id: uploader.publisher_id,
            may_create_project: uploader.may_create_project,
            // The grant's 0 and the event's absent field both say: no limit at commit time.
            max_project_size: event.max_project_size.unwrap_or(0),
            ..UploadGrantClaims::default()
        }
    }

    /// The first of the bound fields in which `stated` differs from these claims.
    pub fn differs_from(&self, stated: &UploadGrantClaims) -> Option<&'static str> {
        [
            ("upload id", self.upload_id == stated.upload_id),
            ("project", self.normalized_name == stated.normalized_name),
            ("filename", self.filename == stated.filename),
            ("version", self.version == stated.version),
            ("user", self.user_id == stated.user_id),
            ("publisher", self.publisher_id == stated.publisher_id),
            (
                "right to create the project",
                self.may_create_project == stated.may_create_project,
            ),
            (
                "project size limit",
                self.max_project_size == stated.max_project_size,
            ),
        ]
        .into_iter()
        .find_map(|(what, same)| (!same).then_some(what))
    }
}

/// The verifier's signing key. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct UploadGrantSigner {
    key_id: String,
    pair: Arc<Ed25519KeyPair>,
}

impl std::fmt::Debug for UploadGrantSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UploadGrantSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl UploadGrantSigner {
    fn from_pair(pair: Ed25519KeyPair) -> UploadGrantSigner {
        UploadGrantSigner {
            key_id: key_id_of(pair.public_key().as_ref()),
            pair: Arc::new(pair),
        }
    }

    /// A fresh random key, kept in memory only (the embedded mode, tests).
    pub fn generate() -> Result<UploadGrantSigner, GrantKeyError> {
        Ed25519KeyPair::generate()
            .map(UploadGrantSigner::from_pair)
            .map_err(|_| GrantKeyError("cannot generate an Ed25519 key".to_owned()))
    }

    /// A key from a PEM `PRIVATE KEY` (PKCS#8 v1 or v2, Ed25519).
    pub fn from_pem(text: &str) -> Result<UploadGrantSigner, GrantKeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
            .map_err(|error| pem_error("PRIVATE KEY", &error))?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map(UploadGrantSigner::from_pair)
            .map_err(|error| GrantKeyError(format!("not an Ed25519 private key: {error}")))
    }

    /// The key as a PEM `PRIVATE KEY` (PKCS#8 v2), for a key file.
    pub fn to_pem(&self) -> Result<String, GrantKeyError> {
        let document = self
            .pair
            .to_pkcs8()
            .map_err(|_| GrantKeyError("cannot encode the key".to_owned()))?;
        Ok(pem("PRIVATE KEY", document.as_ref()))
    }

    /// The key id grants carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, for the workers.
    pub fn public_key(&self) -> UploadGrantKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        UploadGrantKey {
            key_id: self.key_id.clone(),
            raw,
        }
    }

    /// Encodes and signs `claims`.
    pub fn sign(&self, claims: &UploadGrantClaims) -> SignedUploadGrant {
        let claims = claims.encode_to_vec();
        let signature = self.pair.sign(&[SIGNING_CONTEXT, &claims].concat());
        SignedUploadGrant {
            claims,
            signature: signature.as_ref().to_vec(),
            key_id: self.key_id.clone(),
        }
    }
}

/// A public key a worker trusts to sign grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrantKey {
    key_id: String,
    raw: [u8; 32],
}

impl UploadGrantKey {
    /// A key from a PEM `PUBLIC KEY` (an Ed25519 SubjectPublicKeyInfo).
    pub fn from_pem(text: &str) -> Result<UploadGrantKey, GrantKeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(text.as_bytes())
            .map_err(|error| pem_error("PUBLIC KEY", &error))?;
        let raw = der
            .as_ref()
            .strip_prefix(&SPKI_PREFIX[..])
            .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
            .ok_or_else(|| GrantKeyError("not an Ed25519 public key".to_owned()))?;
        Ok(UploadGrantKey {
            key_id: key_id_of(&raw),
            raw,
        })
    }

    /// The key as a PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &[&SPKI_PREFIX[..], &self.raw].concat())
    }

    /// Its key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// The keys a worker accepts grants from (several during a rotation). Empty: every grant is
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadGrantKeys {
    keys: Vec<UploadGrantKey>,
}

impl UploadGrantKeys {
    /// These keys.
    pub fn new(keys: impl IntoIterator<Item = UploadGrantKey>) -> UploadGrantKeys {
        UploadGrantKeys {
            keys: keys.into_iter().collect(),
        }
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted key ids, for the start-up log.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(UploadGrantKey::key_id).collect()
    }

    /// The claims of `grant`, if a trusted key signed exactly these bytes and they have not
    /// expired at `now_micros`.
    pub fn verify(
        &self,
        grant: Option<&SignedUploadGrant>,
        now_micros: i64,
    ) -> Result<UploadGrantClaims, GrantRefusal> {
        let grant = grant.ok_or(GrantRefusal::Missing)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.key_id == grant.key_id)
            .ok_or_else(|| GrantRefusal::UnknownKey(grant.key_id.clone()))?;
        UnparsedPublicKey::new(&ED25519, &key.raw)
            .verify(&[SIGNING_CONTEXT, &grant.claims].concat(), &grant.signature)
            .map_err(|_| GrantRefusal::BadSignature)?;
        let claims = UploadGrantClaims::decode(grant.claims.as_slice())
            .map_err(|_| GrantRefusal::Malformed)?;
        if now_micros > claims.expires_at_micros {
            return Err(GrantRefusal::Expired(
                (now_micros - claims.expires_at_micros) / 1_000_000,
            ));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> UploadGrantClaims {
        UploadGrantClaims {
            upload_id: "u1".to_owned(),
            normalized_name: "demo".to_owned(),
            filename: "demo-1.0.tar.gz".to_owned(),
            version: "1.0".to_owned(),
            user_id: "alice".to_owned(),
            issued_at_micros: 1_000,
            expires_at_micros: 2_000_000,
            ..UploadGrantClaims::default()
        }
    }

    #[test]
    fn a_signed_grant_verifies_and_a_tampered_one_does_not() {
        let signer = UploadGrantSigner::generate().expect("key");
        let keys = UploadGrantKeys::new([signer.public_key()]);
        let grant = signer.sign(&claims());
        assert_eq!(keys.verify(Some(&grant), 1_000), Ok(claims()));

        let mut altered = grant.clone();
        altered.claims = UploadGrantClaims {
            user_id: "mallory".to_owned(),
            ..claims()
        }
        .encode_to_vec();
        assert_eq!(
            keys.verify(Some(&altered), 1_000),
            Err(GrantRefusal::BadSignature)
        );
        let mut unsigned = grant.clone();
        unsigned.signature.clear();
        assert_eq!(
            keys.verify(Some(&unsigned), 1_000),
            Err(GrantRefusal::BadSignature)
        );
        assert_eq!(keys.verify(None, 1_000), Err(GrantRefusal::Missing));
        assert_eq!(
            keys.verify(Some(&grant), 5_000_000),
            Err(GrantRefusal::Expired(3))
        );

        // Another key, even claiming the trusted key's id, does not verify.
        let other = UploadGrantSigner::generate().expect("key");
        let mut forged = other.sign(&claims());
        assert_eq!(
            keys.verify(Some(&forged), 1_000),
            Err(GrantRefusal::UnknownKey(other.key_id().to_owned()))
        );
        forged.key_id = signer.key_id().to_owned();
        assert_eq!(
            keys.verify(Some(&forged), 1_000),
            Err(GrantRefusal::BadSignature)
        );
        assert_eq!(
            UploadGrantKeys::default().verify(Some(&grant), 1_000),
            Err(GrantRefusal::UnknownKey(signer.key_id().to_owned()))
        );
    }

    #[test]
    fn keys_survive_pem_and_rotation_accepts_both() {
        let old = UploadGrantSigner::generate().expect("key");
        let new = UploadGrantSigner::from_pem(&old.to_pem().expect("pem")).expect("parse");
        assert_eq!(new.key_id(), old.key_id());
        let public = UploadGrantKey::from_pem(&old.public_key().to_pem()).expect("parse");
        assert_eq!(public, old.public_key());
        assert!(!format!("{old:?}").contains("PRIVATE"));

        let next = UploadGrantSigner::generate().expect("key");
        let keys = UploadGrantKeys::new([old.public_key(), next.public_key()]);
        assert!(keys.verify(Some(&old.sign(&claims())), 0).is_ok());
        assert!(keys.verify(Some(&next.sign(&claims())), 0).is_ok());
        assert!(UploadGrantKey::from_pem(&old.to_pem().expect("pem")).is_err());
        assert!(UploadGrantSigner::from_pem(&old.public_key().to_pem()).is_err());
    }

    #[test]
    fn openssl_keys_are_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and `openssl pkey -pubout`.
        let private = "-----BEGIN PRIVATE KEY-----\n\
                       MC4CAQAwBQYDK2VwBCIEINH5ISJc64tWucawovJbEIIZyAKWpxgYe7xIUNSLOz21\n\
                       -----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VwAyEAd/6DHRtThUr4peg+QHwSy6ylvAwselQmAVUJMiSQFH4=\n\
                      -----END PUBLIC KEY-----\n";
        let signer = UploadGrantSigner::from_pem(private).expect("PKCS#8 v1");
        let public = UploadGrantKey::from_pem(public).expect("SPKI");
        assert_eq!(public, signer.public_key());
    }
}
