//! Macaroon API tokens in PyPI's wire format and the caveats PyPI defines. No I/O.
//!
//! * [`Macaroon`]: the libmacaroons HMAC-SHA256 chain and V2 binary format,
//!   byte-compatible with `pymacaroons` (V1 binary is accepted on input).
//! * [`encode_token`] / [`decode_token`] / [`mint`]: `pypi-<base64url>` strings.
//! * [`Caveat`]: Warehouse's caveats (`[tag, fields…]` compact JSON, plus the
//!   legacy dict forms), and [`verify`] with Warehouse's failure texts.
//!
//! ```
//! use wharf_macaroon::{Caveat, ProjectRef, VerificationContext, decode_token, mint, verify};
//!
//! let key = [7u8; 32];
//! let token = mint("pypi.org", "5f0c…uuid", &key, &[Caveat::ProjectName(vec!["foo".into()])]);
//! assert!(token.starts_with("pypi-AgEIcHlwaS5vcmc"));
//!
//! let m = decode_token(&token, "pypi").unwrap();
//! let ctx = VerificationContext {
//!     now: 1_700_000_000,
//!     project: Some(ProjectRef { normalized_name: "bar", id: "…" }),
//!     user_id: Some("u1"),
//!     oidc_publisher_id: None,
//! };
//! let err = verify(&m, &key, &[], &ctx).unwrap_err();
//! assert_eq!(err.to_string(), "project-scoped token is not valid for project: 'bar'");
//! ```

mod caveat;
mod error;
mod macaroon;
mod token;
mod verify;

pub use caveat::Caveat;
pub use error::MacaroonError;
pub use macaroon::{Macaroon, SIGNATURE_LEN};
pub use token::{MAX_TOKEN_LEN, PYPI_PREFIX, decode_token, encode_token, mint};
pub use verify::{
    ProjectRef, VerificationContext, VerifyError, verify, verify_with_publisher_projects,
};
