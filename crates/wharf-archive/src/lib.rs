//! Distribution bytes: the single-pass digests and the inspection of wheels and sdists.
//!
//! Everything here is synchronous and works over [`std::io::Read`] /
//! [`std::io::Seek`]; the crate does no I/O of its own.
//!
//! * [`digest`]: MD5 + SHA-256 + BLAKE2b-256 in one pass, storage paths.
//! * [`wheel`]: [`inspect_wheel`] validates a `.whl` and returns its METADATA.
//! * [`sdist`]: [`inspect_sdist`] validates a `.tar.gz` and returns its PKG-INFO.
//!
//! Errors are [`ArchiveError`]s carrying PyPI's reason text; see its docs for
//! which ones the upload endpoint prefixes with `Invalid distribution file.`
//! ([`ArchiveError::upload_message`] builds the final text).
//!
//! Deliberately stricter than PyPI (all reported through the same message
//! shapes): zip central-directory entries must point at a local header with the
//! same name, method and CRC; zip members may not have absolute or `..` paths;
//! sdist members may not be absolute, escape the root, be devices/FIFOs, sit
//! beneath a symlink, or be links leaving the top-level directory; a pax `size`
//! must equal the header size; sdists are bounded in size, ratio and member
//! count while streaming. Relative symlinks that stay inside the sdist are
//! accepted. A wheel may have only one top-level `.dist-info` directory (pip and
//! uv refuse to install one with more), checked after all of PyPI's checks.

mod detect;
pub mod digest;
mod entry_points;
mod error;
pub mod sdist;
mod track;
pub mod wheel;
mod zipframe;

pub use detect::looks_like_tar;
pub use digest::{Digests, MultiHasher, digest_bytes, hex_digest_matches, storage_path};
pub use entry_points::entry_points_valid;
pub use error::{ARCHIVES_HELP_URL, ArchiveError, ArchiveLimits};
pub use sdist::{SdistInspection, inspect_sdist};
pub use wheel::{WheelInspection, inspect_wheel, wheel_name_version};
