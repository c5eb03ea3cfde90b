//! The single-pass digest pipeline (spec a.4 step 15–16) and the storage path (a.8).
//!
//! The upload body is hashed once, chunk by chunk, with MD5, SHA-256 and
//! BLAKE2b with a **32-byte digest** (`hashlib.blake2b(digest_size=32)`, whose
//! parameter block differs from BLAKE2b-512 truncated to 32 bytes).

use blake2::Blake2b;
use blake2::digest::consts::U32;
use md5::Md5;
use sha2::{Digest, Sha256};

type Blake2b256 = Blake2b<U32>;

/// The three digests PyPI records for every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digests {
    /// MD5 (legacy `md5_digest`).
    pub md5: [u8; 16],
    /// SHA-256 (`sha256_digest`).
    pub sha256: [u8; 32],
    /// BLAKE2b with a 32-byte digest (`blake2_256_digest`).
    pub blake2_256: [u8; 32],
}

impl Digests {
    /// Lower-case hex MD5.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    /// Lower-case hex SHA-256.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Lower-case hex BLAKE2b-256.
    pub fn blake2_256_hex(&self) -> String {
        hex::encode(self.blake2_256)
    }

    /// The storage path of a file with these digests (see [`storage_path`]).
    pub fn storage_path(&self, filename: &str) -> String {
        storage_path(&self.blake2_256_hex(), filename)
    }
}

/// Hashes a byte stream with MD5, SHA-256 and BLAKE2b-256 in one pass.
///
/// Feed it the body in chunks of any size with [`MultiHasher::update`]; larger
/// chunks (64 KiB or more) amortise the per-call overhead best.
#[derive(Clone, Default)]
pub struct MultiHasher {
    md5: Md5,
    sha256: Sha256,
    blake2: Blake2b256,
    bytes: u64,
}

impl std::fmt::Debug for MultiHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiHasher")
            .field("bytes_hashed", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl MultiHasher {
    /// A fresh hasher (same as `Default`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Hash `bytes` with all three algorithms.
    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha256.update(bytes);
        self.blake2.update(bytes);
        self.bytes = self.bytes.saturating_add(bytes.len() as u64);
    }

    /// Total number of bytes fed so far.
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes
    }

    /// Finish and return the three digests.
    pub fn finalize(self) -> Digests {
        Digests {
            md5: self.md5.finalize().into(),
            sha256: self.sha256.finalize().into(),
            blake2_256: self.blake2.finalize().into(),
        }
    }
}

impl std::io::Write for MultiHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Digests of a whole in-memory buffer (convenience for small files such as
/// the PEP 658 `.metadata` file).
pub fn digest_bytes(bytes: &[u8]) -> Digests {
    let mut h = MultiHasher::new();
    h.update(bytes);
    h.finalize()
}

/// PyPI's storage path for a file: `<b[0:2]>/<b[2:4]>/<b[4:]>/<filename>`,
/// where `b` is the lower-case hex BLAKE2b-256 digest (spec a.8).
///
/// The digest is lower-cased; a digest shorter than 4 characters (never produced
/// by [`Digests::blake2_256_hex`]) yields empty path segments rather than a panic.
pub fn storage_path(blake2_256_hex: &str, filename: &str) -> String {
    let b = blake2_256_hex.to_ascii_lowercase();
    let a = b.get(0..2).unwrap_or("");
    let c = b.get(2..4).unwrap_or("");
    let rest = b.get(4..).unwrap_or("");
    format!("{a}/{c}/{rest}/{filename}")
}

/// Whether a client-declared hex digest equals the computed one, compared
/// ASCII case-insensitively (spec a.4 step 16). Surrounding whitespace in
/// `declared` is not trimmed: the form layer is expected to have sanitised it.
pub fn hex_digest_matches(declared: &str, actual_hex: &str) -> bool {
    declared.len() == actual_hex.len() && declared.eq_ignore_ascii_case(actual_hex)
}

/// Hash `buf` with a single algorithm (1 = MD5, 2 = SHA-256, 4 = BLAKE2b-256),
/// in `chunk`-sized updates; returns the first digest byte. For the
/// throughput example only.
#[doc(hidden)]
pub fn bench_single(which: u8, buf: &[u8], chunk: usize) -> u8 {
    fn run<D: Digest>(buf: &[u8], chunk: usize) -> u8 {
        let mut d = D::new();
        for c in buf.chunks(chunk.max(1)) {
            d.update(c);
        }
        d.finalize().first().copied().unwrap_or(0)
    }
    match which {
        1 => run::<Md5>(buf, chunk),
        2 => run::<Sha256>(buf, chunk),
        _ => run::<Blake2b256>(buf, chunk),
    }
}
