//! The macaroon itself: HMAC signature chain and the libmacaroons binary
//! formats as implemented by `pymacaroons` 0.13 (`BinarySerializer`).
//!
//! V2 layout (libmacaroons `doc/format.txt`):
//!
//! ```text
//! 0x02
//! [location(1)] identifier(2) EOS(0)
//! { [location(1)] identifier(2) [vid(4)] EOS }*    -- one section per caveat
//! EOS
//! signature(6)
//! ```
//!
//! where every field except EOS is `uvarint(type) uvarint(len) bytes`, and EOS
//! is the single byte `0x00`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::MacaroonError;

type HmacSha256 = Hmac<Sha256>;

/// Key used to derive the HMAC key from the root key (libmacaroons convention).
const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";

const V2: u8 = 2;
const FIELD_EOS: u64 = 0;
const FIELD_LOCATION: u64 = 1;
const FIELD_IDENTIFIER: u64 = 2;
const FIELD_VID: u64 = 4;
const FIELD_SIGNATURE: u64 = 6;

/// Length of a macaroon signature (HMAC-SHA256).
pub const SIGNATURE_LEN: usize = 32;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// One caveat as stored in the macaroon. `vid` is set only for third-party
/// caveats (which PyPI never issues; they are kept so that foreign macaroons
/// round-trip, but they never verify).
#[derive(Clone, PartialEq, Eq)]
struct RawCaveat {
    location: Option<String>,
    id: Vec<u8>,
    vid: Option<Vec<u8>>,
}

/// A caveat id as seen by the verifier, in macaroon order.
pub(crate) enum CaveatView<'a> {
    FirstParty(&'a [u8]),
    ThirdParty,
}

/// A macaroon: location, identifier, caveats and the HMAC-SHA256 signature chain.
///
/// The signature is a bearer secret (anyone holding it can derive further
/// attenuated macaroons), so [`Debug`] shows only the location, identifier and
/// the number of caveats.
#[derive(Clone, PartialEq, Eq)]
pub struct Macaroon {
    /// `None` only when a deserialized macaroon had no location field;
    /// pymacaroons always writes one (possibly empty).
    location: Option<String>,
    identifier: Vec<u8>,
    caveats: Vec<RawCaveat>,
    signature: [u8; SIGNATURE_LEN],
}

impl std::fmt::Debug for Macaroon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Macaroon")
            .field("location", &self.location())
            .field("identifier", &String::from_utf8_lossy(&self.identifier))
            .field("caveats", &self.caveats.len())
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl Macaroon {
    /// Mint a new macaroon, as `pymacaroons.Macaroon(location=…, identifier=…,
    /// key=…, version=MACAROON_V2)` does: the signature is
    /// `HMAC(HMAC(b"macaroons-key-generator", root_key), identifier)`.
    pub fn new(location: &str, identifier: &[u8], root_key: &[u8]) -> Macaroon {
        let derived = hmac(KEY_GENERATOR, root_key);
        Macaroon {
            location: Some(location.to_owned()),
            identifier: identifier.to_vec(),
            caveats: Vec::new(),
            signature: hmac(&derived, identifier),
        }
    }

    /// Append a first-party caveat: `sig = HMAC(sig, caveat_id)`.
    ///
    /// pymacaroons refuses caveat ids that are not UTF-8; this does not, but
    /// such a caveat can never be satisfied by [`crate::verify`].
    pub fn add_first_party_caveat(&mut self, caveat_id: &[u8]) {
        self.signature = hmac(&self.signature, caveat_id);
        self.caveats.push(RawCaveat {
            location: None,
            id: caveat_id.to_vec(),
            vid: None,
        });
    }

    /// The location (request host on PyPI); empty if none was serialized.
    pub fn location(&self) -> &str {
        self.location.as_deref().unwrap_or("")
    }

    /// The identifier (on PyPI the token's database UUID, as text).
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }

    /// The identifier as UTF-8 text, if it is valid UTF-8.
    pub fn identifier_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.identifier).ok()
    }

    /// The first-party caveat ids, in order.
    pub fn caveats(&self) -> impl Iterator<Item = &[u8]> {
        self.caveats
            .iter()
            .filter(|c| c.vid.is_none())
            .map(|c| c.id.as_slice())
    }

    /// Whether the macaroon carries third-party caveats (never valid on PyPI).
    pub fn has_third_party_caveats(&self) -> bool {
        self.caveats.iter().any(|c| c.vid.is_some())
    }

    pub(crate) fn caveat_views(&self) -> impl Iterator<Item = CaveatView<'_>> {
        self.caveats.iter().map(|c| match c.vid {
            None => CaveatView::FirstParty(&c.id),
            Some(_) => CaveatView::ThirdParty,
        })
    }

    /// The current signature (the tail of the HMAC chain).
    pub fn signature(&self) -> [u8; SIGNATURE_LEN] {
        self.signature
    }

    /// Check the HMAC chain against `root_key`, comparing in constant time.
    ///
    /// Returns `false` for macaroons with third-party caveats, which need
    /// discharge macaroons that PyPI never accepts.
    pub fn verify_signature(&self, root_key: &[u8]) -> bool {
        if self.has_third_party_caveats() {
            return false;
        }
        let mut key = hmac(KEY_GENERATOR, root_key);
        let mut msg: &[u8] = &self.identifier;
        for c in &self.caveats {
            key = hmac(&key, msg);
            msg = &c.id;
        }
        let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
        mac.update(msg);
        mac.verify_slice(&self.signature).is_ok()
    }

    /// Serialize in the libmacaroons V2 binary format, byte-for-byte as
    /// pymacaroons' `BinarySerializer().serialize_raw(m)` for a V2 macaroon.
    pub fn serialize_v2(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.location().len()
                + self.identifier.len()
                + SIGNATURE_LEN
                + self.caveats.iter().map(|c| c.id.len() + 8).sum::<usize>(),
        );
        out.push(V2);
        if let Some(loc) = &self.location {
            put_field(&mut out, FIELD_LOCATION, loc.as_bytes());
        }
        put_field(&mut out, FIELD_IDENTIFIER, &self.identifier);
        put_varint(&mut out, FIELD_EOS);
        for c in &self.caveats {
            if let Some(loc) = &c.location {
                put_field(&mut out, FIELD_LOCATION, loc.as_bytes());
            }
            put_field(&mut out, FIELD_IDENTIFIER, &c.id);
            if let Some(vid) = &c.vid {
                put_field(&mut out, FIELD_VID, vid);
            }
            put_varint(&mut out, FIELD_EOS);
        }
        put_varint(&mut out, FIELD_EOS);
        put_field(&mut out, FIELD_SIGNATURE, &self.signature);
        out
    }

    /// Parse a serialized macaroon.
    ///
    /// Accepts the V2 binary format (first byte `0x02`), the V1 binary packet
    /// format (first byte a lowercase hex digit, as pymacaroons detects it),
    /// and, for convenience, either of those wrapped in base64 (standard or
    /// URL-safe alphabet, padded or not), which is how pymacaroons'
    /// `Macaroon.serialize()` hands them out.
    ///
    /// Stricter than pymacaroons in a few places, all of which PyPI never
    /// produces: the signature must be 32 bytes, no bytes may follow it, and
    /// locations must be UTF-8.
    pub fn deserialize(bytes: &[u8]) -> Result<Macaroon, MacaroonError> {
        match bytes.first() {
            None => Err(MacaroonError::Empty),
            Some(&V2) => deserialize_v2(bytes),
            Some(b) if is_lower_hex(*b) => match deserialize_v1(bytes) {
                Ok(m) => Ok(m),
                Err(e) => deserialize_base64(bytes).map_err(|_| e),
            },
            Some(_) => deserialize_base64(bytes).map_err(|_| MacaroonError::UnknownFormat),
        }
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// The base64-wrapped form: decode once, then accept only binary formats.
fn deserialize_base64(text: &[u8]) -> Result<Macaroon, MacaroonError> {
    let raw = crate::token::decode_base64(text)?;
    match raw.first() {
        None => Err(MacaroonError::Empty),
        Some(&V2) => deserialize_v2(&raw),
        Some(b) if is_lower_hex(*b) => deserialize_v1(&raw),
        Some(_) => Err(MacaroonError::UnknownFormat),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_field(out: &mut Vec<u8>, field_type: u64, data: &[u8]) {
    put_varint(out, field_type);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, MacaroonError> {
        let mut n: u64 = 0;
        for (i, &b) in self.data.iter().enumerate() {
            if i == 9 && b > 1 {
                // a tenth byte may only contribute the top bit of a u64
                return Err(MacaroonError::BadVarint);
            }
            n |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.data = &self.data[i + 1..];
                return Ok(n);
            }
        }
        Err(MacaroonError::BadVarint)
    }

    /// One field; `None` for EOS.
    fn packet(&mut self) -> Result<Option<(u64, &'a [u8])>, MacaroonError> {
        let field_type = self.varint()?;
        if field_type == FIELD_EOS {
            return Ok(None);
        }
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| MacaroonError::Truncated)?;
        if len > self.data.len() {
            return Err(MacaroonError::Truncated);
        }
        let (payload, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(Some((field_type, payload)))
    }

    /// Fields up to the next EOS, in strictly increasing type order.
    fn section(&mut self) -> Result<Vec<(u64, &'a [u8])>, MacaroonError> {
        let mut fields: Vec<(u64, &'a [u8])> = Vec::new();
        loop {
            if self.data.is_empty() {
                return Err(MacaroonError::Truncated);
            }
            match self.packet()? {
                None => return Ok(fields),
                Some((ft, payload)) => {
                    if fields.last().is_some_and(|&(prev, _)| ft <= prev) {
                        return Err(MacaroonError::FieldsOutOfOrder);
                    }
                    fields.push((ft, payload));
                }
            }
        }
    }
}

fn utf8_location(bytes: &[u8]) -> Result<String, MacaroonError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| MacaroonError::InvalidLocation)
}

fn deserialize_v2(bytes: &[u8]) -> Result<Macaroon, MacaroonError> {
    let mut r = Reader {
        data: bytes.get(1..).unwrap_or_default(),
    };

    let header = r.section()?;
    let (location, rest) = match header.split_first() {
        Some((&(FIELD_LOCATION, loc), rest)) => (Some(utf8_location(loc)?), rest),
        _ => (None, header.as_slice()),
    };
    let identifier = match rest {
        [(FIELD_IDENTIFIER, id)] => id.to_vec(),
        _ => return Err(MacaroonError::InvalidHeader),
    };

    let mut caveats = Vec::new();
    loop {
        let section = r.section()?;
        if section.is_empty() {
            break;
        }
        let (location, rest) = match section.split_first() {
            Some((&(FIELD_LOCATION, loc), rest)) => (Some(utf8_location(loc)?), rest),
            _ => (None, section.as_slice()),
        };
        let caveat = match rest {
            [(FIELD_IDENTIFIER, id)] => {
                if location.is_some() {
                    return Err(MacaroonError::LocationInFirstPartyCaveat);
                }
                RawCaveat {
                    location,
                    id: id.to_vec(),
                    vid: None,
                }
            }
            [(FIELD_IDENTIFIER, id), (FIELD_VID, vid)] => RawCaveat {
                location,
                id: id.to_vec(),
                vid: Some(vid.to_vec()),
            },
            [(FIELD_IDENTIFIER, _), ..] => return Err(MacaroonError::InvalidCaveatField),
            _ => return Err(MacaroonError::MissingCaveatId),
        };
        caveats.push(caveat);
    }

    if r.data.is_empty() {
        return Err(MacaroonError::Truncated);
    }
    let signature = match r.packet()? {
        Some((FIELD_SIGNATURE, sig)) => {
            <[u8; SIGNATURE_LEN]>::try_from(sig).map_err(|_| MacaroonError::BadSignatureLength)?
        }
        _ => return Err(MacaroonError::MissingSignature),
    };
    if !r.data.is_empty() {
        return Err(MacaroonError::TrailingBytes);
    }
    Ok(Macaroon {
        location,
        identifier,
        caveats,
        signature,
    })
}

/// The V1 binary format: a sequence of packets `hhhh<key> <value>\n`, where
/// `hhhh` is the whole packet length (header included) in 4 hex digits.
fn deserialize_v1(bytes: &[u8]) -> Result<Macaroon, MacaroonError> {
    let mut location = None;
    let mut identifier: Option<Vec<u8>> = None;
    let mut caveats: Vec<RawCaveat> = Vec::new();
    let mut signature: Option<[u8; SIGNATURE_LEN]> = None;

    let mut rest = bytes;
    while !rest.is_empty() {
        if signature.is_some() {
            return Err(MacaroonError::TrailingBytes);
        }
        let header = rest.get(..4).ok_or(MacaroonError::Truncated)?;
        let len = std::str::from_utf8(header)
            .ok()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or(MacaroonError::BadV1Packet)?;
        // 4 header bytes + at least a 1-byte key, a space and a newline
        if len < 7 {
            return Err(MacaroonError::BadV1Packet);
        }
        let packet = rest.get(4..len).ok_or(MacaroonError::Truncated)?;
        rest = &rest[len..];

        let Some((b'\n', body)) = packet.split_last() else {
            return Err(MacaroonError::BadV1Packet);
        };
        let space = body
            .iter()
            .position(|&b| b == b' ')
            .ok_or(MacaroonError::BadV1Packet)?;
        let (key, value) = (&body[..space], &body[space + 1..]);
        match key {
            b"location" if location.is_none() => location = Some(utf8_location(value)?),
            b"identifier" if identifier.is_none() => identifier = Some(value.to_vec()),
            b"cid" => caveats.push(RawCaveat {
                location: None,
                id: value.to_vec(),
                vid: None,
            }),
            b"vid" => match caveats.last_mut() {
                Some(c) if c.vid.is_none() => c.vid = Some(value.to_vec()),
                _ => return Err(MacaroonError::BadV1Packet),
            },
            b"cl" => match caveats.last_mut() {
                Some(c) if c.location.is_none() => c.location = Some(utf8_location(value)?),
                _ => return Err(MacaroonError::BadV1Packet),
            },
            b"signature" => {
                signature = Some(
                    <[u8; SIGNATURE_LEN]>::try_from(value)
                        .map_err(|_| MacaroonError::BadSignatureLength)?,
                );
            }
            _ => return Err(MacaroonError::BadV1Packet),
        }
    }

    if caveats
        .iter()
        .any(|c| c.location.is_some() && c.vid.is_none())
    {
        return Err(MacaroonError::LocationInFirstPartyCaveat);
    }
    let identifier = identifier.ok_or(MacaroonError::InvalidHeader)?;
    let signature = signature.ok_or(MacaroonError::MissingSignature)?;
    Ok(Macaroon {
        location,
        identifier,
        caveats,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn sample() -> Macaroon {
        let mut m = Macaroon::new("pypi.org", b"ident", KEY);
        m.add_first_party_caveat(b"[1,[\"a\"]]");
        m.add_first_party_caveat(b"[0,20,10]");
        m
    }

    #[test]
    fn v2_layout_matches_format_doc() {
        let m = Macaroon::new("loc", b"id", KEY);
        let bytes = m.serialize_v2();
        let mut expected = vec![2, 1, 3, b'l', b'o', b'c', 2, 2, b'i', b'd', 0, 0, 6, 32];
        expected.extend_from_slice(&m.signature());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn signature_chain() {
        let derived = hmac(KEY_GENERATOR, KEY);
        let s0 = hmac(&derived, b"ident");
        let s1 = hmac(&s0, b"[1,[\"a\"]]");
        let s2 = hmac(&s1, b"[0,20,10]");
        assert_eq!(sample().signature(), s2);
        assert!(sample().verify_signature(KEY));
        assert!(!sample().verify_signature(b"other key"));
        assert!(Macaroon::new("", b"x", KEY).verify_signature(KEY));
    }

    #[test]
    fn tampered_caveat_fails_signature() {
        let bytes = sample().serialize_v2();
        let pos = bytes
            .windows(2)
            .position(|w| w == b"20")
            .expect("caveat present");
        let mut bad = bytes.clone();
        bad[pos] = b'9';
        let m = Macaroon::deserialize(&bad).expect("still well-formed");
        assert!(!m.verify_signature(KEY));
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.serialize_v2();
        let back = Macaroon::deserialize(&bytes).expect("round trip");
        assert_eq!(back, m);
        assert_eq!(back.serialize_v2(), bytes);
        assert_eq!(back.location(), "pypi.org");
        assert_eq!(back.identifier(), b"ident");
        assert_eq!(back.identifier_str(), Some("ident"));
        let cavs: Vec<&[u8]> = back.caveats().collect();
        assert_eq!(cavs, vec![&b"[1,[\"a\"]]"[..], &b"[0,20,10]"[..]]);
    }

    #[test]
    fn missing_location_is_kept_absent() {
        let m = sample();
        let mut bytes = vec![2, 2, 5];
        bytes.extend_from_slice(b"ident");
        bytes.extend_from_slice(&m.serialize_v2()[1 + 2 + 8 + 2 + 5..]);
        let back = Macaroon::deserialize(&bytes).expect("no location is fine");
        assert_eq!(back.location(), "");
        assert_eq!(back.serialize_v2(), bytes);
        assert!(back.verify_signature(KEY));
    }

    #[test]
    fn debug_hides_signature() {
        let m = sample();
        let dbg = format!("{m:?}");
        assert!(dbg.contains("ident"));
        assert!(dbg.contains("redacted"));
        let hex = hex::encode(m.signature());
        assert!(!dbg.contains(&hex));
        assert!(!dbg.contains(&format!("{:?}", m.signature())));
    }

    #[test]
    fn empty_and_unknown_format() {
        assert_eq!(Macaroon::deserialize(b""), Err(MacaroonError::Empty));
        assert_eq!(
            Macaroon::deserialize(&[3, 0, 0]),
            Err(MacaroonError::UnknownFormat)
        );
        assert_eq!(
            Macaroon::deserialize(&[0xff]),
            Err(MacaroonError::UnknownFormat)
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().serialize_v2();
        for n in 0..bytes.len() {
            assert!(
                Macaroon::deserialize(&bytes[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = sample().serialize_v2();
        bytes.push(0);
        assert_eq!(
            Macaroon::deserialize(&bytes),
            Err(MacaroonError::TrailingBytes)
        );
    }

    #[test]
    fn bad_varints() {
        // unterminated varint as the first field type
        assert_eq!(
            Macaroon::deserialize(&[2, 0x81]),
            Err(MacaroonError::BadVarint)
        );
        // 11-byte varint / overflowing 10th byte
        let mut long = vec![2];
        long.extend_from_slice(&[0xff; 9]);
        long.push(0x02);
        assert_eq!(Macaroon::deserialize(&long), Err(MacaroonError::BadVarint));
        // huge length
        let mut huge = vec![2, 2];
        huge.extend_from_slice(&[0xff; 9]);
        huge.push(0x01);
        assert_eq!(Macaroon::deserialize(&huge), Err(MacaroonError::Truncated));
        // non-minimal varint (accepted, as by pymacaroons)
        let m = Macaroon::new("", b"id", KEY);
        let mut nm = vec![2, 0x81, 0x00, 0, 2, 2, b'i', b'd', 0, 0, 6, 32];
        nm.extend_from_slice(&m.signature());
        let back = Macaroon::deserialize(&nm).expect("non-minimal varint");
        assert_eq!(back.location(), "");
        assert!(back.verify_signature(KEY));
    }

    #[test]
    fn header_errors() {
        // no identifier
        assert_eq!(
            Macaroon::deserialize(&[2, 1, 1, b'l', 0, 0, 6, 0]),
            Err(MacaroonError::InvalidHeader)
        );
        // out of order
        assert_eq!(
            Macaroon::deserialize(&[2, 2, 1, b'i', 1, 1, b'l', 0]),
            Err(MacaroonError::FieldsOutOfOrder)
        );
        // duplicate identifier
        assert_eq!(
            Macaroon::deserialize(&[2, 2, 1, b'i', 2, 1, b'j', 0]),
            Err(MacaroonError::FieldsOutOfOrder)
        );
        // unknown field in header
        assert_eq!(
            Macaroon::deserialize(&[2, 2, 1, b'i', 3, 0, 0]),
            Err(MacaroonError::InvalidHeader)
        );
        // invalid UTF-8 location
        assert_eq!(
            Macaroon::deserialize(&[2, 1, 1, 0xff, 2, 1, b'i', 0]),
            Err(MacaroonError::InvalidLocation)
        );
    }

    fn with_sections(sections: &[u8], sig_len: u8) -> Vec<u8> {
        let mut v = vec![2, 2, 1, b'i', 0];
        v.extend_from_slice(sections);
        v.extend_from_slice(&[6, sig_len]);
        v.extend(std::iter::repeat_n(7u8, sig_len as usize));
        v
    }

    #[test]
    fn caveat_section_errors() {
        assert_eq!(
            Macaroon::deserialize(&with_sections(&[1, 1, b'l', 0, 0], 32)),
            Err(MacaroonError::MissingCaveatId)
        );
        assert_eq!(
            Macaroon::deserialize(&with_sections(&[1, 1, b'l', 2, 1, b'c', 0, 0], 32)),
            Err(MacaroonError::LocationInFirstPartyCaveat)
        );
        assert_eq!(
            Macaroon::deserialize(&with_sections(&[2, 1, b'c', 5, 1, b'x', 0, 0], 32)),
            Err(MacaroonError::InvalidCaveatField)
        );
        assert_eq!(
            Macaroon::deserialize(&with_sections(&[4, 1, b'v', 0, 0], 32)),
            Err(MacaroonError::MissingCaveatId)
        );
        assert_eq!(
            Macaroon::deserialize(&with_sections(&[0], 31)),
            Err(MacaroonError::BadSignatureLength)
        );
        // a signature field of the wrong type
        let mut wrong = vec![2, 2, 1, b'i', 0, 0, 5, 32];
        wrong.extend_from_slice(&[0; 32]);
        assert_eq!(
            Macaroon::deserialize(&wrong),
            Err(MacaroonError::MissingSignature)
        );
        // EOS where the signature should be
        assert_eq!(
            Macaroon::deserialize(&[2, 2, 1, b'i', 0, 0, 0]),
            Err(MacaroonError::MissingSignature)
        );
    }

    #[test]
    fn third_party_caveat_round_trips_but_never_verifies() {
        let bytes = with_sections(&[1, 2, b'l', b'c', 2, 1, b'c', 4, 2, b'v', b'v', 0, 0], 32);
        let m = Macaroon::deserialize(&bytes).expect("third-party caveat parses");
        assert!(m.has_third_party_caveats());
        assert_eq!(m.caveats().count(), 0);
        assert_eq!(m.serialize_v2(), bytes);
        assert!(!m.verify_signature(b"anything"));
    }

    fn v1_packet(key: &str, value: &[u8]) -> Vec<u8> {
        let len = 4 + key.len() + 2 + value.len();
        let mut p = format!("{len:04x}{key} ").into_bytes();
        p.extend_from_slice(value);
        p.push(b'\n');
        p
    }

    #[test]
    fn v1_binary() {
        let m = sample();
        let mut v1 = v1_packet("location", b"pypi.org");
        v1.extend(v1_packet("identifier", b"ident"));
        for c in m.caveats() {
            v1.extend(v1_packet("cid", c));
        }
        v1.extend(v1_packet("signature", &m.signature()));
        let back = Macaroon::deserialize(&v1).expect("v1 parses");
        assert_eq!(back, m);
        assert!(back.verify_signature(KEY));

        let mut trailing = v1.clone();
        trailing.extend(v1_packet("cid", b"x"));
        assert_eq!(
            Macaroon::deserialize(&trailing),
            Err(MacaroonError::TrailingBytes)
        );
        let mut unknown = v1_packet("bogus", b"x");
        unknown.extend(v1_packet("signature", &m.signature()));
        assert_eq!(
            Macaroon::deserialize(&unknown),
            Err(MacaroonError::BadV1Packet)
        );
        let no_sig = v1_packet("identifier", b"x");
        assert_eq!(
            Macaroon::deserialize(&no_sig),
            Err(MacaroonError::MissingSignature)
        );
        assert!(Macaroon::deserialize(b"00ff").is_err());
        assert!(Macaroon::deserialize(b"0003").is_err());
        assert!(Macaroon::deserialize(b"000aabc").is_err());
    }

    #[test]
    fn base64_wrapped() {
        use base64::Engine as _;
        let m = sample();
        let bytes = m.serialize_v2();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let std = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(Macaroon::deserialize(url.as_bytes()), Ok(m.clone()));
        assert_eq!(Macaroon::deserialize(std.as_bytes()), Ok(m));
    }

    proptest! {
        #[test]
        fn deserialize_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Macaroon::deserialize(&bytes);
        }

        #[test]
        fn deserialize_never_panics_v2_prefixed(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut v = vec![2u8];
            v.extend(bytes);
            let _ = Macaroon::deserialize(&v);
        }

        #[test]
        fn mutated_valid_macaroon_never_panics(idx in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = sample().serialize_v2();
            let i = idx.index(bytes.len());
            bytes[i] = byte;
            if let Ok(m) = Macaroon::deserialize(&bytes) {
                let _ = m.verify_signature(KEY);
            }
        }

        #[test]
        fn serialize_round_trips(
            location in ".{0,40}",
            identifier in proptest::collection::vec(any::<u8>(), 0..300),
            key in proptest::collection::vec(any::<u8>(), 0..80),
            caveats in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6),
        ) {
            let mut m = Macaroon::new(&location, &identifier, &key);
            for c in &caveats {
                m.add_first_party_caveat(c);
            }
            let bytes = m.serialize_v2();
            let back = Macaroon::deserialize(&bytes).expect("round trip");
            prop_assert_eq!(back.serialize_v2(), bytes);
            prop_assert!(back.verify_signature(&key));
            prop_assert_eq!(back, m);
        }
    }
}
