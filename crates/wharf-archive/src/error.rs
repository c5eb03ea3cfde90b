//! Errors and limits shared by the wheel and sdist inspectors.

use std::io;

/// The documentation link PyPI appends to archive-framing rejections.
pub const ARCHIVES_HELP_URL: &str = "https://docs.pypi.org/archives";

/// Why a distribution file was rejected.
///
/// `Display` yields the **reason text only**. How the upload endpoint turns it
/// into the HTTP reason phrase depends on where PyPI raises it:
///
/// * [`ArchiveError::is_invalid_distribution`] variants come from PyPI's archive
///   validity check (spec a.4 step 21, `_is_valid_dist_file`). PyPI reports them
///   as `Invalid distribution file. <reason>`, or as the bare
///   `Invalid distribution file.` when the reason is empty ([`ArchiveError::BadZip`],
///   [`ArchiveError::CorruptTar`]).
/// * The wheel-content checks of step 22 ([`ArchiveError::LicenseFileMissing`],
///   [`ArchiveError::RecordMissing`], [`ArchiveError::InvalidEntryPoints`],
///   [`ArchiveError::MetadataMissing`]) stand alone, without the prefix, and so does
///   Wharf's own [`ArchiveError::SeveralDistInfoDirs`].
/// * [`ArchiveError::Io`] is a failure of the caller's reader (not of the
///   uploaded bytes) and should become a server error, not a 400.
///
/// [`ArchiveError::upload_message`] builds the final text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A `.whl`/`.zip` for which no end-of-central-directory record is found.
    #[error("File is not a zipfile")]
    NotAZip,
    /// The zip has an end-of-central-directory record but cannot be parsed, or a
    /// member's data is corrupt (bad deflate stream, CRC mismatch). No reason text.
    #[error("")]
    BadZip,
    /// A `.tar.gz` whose first header cannot be read as a (gzip'd or plain) tar.
    #[error("File is not a tarfile")]
    NotATar,
    /// The tar stream is not gzip, is corrupt or is truncated. No reason text.
    #[error("")]
    CorruptTar,
    /// The file is at once a valid zip and a valid tar (a polyglot).
    #[error("File is both a ZIP and a tar archive")]
    ZipTarPolyglot,
    /// Decompression bomb: more than the minimum size and a ratio above the threshold.
    #[error("File exceeds compression ratio of {0}")]
    CompressionRatio(u64),
    /// A zip member uses a method other than STORED or DEFLATED.
    #[error("File does not use a supported compression type")]
    UnsupportedCompression,
    /// Zip framing rejected (duplicates, local/central mismatch, trailing data …).
    #[error("ZIP archive not accepted: {0}. See {ARCHIVES_HELP_URL} for more information")]
    ZipNotAccepted(String),
    /// Tar framing or member policy rejected (sparse members, unsafe paths …).
    #[error("tar archive not accepted: {0}. See {ARCHIVES_HELP_URL} for more information")]
    TarNotAccepted(String),
    /// The wheel filename has fewer than two `-`.
    #[error("Unable to parse name and version from wheel filename")]
    WheelFilename,
    /// `<name>-<version>.dist-info/WHEEL` is missing.
    #[error("WHEEL not found at {0}")]
    WheelNotFound(String),
    /// The sdist does not have exactly one top-level directory.
    #[error("Incorrect number of top-level directories in sdist")]
    TopLevelDirectories,
    /// `<top>/PKG-INFO` is missing.
    #[error("PKG-INFO not found at {0}")]
    PkgInfoNotFound(String),
    /// A member that has to be read into memory (METADATA, PKG-INFO, WHEEL,
    /// entry_points.txt) is larger than [`ArchiveLimits::max_metadata_bytes`].
    #[error("{path} exceeds the maximum size of {limit} bytes")]
    MemberTooLarge {
        /// Member path inside the archive.
        path: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The archive decompresses to more than the configured maximum.
    #[error("File exceeds the maximum uncompressed size of {0} bytes")]
    UncompressedTooLarge(u64),
    /// The archive has more members than the configured maximum.
    #[error("File contains more than {0} members")]
    TooManyMembers(u64),

    // ----- step 22: standalone messages -----
    /// A `License-File` from the metadata is not in the archive.
    #[error(
        "License-File {license_file} does not exist in distribution file {filename} at {expected}"
    )]
    LicenseFileMissing {
        /// The `License-File` value.
        license_file: String,
        /// The uploaded filename.
        filename: String,
        /// The member path where it was expected.
        expected: String,
    },
    /// The wheel has no `RECORD`.
    #[error("Wheel '{filename}' does not contain the required RECORD file: {path}")]
    RecordMissing {
        /// The uploaded filename.
        filename: String,
        /// The expected member path.
        path: String,
    },
    /// `entry_points.txt` is not valid UTF-8 INI with sane names.
    #[error("Wheel '{filename}' has invalid entry points defined in the entry_points.txt file")]
    InvalidEntryPoints {
        /// The uploaded filename.
        filename: String,
    },
    /// The wheel has no `METADATA`.
    #[error("Wheel '{filename}' does not contain the required METADATA file: {path}")]
    MetadataMissing {
        /// The uploaded filename.
        filename: String,
        /// The expected member path.
        path: String,
    },

    /// The wheel has more than one top-level `.dist-info` directory (Wharf's rule: pip and
    /// uv refuse to install such a wheel; PyPI accepts it).
    #[error("Wheel '{filename}' has more than one .dist-info directory: {dirs}")]
    SeveralDistInfoDirs {
        /// The uploaded filename.
        filename: String,
        /// The directories, sorted and comma-separated.
        dirs: String,
    },

    /// The caller's reader failed (not a property of the uploaded bytes).
    #[error("I/O error while reading the distribution file: {0}")]
    Io(#[source] io::Error),
}

impl ArchiveError {
    /// Whether PyPI reports this error as `Invalid distribution file. <reason>`
    /// (the archive-validity check). The others stand alone (or, for
    /// [`ArchiveError::Io`], are not client errors at all).
    pub fn is_invalid_distribution(&self) -> bool {
        !matches!(
            self,
            Self::LicenseFileMissing { .. }
                | Self::RecordMissing { .. }
                | Self::InvalidEntryPoints { .. }
                | Self::MetadataMissing { .. }
                | Self::SeveralDistInfoDirs { .. }
                | Self::Io(_)
        )
    }

    /// Whether this is a failure of the caller's reader rather than a verdict on
    /// the uploaded bytes.
    pub fn is_io(&self) -> bool {
        matches!(self, Self::Io(_))
    }

    /// The reason text, or `None` where PyPI gives none.
    pub fn reason(&self) -> Option<String> {
        match self {
            Self::BadZip | Self::CorruptTar => None,
            other => Some(other.to_string()),
        }
    }

    /// The complete message for the upload response (HTTP reason phrase):
    /// `Invalid distribution file.`, `Invalid distribution file. <reason>`, or
    /// the standalone text.
    pub fn upload_message(&self) -> String {
        if self.is_invalid_distribution() {
            match self.reason() {
                Some(r) => format!("Invalid distribution file. {r}"),
                None => "Invalid distribution file.".to_owned(),
            }
        } else {
            self.to_string()
        }
    }
}

/// Resource bounds for archive inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest member read into memory (METADATA, PKG-INFO, WHEEL,
    /// entry_points.txt). Default 16 MiB.
    pub max_metadata_bytes: u64,
    /// Compression-ratio rule: applies once the uncompressed total exceeds this.
    /// Default 64 MiB (PyPI's `COMPRESSION_RATIO_MIN_SIZE`).
    pub compression_ratio_min_size: u64,
    /// Compression-ratio rule: reject when uncompressed / compressed exceeds
    /// this. Default 50 (PyPI's `COMPRESSION_RATIO_THRESHOLD`). For sdists the
    /// rule is applied to the running totals while streaming, so a gzip bomb
    /// fails as soon as the minimum size is passed.
    pub max_compression_ratio: u64,
    /// Cap on the total uncompressed bytes of an sdist's tar stream. Default 2 GiB.
    pub max_sdist_uncompressed: u64,
    /// Cap on the number of members (zip central-directory entries; tar
    /// members including extension headers). Default 100 000.
    pub max_members: u64,
    /// Cap on one tar extension header (pax `x`/`g`, GNU long name/link),
    /// which has to be held in memory. Default 1 MiB.
    pub max_tar_extension_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_metadata_bytes: 16 * 1024 * 1024,
            compression_ratio_min_size: 64 * 1024 * 1024,
            max_compression_ratio: 50,
            max_sdist_uncompressed: 2 * 1024 * 1024 * 1024,
            max_members: 100_000,
            max_tar_extension_bytes: 1024 * 1024,
        }
    }
}

/// `uncompressed / compressed > ratio`, without floating point or overflow.
pub(crate) fn exceeds_ratio(uncompressed: u64, compressed: u64, ratio: u64) -> bool {
    u128::from(uncompressed) > u128::from(compressed) * u128::from(ratio)
}
