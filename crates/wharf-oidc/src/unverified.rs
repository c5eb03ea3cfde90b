//! Reading a JWT *without* verifying it, only to choose the issuer and its key set.
//!
//! Nothing read here is trusted: the issuer picks the verification rules, and
//! [`crate::verify_token`] then checks everything again against the signed bytes.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use wharf_core::messages::trusted_publishing as tp;
use wharf_core::refusal::Refusal;

/// Larger inputs are refused before any decoding (real CI tokens are 1–3 KiB).
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// base64url, padding optional (PyJWT adds missing padding, so both spellings occur).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the unverified token claims about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The `iss` claim.
    pub issuer: String,
    /// The `kid` header, if it is a string.
    pub kid: Option<String>,
    /// The `alg` header as written (may be `none`, `HS256`, … — refused later), or empty.
    pub algorithm: String,
}

/// The decoded (still unverified) header and payload of a compact JWS.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) header: Map<String, Value>,
    pub(crate) payload: Map<String, Value>,
}

/// Why a JWT could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("token larger than {MAX_JWT_BYTES} bytes")]
    TooLarge,
    #[error("not three dot-separated segments")]
    Segments,
    #[error("segment is not base64url")]
    Base64,
    #[error("segment is not a JSON object")]
    Json,
}

/// Splits and decodes header and payload; the signature segment is only required to exist.
pub(crate) fn decode_parts(jwt: &str) -> Result<Parts, ParseError> {
    if jwt.len() > MAX_JWT_BYTES {
        return Err(ParseError::TooLarge);
    }
    let mut segments = jwt.split('.');
    let (Some(header), Some(payload), Some(_signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(ParseError::Segments);
    };
    Ok(Parts {
        header: decode_object(header)?,
        payload: decode_object(payload)?,
    })
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, ParseError> {
    let bytes = B64URL.decode(segment).map_err(|_| ParseError::Base64)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ParseError::Json),
    }
}

/// Decodes header and payload without verification, only to pick the issuer.
///
/// Fails with `invalid-payload` / `malformed JWT` (PyPI's text) when the token cannot be
/// decoded, is larger than [`MAX_JWT_BYTES`], or carries no string `iss`.
pub fn peek_unverified(jwt: &str) -> Result<Unverified, Refusal> {
    let parts = decode_parts(jwt).map_err(|reason| {
        tracing::debug!(%reason, "malformed JWT");
        tp::malformed_jwt()
    })?;
    let Some(issuer) = parts.payload.get("iss").and_then(Value::as_str) else {
        tracing::debug!("JWT without a string iss claim");
        return Err(tp::malformed_jwt());
    };
    Ok(Unverified {
        issuer: issuer.to_owned(),
        kid: parts
            .header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        algorithm: parts
            .header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wharf_core::refusal::ErrorCode;

    fn b64(v: &str) -> String {
        B64URL.encode(v)
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn reads_iss_kid_alg() {
        let t = jwt(
            r#"{"alg":"RS256","kid":"k1"}"#,
            r#"{"iss":"https://x","aud":"wharf"}"#,
        );
        assert_eq!(
            peek_unverified(&t),
            Ok(Unverified {
                issuer: "https://x".into(),
                kid: Some("k1".into()),
                algorithm: "RS256".into()
            })
        );
    }

    #[test]
    fn alg_none_still_reads_issuer() {
        // PyPI reads the issuer without looking at alg; refusing `none` is verify_token's job.
        let t = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"iss":"https://x"}"#)
        );
        let u = peek_unverified(&t).map_err(|e| e.message);
        assert_eq!(
            u.map(|u| (u.algorithm, u.kid)),
            Ok(("none".to_owned(), None))
        );
    }

    #[test]
    fn padded_segments_are_accepted() {
        let t = format!(
            "{}.{}.sig",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"alg":"RS256"}"#),
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"iss":"https://x"}"#)
        );
        assert!(peek_unverified(&t).is_ok());
    }

    #[test]
    fn malformed_inputs() {
        let cases = [
            String::new(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!!!.???.sig".to_owned(),
            jwt(r#"{"alg":"RS256"}"#, r#"{"aud":"x"}"#),
            jwt(r#"{"alg":"RS256"}"#, r#"{"iss":5}"#),
            jwt(r#"{"alg":"RS256"}"#, r#"["iss"]"#),
            jwt(r#"[]"#, r#"{"iss":"https://x"}"#),
            jwt(r#"{"alg":"RS256"}"#, "not json"),
            format!(
                "{}.{}.sig",
                b64(r#"{"alg":"RS256"}"#),
                b64(&format!(r#"{{"iss":"{}"}}"#, "a".repeat(MAX_JWT_BYTES)))
            ),
        ];
        for case in cases {
            let err = peek_unverified(&case).err();
            assert_eq!(
                err.as_ref().map(|e| (e.code, e.message.as_str())),
                Some((ErrorCode::InvalidPayload, "malformed JWT")),
                "{case:.60}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(s in ".{0,400}") {
            let _ = peek_unverified(&s);
        }

        #[test]
        fn never_panics_on_jwt_shaped_input(
            h in proptest::collection::vec(any::<u8>(), 0..200),
            p in proptest::collection::vec(any::<u8>(), 0..200),
            sig in "[A-Za-z0-9_=.-]{0,40}",
        ) {
            let t = format!("{}.{}.{}", B64URL.encode(h), B64URL.encode(p), sig);
            let _ = peek_unverified(&t);
        }

        #[test]
        fn finds_any_issuer(iss in "\\PC{0,60}", kid in proptest::option::of("[a-z0-9]{1,8}")) {
            let header = match &kid {
                Some(k) => serde_json::json!({"alg": "RS256", "kid": k}),
                None => serde_json::json!({"alg": "RS256"}),
            };
            let payload = serde_json::json!({"iss": iss});
            let t = jwt(&header.to_string(), &payload.to_string());
            let u = peek_unverified(&t);
            prop_assert_eq!(u.map(|u| (u.issuer, u.kid)), Ok((iss, kid)));
        }
    }
}
