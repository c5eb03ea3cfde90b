//! Error types for deserialization and token decoding.

/// Why a token or serialized macaroon could not be decoded.
///
/// The messages never contain the token, the macaroon bytes or any key: they
/// describe only the kind of defect, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacaroonError {
    /// The input is longer than [`crate::MAX_TOKEN_LEN`].
    #[error("token is too large")]
    TooLarge,
    /// The input is empty.
    #[error("empty macaroon")]
    Empty,
    /// The token has no `<prefix>-` part.
    #[error("token is missing a prefix")]
    MissingPrefix,
    /// The token prefix is not the expected one.
    #[error("token has an unexpected prefix")]
    WrongPrefix,
    /// The part after the prefix is not valid base64.
    #[error("token is not valid base64")]
    InvalidBase64,
    /// The first byte is neither the V2 version byte nor a V1 packet header.
    #[error("cannot determine data format of binary-encoded macaroon")]
    UnknownFormat,
    /// A V2 varint is unterminated or does not fit in 64 bits.
    #[error("invalid varint in macaroon")]
    BadVarint,
    /// A section (V2) or packet (V1) runs past the end of the input.
    #[error("macaroon data extends past end of buffer")]
    Truncated,
    /// V2 fields inside a section are not in strictly increasing order.
    #[error("macaroon fields out of order")]
    FieldsOutOfOrder,
    /// The header section is not `[location] identifier`.
    #[error("invalid macaroon header")]
    InvalidHeader,
    /// A caveat section has no identifier field.
    #[error("no identifier in caveat")]
    MissingCaveatId,
    /// A caveat section holds a location but no verification id.
    #[error("location not allowed in first party caveat")]
    LocationInFirstPartyCaveat,
    /// A caveat section holds a field other than location, identifier and vid.
    #[error("invalid field found in caveat")]
    InvalidCaveatField,
    /// The field after the caveats is not the signature.
    #[error("unexpected field found instead of signature")]
    MissingSignature,
    /// The signature is not 32 bytes long.
    #[error("macaroon signature must be 32 bytes")]
    BadSignatureLength,
    /// A location is not valid UTF-8.
    #[error("macaroon location is not valid UTF-8")]
    InvalidLocation,
    /// Bytes follow the signature.
    #[error("trailing bytes after macaroon signature")]
    TrailingBytes,
    /// A V1 packet is malformed (bad length header, missing space/newline, unknown key).
    #[error("malformed V1 macaroon packet")]
    BadV1Packet,
}
