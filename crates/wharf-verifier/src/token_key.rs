//! Token keys: the AES-256-GCM keys, kept outside the index, that seal every API token's
//! macaroon root key (issue #12, finding 12).
//!
//! A copy of the database alone (a backup, a dump) holds only sealed root keys, which forge
//! nothing. Each root key is sealed with the token row's id as associated data, so a sealed
//! key moved to another row does not open, and is stored with the id of the token key that
//! sealed it, so that a rotation can re-seal row by row while old and new keys are both
//! configured, without invalidating a single token.
//!
//! The keys live in a small text file (`--token-key-file`), one key a line:
//! `<key id> <base64url of 32 bytes>`. The first line seals; every line opens. The file is
//! re-read when it changes, so a running verifier picks up a rotation made by the admin CLI
//! (or a Kubernetes Secret update) without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use wharf_index::{Index, SealedRootKey, StoredRootKey};

/// The length of a token key and of a macaroon root key, in bytes.
const KEY_BYTES: usize = 32;
/// Domain separation of the associated data: what is sealed, then the token row's id.
const AAD_PREFIX: &[u8] = b"wharf api token root key v1\0";
const FILE_HEADER: &str = "# Wharf token keys (docs/security.md, \"How to rotate keys\"): one key a line,\n\
# `<key id> <base64url key>`. The first line seals new root keys; every line opens them.\n\
# Keep this file out of the database's backups; whoever has both can forge every API token.\n";

/// Errors of the token keys.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    /// The key file could not be read.
    #[error("cannot read the token key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file could not be written.
    #[error("cannot write the token key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of the key file is not `<key id> <base64url of 32 bytes>`.
    #[error("the token key file {path} is malformed at line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    /// The key file holds no key.
    #[error("the token key file {0} holds no key")]
    Empty(PathBuf),
    /// A row is sealed under a key id that is not configured.
    #[error("API token {token_id} is sealed under token key {key_id}, which is not configured")]
    UnknownKeyId { token_id: String, key_id: String },
    /// A sealed root key did not open (wrong key, or the row was altered or moved).
    #[error("the sealed root key of API token {token_id} does not open under token key {key_id}")]
    OpenFailed { token_id: String, key_id: String },
    /// A row has neither a sealed nor a clear root key.
    #[error("API token {0} has no root key")]
    Missing(String),
}

/// One token key.
struct TokenKey {
    id: String,
    key: LessSafeKey,
}

/// What was read from the file, and when the file last changed.
struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    /// The first key seals; all open.
    keys: Vec<TokenKey>,
}

/// The configured token keys (cheap to clone; clones share the keys).
#[derive(Clone)]
pub struct TokenKeys {
    file: Option<PathBuf>,
    loaded: Arc<RwLock<Loaded>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenKeys")
            .field("file", &self.file)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// A verifier built from defaults (tests) seals under a random key held in memory only.
impl Default for TokenKeys {
    fn default() -> TokenKeys {
        TokenKeys::ephemeral()
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn new_key_line() -> (String, String) {
    let id = format!("tk-{}", hex::encode(random_bytes::<4>()));
    let line = format!(
        "{id} {}",
        URL_SAFE_NO_PAD.encode(random_bytes::<KEY_BYTES>())
    );
    (id, line)
}

fn aead_key(bytes: &[u8]) -> LessSafeKey {
    // 32 bytes is always a valid AES-256 key; the length is checked before.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256-GCM key"))
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The keys of a key file's text, first (sealing) key first.
fn parse(path: &Path, text: &str) -> Result<Vec<TokenKey>, TokenKeyError> {
    let malformed = |line, reason| TokenKeyError::Malformed {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut keys: Vec<TokenKey> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, encoded)) = line.split_once(char::is_whitespace) else {
            return Err(malformed(number + 1, "expected `<key id> <base64url key>`"));
        };
        if keys.iter().any(|key| key.id == id) {
            return Err(malformed(number + 1, "the key id appears twice"));
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(encoded.trim()) else {
            return Err(malformed(number + 1, "the key is not base64url"));
        };
        if bytes.len() != KEY_BYTES {
            return Err(malformed(number + 1, "the key is not 32 bytes long"));
        }
        keys.push(TokenKey {
            id: id.to_owned(),
            key: aead_key(&bytes),
        });
    }
    if keys.is_empty() {
        return Err(TokenKeyError::Empty(path.to_owned()));
    }
    Ok(keys)
}

fn read(path: &Path) -> Result<String, TokenKeyError> {
    std::fs::read_to_string(path).map_err(|source| TokenKeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Replaces the key file with `text` at once (a new file renamed over it), readable by its
/// owner only; with `only_if_absent`, leaves an existing file alone (a process that created
/// it at the same moment wins, and its key is the one everybody reads).
fn write_key_file(path: &Path, text: &str, only_if_absent: bool) -> Result<(), TokenKeyError> {
    let failed = |source| TokenKeyError::Write {
        path: path.to_owned(),
        source,
    };
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory).map_err(failed)?;
    let file_name = path.file_name().map_or_else(
        || "token-key".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let temporary = directory.join(format!(".{file_name}.{}", hex::encode(random_bytes::<6>())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    let placed = written.and_then(|()| {
        if only_if_absent {
            match std::fs::hard_link(&temporary, path) {
                Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => Err(error),
                _ => std::fs::remove_file(&temporary),
            }
        } else {
            std::fs::rename(&temporary, path)
        }
    });
    if let Err(error) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(error));
    }
    Ok(())
}

impl TokenKeys {
    /// One random key held in memory only (tests; a restart loses it).
    pub fn ephemeral() -> TokenKeys {
        let (id, _) = new_key_line();
        TokenKeys {
            file: None,
            loaded: Arc::new(RwLock::new(Loaded {
                stamp: None,
                keys: vec![TokenKey {
                    id,
                    key: aead_key(&random_bytes::<KEY_BYTES>()),
                }],
            })),
        }
    }

    /// The keys of the file at `path`, re-read whenever the file changes.
    pub fn from_file(path: &Path) -> Result<TokenKeys, TokenKeyError> {
        let stamp = stamp_of(path);
        let keys = parse(path, &read(path)?)?;
        #[cfg(unix)]
        if let Ok(metadata) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            // Group-readable is how Kubernetes mounts a Secret for a non-root user (fsGroup).
            if metadata.permissions().mode() & 0o007 != 0 {
                tracing::warn!(path = %path.display(), "the token key file is readable by every user; chmod 600 it");
            }
        }
        Ok(TokenKeys {
            file: Some(path.to_owned()),
            loaded: Arc::new(RwLock::new(Loaded { stamp, keys })),
        })
    }

    /// The keys of the file at `path`, creating it with one new key (mode 0600) if there is
    /// none yet: the embedded mode's default beside the database. Returns whether it was
    /// created.
    pub fn from_file_or_create(path: &Path) -> Result<(TokenKeys, bool), TokenKeyError> {
        if path.exists() {
            return Ok((TokenKeys::from_file(path)?, false));
        }
        let (_, line) = new_key_line();
        write_key_file(path, &format!("{FILE_HEADER}{line}\n"), true)?;
        Ok((TokenKeys::from_file(path)?, true))
    }

    /// The file the keys come from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Re-reads the key file if it changed since it was last read. A file that no longer
    /// reads keeps the keys already loaded (and says so).
    fn refresh(&self) {
        let Some(path) = &self.file else {
            return;
        };
        let stamp = stamp_of(path);
        let unchanged = self
            .loaded
            .read()
            .map(|loaded| loaded.stamp == stamp)
            .unwrap_or(false);
        if unchanged {
            return;
        }
        match read(path).and_then(|text| parse(path, &text)) {
            Ok(keys) => {
                if let Ok(mut loaded) = self.loaded.write() {
                    *loaded = Loaded { stamp, keys };
                    tracing::info!(path = %path.display(), key_ids = ?loaded.keys.iter().map(|key| key.id.as_str()).collect::<Vec<_>>(), "token key file re-read");
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "the changed token key file does not read; keeping the keys loaded before");
                if let Ok(mut loaded) = self.loaded.write() {
                    loaded.stamp = stamp;
                }
            }
        }
    }

    /// The configured key ids, the sealing key's first.
    pub fn key_ids(&self) -> Vec<String> {
        self.loaded
            .read()
            .map(|loaded| loaded.keys.iter().map(|key| key.id.clone()).collect())
            .unwrap_or_default()
    }

    /// The id of the key that seals new root keys.
    pub fn sealing_key_id(&self) -> String {
        self.refresh();
        self.key_ids().into_iter().next().unwrap_or_default()
    }

    /// Seals `root_key` for the token row `token_id` under the first key.
    pub fn seal(&self, token_id: &str, root_key: &[u8]) -> SealedRootKey {
        self.refresh();
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = &loaded.keys[0];
        let nonce = random_bytes::<NONCE_LEN>();
        let mut sealed = root_key.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([AAD_PREFIX, token_id.as_bytes()].concat()),
                &mut sealed,
            )
            .expect("AES-256-GCM sealing of 32 bytes");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        SealedRootKey {
            key_id: key.id.clone(),
            sealed: stored,
        }
    }

    /// Opens the root key of the token row `token_id`.
    pub fn open(&self, token_id: &str, sealed: &SealedRootKey) -> Result<Vec<u8>, TokenKeyError> {
        self.refresh();
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(key) = loaded.keys.iter().find(|key| key.id == sealed.key_id) else {
            return Err(TokenKeyError::UnknownKeyId {
                token_id: token_id.to_owned(),
                key_id: sealed.key_id.clone(),
            });
        };
        let failed = || TokenKeyError::OpenFailed {
            token_id: token_id.to_owned(),
            key_id: sealed.key_id.clone(),
        };
        if sealed.sealed.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, ciphertext) = sealed.sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut buffer = ciphertext.to_vec();
        let opened = key
            .key
            .open_in_place(
                nonce,
                Aad::from([AAD_PREFIX, token_id.as_bytes()].concat()),
                &mut buffer,
            )
            .map_err(|_| failed())?;
        Ok(opened.to_vec())
    }

    /// The clear root key of a stored row: opened when sealed, as stored when the row
    /// predates sealing.
    pub fn root_key(&self, stored: &StoredRootKey) -> Result<Vec<u8>, TokenKeyError> {
        match stored.sealed() {
            Some(sealed) => self.open(&stored.id, &sealed),
            None if !stored.root_key.is_empty() => Ok(stored.root_key.clone()),
            None => Err(TokenKeyError::Missing(stored.id.clone())),
        }
    }
}

/// Adds a new key to the key file at `path` as its first (sealing) line, keeping the
/// others for opening; creates the file if there is none. Returns the new key's id.
pub fn add_key_to_file(path: &Path) -> Result<String, TokenKeyError> {
    let existing = if path.exists() {
        let text = read(path)?;
        parse(path, &text)?;
        text.lines()
            .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
            .map(|line| format!("{}\n", line.trim()))
            .collect::<String>()
    } else {
        String::new()
    };
    let (id, line) = new_key_line();
    write_key_file(path, &format!("{FILE_HEADER}{line}\n{existing}"), false)?;
    Ok(id)
}

/// Removes from the key file at `path` every key but the first; returns the removed ids.
pub fn keep_only_sealing_key(path: &Path) -> Result<Vec<String>, TokenKeyError> {
    let text = read(path)?;
    let keys = parse(path, &text)?;
    let mut lines = text
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let first = lines.next().map(str::trim).unwrap_or_default();
    write_key_file(path, &format!("{FILE_HEADER}{first}\n"), false)?;
    Ok(keys.into_iter().skip(1).map(|key| key.id).collect())
}

/// Errors of the start-up check and the sealing passes.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    /// Rows are sealed under keys that are not configured.
    #[error(
        "{count} API token(s) are sealed under token key(s) {missing} that the token key \
         file {file} does not hold (configured: {configured}); configure the key file they \
         were sealed with (--token-key-file, WHARF_TOKEN_KEY_FILE)"
    )]
    UnconfiguredKeys {
        count: usize,
        missing: String,
        configured: String,
        file: String,
    },
    /// A root key did not open or the row is broken.
    #[error(transparent)]
    Key(#[from] TokenKeyError),
    /// The index could not be read or written.
    #[error("the index could not be read or written: {0}")]
    Index(#[from] wharf_index::IndexError),
}

/// Checks that every sealed row's key is configured, then seals the rows that still hold
/// a clear root key (written before sealing existed). Idempotent; run at start-up by every
/// process that verifies or creates tokens. Returns how many rows it sealed.
pub async fn prepare_token_keys(
    index: &dyn Index,
    keys: &TokenKeys,
) -> Result<usize, SealingError> {
    let rows = index.list_root_keys().await?;
    let configured = keys.key_ids();
    let mut missing: Vec<&str> = Vec::new();
    let mut count = 0;
    for row in &rows {
        if let Some(key_id) = row.root_key_id.as_deref()
            && !configured.iter().any(|id| id == key_id)
        {
            count += 1;
            if !missing.contains(&key_id) {
                missing.push(key_id);
            }
        }
    }
    if !missing.is_empty() {
        return Err(SealingError::UnconfiguredKeys {
            count,
            missing: missing.join(", "),
            configured: configured.join(", "),
            file: keys
                .file()
                .map_or_else(|| "(none)".to_owned(), |path| path.display().to_string()),
        });
    }
    let mut sealed = 0;
    for row in rows
        .iter()
        .filter(|row| row.sealed_root_key.is_none() && !row.root_key.is_empty())
    {
        if index
            .store_sealed_root_key(&row.id, &keys.seal(&row.id, &row.root_key))
            .await?
        {
            sealed += 1;
        }
    }
    Ok(sealed)
}

/// Re-seals every row not sealed under the sealing key (the first of the file) with it:
/// the second step of a rotation, while the old keys are still configured. Every token
/// keeps working. Returns how many rows it re-sealed.
pub async fn reseal_root_keys(index: &dyn Index, keys: &TokenKeys) -> Result<usize, SealingError> {
    let current = keys.sealing_key_id();
    let mut resealed = 0;
    for row in index.list_root_keys().await? {
        if row.root_key_id.as_deref() == Some(current.as_str()) {
            continue;
        }
        let root_key = keys.root_key(&row)?;
        if index
            .store_sealed_root_key(&row.id, &keys.seal(&row.id, &root_key))
            .await?
        {
            resealed += 1;
        }
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_for_its_row_and_under_its_key() {
        let keys = TokenKeys::ephemeral();
        let sealed = keys.seal("row-a", &[7; 32]);
        assert_eq!(keys.open("row-a", &sealed).unwrap(), vec![7; 32]);
        assert!(!sealed.sealed.windows(32).any(|window| window == [7; 32]));
        assert!(matches!(
            keys.open("row-b", &sealed),
            Err(TokenKeyError::OpenFailed { .. })
        ));
        let other = TokenKeys::ephemeral();
        assert!(matches!(
            other.open("row-a", &sealed),
            Err(TokenKeyError::UnknownKeyId { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.sealed[20] ^= 1;
        assert!(keys.open("row-a", &tampered).is_err());
    }

    #[test]
    fn the_key_file_is_created_private_rotated_and_reread_when_it_changes() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("token-key");
        let (keys, created) = TokenKeys::from_file_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let old_id = keys.sealing_key_id();
        let sealed_old = keys.seal("row", &[1; 32]);

        let new_id = add_key_to_file(&path).unwrap();
        // The running holder sees the new file: new rows seal under the new key, old
        // rows still open.
        assert_eq!(keys.sealing_key_id(), new_id);
        assert_eq!(keys.open("row", &sealed_old).unwrap(), vec![1; 32]);
        assert_eq!(keys.key_ids(), vec![new_id.clone(), old_id.clone()]);

        assert_eq!(keep_only_sealing_key(&path).unwrap(), vec![old_id]);
        let reread = TokenKeys::from_file(&path).unwrap();
        assert_eq!(reread.key_ids(), vec![new_id]);
        assert!(reread.open("row", &sealed_old).is_err());
    }

    #[test]
    fn a_malformed_key_file_says_where() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("token-key");
        std::fs::write(&path, "# comment\ntk-1 not-base64!\n").unwrap();
        let error = TokenKeys::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("malformed at line 2"), "{error}");
        std::fs::write(&path, "# only a comment\n").unwrap();
        let error = TokenKeys::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("holds no key"), "{error}");
    }
}
