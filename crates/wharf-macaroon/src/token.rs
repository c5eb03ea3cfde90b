//! The `pypi-…` token string: `<prefix>-<URL-safe base64, no padding, of the
//! V2 binary macaroon>`.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::caveat::Caveat;
use crate::error::MacaroonError;
use crate::macaroon::Macaroon;

/// The token prefix PyPI uses.
pub const PYPI_PREFIX: &str = "pypi";

/// Largest accepted token (or base64 macaroon) in bytes, before trimming.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// URL-safe, unpadded on output; padding optional and non-zero trailing bits
/// tolerated on input (Python's `urlsafe_b64decode` is that lenient too).
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decode base64 in either alphabet (Python's decoder accepts `+`/`/` in
/// URL-safe input as well), with or without padding.
pub(crate) fn decode_base64(text: &[u8]) -> Result<Vec<u8>, MacaroonError> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(MacaroonError::TooLarge);
    }
    let normalized: Vec<u8> = text
        .iter()
        .map(|&b| match b {
            b'+' => b'-',
            b'/' => b'_',
            other => other,
        })
        .collect();
    URL_SAFE_LENIENT
        .decode(normalized)
        .map_err(|_| MacaroonError::InvalidBase64)
}

/// `"<prefix>-" + urlsafe_b64encode(m.serialize_v2()).rstrip("=")`, exactly
/// what `pypitoken.Token.dump()` / Warehouse produce.
pub fn encode_token(prefix: &str, m: &Macaroon) -> String {
    let body = URL_SAFE_LENIENT.encode(m.serialize_v2());
    let mut out = String::with_capacity(prefix.len() + 1 + body.len());
    out.push_str(prefix);
    out.push('-');
    out.push_str(&body);
    out
}

/// Parse a token string: strip surrounding whitespace, split at the first
/// `-`, require `expected_prefix`, base64-decode (URL-safe or standard
/// alphabet, padding optional) and deserialize.
///
/// Inputs longer than [`MAX_TOKEN_LEN`] are rejected before any decoding.
/// Errors never echo the token.
pub fn decode_token(token: &str, expected_prefix: &str) -> Result<Macaroon, MacaroonError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(MacaroonError::TooLarge);
    }
    let token = token.trim();
    let (prefix, body) = token.split_once('-').ok_or(MacaroonError::MissingPrefix)?;
    if prefix != expected_prefix {
        return Err(MacaroonError::WrongPrefix);
    }
    if body.is_empty() {
        return Err(MacaroonError::Empty);
    }
    let raw = decode_base64(body.as_bytes())?;
    match raw.first() {
        // binary formats only: no second level of base64
        Some(2) | Some(b'0'..=b'9') | Some(b'a'..=b'f') => Macaroon::deserialize(&raw),
        Some(_) => Err(MacaroonError::UnknownFormat),
        None => Err(MacaroonError::Empty),
    }
}

/// Mint a PyPI token: a new macaroon with each caveat added in order (as
/// Warehouse's compact JSON), encoded with the `pypi` prefix.
pub fn mint(location: &str, identifier: &str, root_key: &[u8], caveats: &[Caveat]) -> String {
    let mut m = Macaroon::new(location, identifier.as_bytes(), root_key);
    for c in caveats {
        m.add_first_party_caveat(&c.to_bytes());
    }
    encode_token(PYPI_PREFIX, &m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"k";

    #[test]
    fn encode_decode() {
        let mut m = Macaroon::new("pypi.org", b"id", KEY);
        m.add_first_party_caveat(b"[1,[\"x\"]]");
        let t = encode_token("pypi", &m);
        assert!(t.starts_with("pypi-AgEIcHlwaS5vcmc"));
        assert!(!t.contains('='));
        assert_eq!(decode_token(&t, "pypi"), Ok(m.clone()));
        assert_eq!(decode_token(&format!("  {t}\n"), "pypi"), Ok(m.clone()));
        // padded, standard alphabet
        let std = base64::engine::general_purpose::STANDARD.encode(m.serialize_v2());
        assert_eq!(decode_token(&format!("pypi-{std}"), "pypi"), Ok(m));
    }

    #[test]
    fn prefix_handling() {
        let t = mint("h", "id", KEY, &[]);
        assert_eq!(decode_token(&t, "other"), Err(MacaroonError::WrongPrefix));
        assert_eq!(
            decode_token("nodash", "pypi"),
            Err(MacaroonError::MissingPrefix)
        );
        assert_eq!(decode_token("pypi-", "pypi"), Err(MacaroonError::Empty));
        assert_eq!(decode_token("", "pypi"), Err(MacaroonError::MissingPrefix));
        // split at the *first* dash: URL-safe base64 may itself contain '-'
        let m = decode_token(&t, "pypi").expect("valid");
        let custom = encode_token("my-prefix", &m);
        assert_eq!(
            decode_token(&custom, "my-prefix"),
            Err(MacaroonError::WrongPrefix)
        );
        assert!(decode_token(&custom, "my").is_err());
    }

    #[test]
    fn garbage() {
        assert_eq!(
            decode_token("pypi-!!!!", "pypi"),
            Err(MacaroonError::InvalidBase64)
        );
        assert_eq!(
            decode_token("pypi-A", "pypi"),
            Err(MacaroonError::InvalidBase64)
        );
        assert_eq!(
            decode_token("pypi-AA==", "pypi"),
            Err(MacaroonError::UnknownFormat)
        );
        assert_eq!(
            decode_token("pypi-Ag", "pypi"),
            Err(MacaroonError::Truncated)
        );
        assert_eq!(
            decode_token("pypi-ab cd", "pypi"),
            Err(MacaroonError::InvalidBase64)
        );
        let long = format!("pypi-{}", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(decode_token(&long, "pypi"), Err(MacaroonError::TooLarge));
    }

    #[test]
    fn errors_do_not_echo_token() {
        let t = mint("h", "secret-id", KEY, &[]);
        let broken = format!("{}x", &t[..t.len() - 3]);
        for candidate in [broken.as_str(), "pypi-zzzz", t.as_str()] {
            if let Err(e) = decode_token(candidate, "nope") {
                let msg = e.to_string();
                assert!(!msg.contains(candidate));
                assert!(!msg.contains("secret"));
            }
        }
    }

    proptest! {
        #[test]
        fn decode_token_never_panics(s in ".{0,300}") {
            let _ = decode_token(&s, "pypi");
        }

        #[test]
        fn decode_token_never_panics_on_b64(s in "pypi-[A-Za-z0-9_=+/-]{0,300}") {
            let _ = decode_token(&s, "pypi");
        }

        #[test]
        fn token_round_trip(loc in "[a-z.]{0,20}", id in "[ -~]{0,64}", key in proptest::collection::vec(any::<u8>(), 1..64)) {
            let t = mint(&loc, &id, &key, &[Caveat::ProjectName(vec!["x".into()])]);
            let m = decode_token(&t, "pypi").expect("round trip");
            prop_assert_eq!(m.location(), loc.as_str());
            prop_assert_eq!(m.identifier(), id.as_bytes());
            prop_assert!(m.verify_signature(&key));
            prop_assert_eq!(encode_token("pypi", &m), t);
        }
    }
}
