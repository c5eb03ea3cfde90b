//! The rows the index stores and the inputs of its write operations.

/// A registry user (owner of API tokens and projects).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A macaroon root key encrypted under a token key kept outside the index (issue #12,
/// finding 12): `sealed` is the verifier's AEAD output, opened only with the key `key_id`
/// names and only for the token row it was sealed for.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRootKey {
    pub key_id: String,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRootKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A token row's root key as stored: sealed, or (a row written before sealing, until the
/// start-up pass seals it) in the clear.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredRootKey {
    pub id: String,
    /// The clear root key of a row not yet sealed; empty once sealed.
    pub root_key: Vec<u8>,
    pub sealed_root_key: Option<Vec<u8>>,
    pub root_key_id: Option<String>,
}

impl StoredRootKey {
    /// The sealed key, when the row has one.
    pub fn sealed(&self) -> Option<SealedRootKey> {
        match (&self.root_key_id, &self.sealed_root_key) {
            (Some(key_id), Some(sealed)) => Some(SealedRootKey {
                key_id: key_id.clone(),
                sealed: sealed.clone(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Debug for StoredRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRootKey")
            .field("id", &self.id)
            .field("root_key_id", &self.root_key_id)
            .finish_non_exhaustive()
    }
}

/// A new API token row. The token string itself is never stored, only its root key, sealed.
#[derive(Clone)]
pub struct NewToken {
    pub id: String,
    pub user_id: Option<String>,
    /// Set for tokens minted through trusted publishing.
    pub publisher_id: Option<String>,
    /// Extra data kept with the token (PyPI's `additional`, e.g. the OIDC claims).
    pub additional: Option<String>,
    pub description: String,
    pub root_key: SealedRootKey,
    /// Caveats the server enforces in addition to those embedded in the token.
    pub caveats: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl NewToken {
    /// The server-side caveats as the JSON array the index stores.
    pub fn caveats_json(&self) -> Result<String, crate::IndexError> {
        serde_json::to_string(&self.caveats)
            .map_err(|error| crate::IndexError::Corrupt(format!("token caveats: {error}")))
    }
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("root_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A stored API token as the verifier needs it.
#[derive(Clone, sqlx::FromRow)]
pub struct TokenRecord {
    pub id: String,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub publisher_id: Option<String>,
    /// The clear root key of a row written before sealing; empty once sealed.
    pub root_key: Vec<u8>,
    pub sealed_root_key: Option<Vec<u8>>,
    pub root_key_id: Option<String>,
    /// JSON array of caveat strings.
    pub caveats: String,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("root_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// The row's root key as stored (sealed, or clear before the start-up sealing).
    pub fn stored_root_key(&self) -> StoredRootKey {
        StoredRootKey {
            id: self.id.clone(),
            root_key: self.root_key.clone(),
            sealed_root_key: self.sealed_root_key.clone(),
            root_key_id: self.root_key_id.clone(),
        }
    }

    /// The server-side caveat strings.
    pub fn caveat_strings(&self) -> Result<Vec<String>, crate::IndexError> {
        serde_json::from_str(&self.caveats)
            .map_err(|error| crate::IndexError::Corrupt(format!("token caveats: {error}")))
    }
}

/// A token as listed by the admin CLI (no key material).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenSummary {
    pub id: String,
    pub user_name: Option<String>,
    pub publisher_id: Option<String>,
    pub description: String,
    pub caveats: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub normalized_name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub total_size: i64,
    pub last_serial: i64,
    pub created_at: i64,
}

/// A release (one version of a project).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Release {
    pub id: String,
    pub version: String,
    pub canonical_version: String,
    pub is_prerelease: bool,
    pub yanked: bool,
    pub yanked_reason: String,
    pub requires_python: Option<String>,
    /// Core metadata as JSON.
    pub metadata: String,
    pub created_at: i64,
}

/// A stored distribution file with its release's version and yank state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FileRecord {
    pub id: String,
    pub release_id: String,
    pub version: String,
    pub filename: String,
    pub packagetype: String,
    pub python_version: String,
    pub size: i64,
    pub md5_digest: String,
    pub sha256_digest: String,
    pub blake2_256_digest: String,
    pub path: String,
    pub upload_time: i64,
    pub comment_text: Option<String>,
    pub requires_python: Option<String>,
    pub metadata_sha256: Option<String>,
    pub metadata_blake2_256: Option<String>,
    pub yanked: bool,
    pub yanked_reason: String,
    /// The journal serial at which the file became visible.
    pub serial: i64,
}

/// A request to yank or unyank a release.
#[derive(Debug, Clone)]
pub struct YankChange<'a> {
    pub normalized_name: &'a str,
    pub canonical_version: &'a str,
    /// `Some(reason)` yanks (the reason may be empty), `None` unyanks.
    pub yank_reason: Option<&'a str>,
    pub submitted_by: &'a str,
}

/// What [`crate::Uploads::check_file`] needs to know about a new file.
#[derive(Debug, Clone)]
pub struct FileCandidate<'a> {
    pub normalized_name: &'a str,
    pub canonical_version: &'a str,
    pub filename: &'a str,
    pub packagetype: &'a str,
    pub sha256_digest: &'a str,
    pub blake2_256_digest: &'a str,
    /// Refuse new files in releases created longer ago than this (PyPI: 14 days).
    pub closed_release_after_micros: Option<i64>,
    pub now_micros: i64,
}

/// Whether a file may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAdmission {
    /// Nothing stands in the way.
    New,
    /// The very same file (filename and digests) is already stored: a no-op success.
    Identical(Box<FileRecord>),
    /// The file is refused.
    Refused(FileRefusal),
}

/// Why a file is refused by the index rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRefusal {
    /// Same filename with other bytes, or the same bytes under another filename.
    FileExists {
        filename: String,
        blake2_256_digest: String,
    },
    /// The filename belonged to a file that has since been deleted.
    FilenamePreviouslyUsed,
    /// The release is older than the closed-release window.
    ReleaseClosed,
    /// The release already has an sdist.
    OneSdistPerRelease,
    /// The project does not exist and this upload may not create it.
    ProjectMissing,
    /// The upload was authorized to create the project, but a concurrent upload by another
    /// user created it first, and this uploader has no role on it.
    UploaderNotAllowed { project_name: String },
    /// The upload would create a project whose ultranormalized name is another project's
    /// (PyPI's look-alike rule, repeated inside the commit so that two look-alike first
    /// uploads at once cannot both pass). `project_name` is the name as uploaded.
    NameTooSimilar { project_name: String },
    /// The file would take the project's total size over `limit` bytes (the
    /// `--max-project-size` the gateway admitted the upload under). `project_name` is the
    /// project's display name.
    ProjectTooLarge { project_name: String, limit: u64 },
}

/// The project an upload goes to.
#[derive(Debug, Clone)]
pub struct ProjectTarget {
    /// The name as uploaded (becomes the display name).
    pub name: String,
    pub normalized_name: String,
    pub ultranormalized_name: String,
    /// When the project does not exist: the user who creates it and becomes its owner. If the
    /// project turns out to exist at commit time (a concurrent first upload), this user must
    /// have a role on it.
    pub create_with_owner: Option<String>,
}

/// The release an upload goes to (used only when the release does not exist yet).
#[derive(Debug, Clone)]
pub struct ReleaseTarget {
    pub version: String,
    pub canonical_version: String,
    pub is_prerelease: bool,
    pub requires_python: Option<String>,
    pub metadata_json: String,
}

/// A file ready to be made visible: bytes stored, digests verified.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub filename: String,
    pub packagetype: String,
    pub python_version: String,
    pub size: i64,
    pub md5_digest: String,
    pub sha256_digest: String,
    pub blake2_256_digest: String,
    pub path: String,
    pub comment_text: Option<String>,
    pub uploaded_via: Option<String>,
    pub requires_python: Option<String>,
    pub metadata_sha256: Option<String>,
    pub metadata_blake2_256: Option<String>,
}

/// Everything [`crate::Uploads::commit_upload`] writes.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub upload_id: String,
    pub project: ProjectTarget,
    pub release: ReleaseTarget,
    pub file: NewFile,
    /// Who uploaded (user name, or `publisher:<id>`), for the journal.
    pub submitted_by: String,
    pub closed_release_after_micros: Option<i64>,
    /// The largest total size (bytes) the project may reach with this file; `None`: no limit
    /// is enforced at commit time.
    pub max_project_size: Option<u64>,
    pub now_micros: i64,
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// The file is visible now.
    Published {
        /// The committed file, as [`crate::Uploads::find_file_by_upload_id`] would read it.
        file: Box<FileRecord>,
        /// The journal serial at which it became visible.
        serial: i64,
        /// Whether this upload created the project.
        project_created: bool,
    },
    /// The very same file was already stored; nothing was written.
    Identical(Box<FileRecord>),
    /// The index rules refused the file; nothing was written.
    Refused(FileRefusal),
}

/// An OIDC issuer the operator added (the four built-in ones are not stored).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssuerRecord {
    pub name: String,
    /// `github`, `gitlab`, `google`, `activestate` or `generic`.
    pub kind: String,
    pub url: String,
    pub allow_http: bool,
    pub created_at: i64,
}

/// A trusted publisher: a claim policy and the projects it may publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherRecord {
    pub id: String,
    pub kind: String,
    pub issuer_url: String,
    /// The claim policy as JSON.
    pub policy: String,
    pub label: String,
    pub token_ttl_seconds: Option<i64>,
    /// Set while pending: the project the first exchange creates.
    pub pending_project_name: Option<String>,
    pub pending_user_id: Option<String>,
    /// Ids of the projects the publisher is attached to.
    pub project_ids: Vec<String>,
    pub created_at: i64,
}

/// A new publisher.
#[derive(Debug, Clone)]
pub struct NewPublisher {
    pub id: String,
    pub kind: String,
    pub issuer_url: String,
    pub policy: String,
    pub label: String,
    pub token_ttl_seconds: Option<i64>,
    /// Set for a pending publisher: the project its first exchange creates.
    pub pending_project_name: Option<String>,
    /// The pending project name, ultranormalized (to drop look-alike pending publishers).
    pub pending_project_ultranormalized: Option<String>,
    pub pending_user_id: Option<String>,
    pub project_ids: Vec<String>,
    pub created_at: i64,
}

/// The result of turning a pending publisher into an active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReifyResult {
    /// The project was created and the publisher attached to it.
    Created { project_id: String },
    /// The project exists already: the pending publisher was deleted.
    ProjectExists,
    /// The publisher is not pending (any more): a concurrent exchange activated it, or
    /// removed it by creating a look-alike project, or it was deleted. The losing side of a
    /// race, not an outage; nothing was written.
    NoLongerPending,
    /// Another project has the same ultranormalized name (PyPI's look-alike rule, repeated
    /// under the lock): nothing was written, the pending publisher stays.
    NameTooSimilar,
}

/// A rate limit: at most `burst` requests at once, refilled at one request per
/// `interval_micros` (so `burst` requests per `burst × interval`). It is enforced as the
/// generic cell rate algorithm, whose whole state is one timestamp per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed back to back.
    pub burst: u32,
    /// Microseconds for one more request to be allowed.
    pub interval_micros: i64,
}

impl RateLimit {
    /// `requests` per `window_micros`, all of them usable at once.
    pub fn per_window(requests: u32, window_micros: i64) -> RateLimit {
        let requests = requests.max(1);
        RateLimit {
            burst: requests,
            interval_micros: (window_micros / i64::from(requests)).max(1),
        }
    }

    /// How far the theoretical arrival time may run ahead of now.
    pub fn tolerance_micros(&self) -> i64 {
        self.interval_micros.saturating_mul(i64::from(self.burst))
    }
}

/// The answer of [`crate::RateLimits::rate_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// The request is counted and may proceed.
    Allowed,
    /// Over the limit (and not counted); the next request is allowed from `retry_at`
    /// (microseconds since the epoch).
    Limited { retry_at: i64 },
}

impl RateVerdict {
    /// For a refusal, the `Retry-After` seconds from `now_micros`: rounded up, and never 0
    /// (which would invite a busy loop); `None` when allowed.
    pub fn retry_after_seconds(self, now_micros: i64) -> Option<u64> {
        match self {
            RateVerdict::Allowed => None,
            RateVerdict::Limited { retry_at } => {
                let wait = u64::try_from(retry_at.saturating_sub(now_micros)).unwrap_or(0);
                Some(wait.div_ceil(1_000_000).max(1))
            }
        }
    }
}

/// The verdict on a refused GCRA update, given the key's stored arrival time. A row can
/// only be missing if another process (with a later clock) swept it, i.e. the allowance is
/// full again.
pub fn limited_until(tat: Option<i64>, limit: RateLimit) -> RateVerdict {
    match tat {
        Some(tat) => RateVerdict::Limited {
            retry_at: tat + limit.interval_micros - limit.tolerance_micros(),
        },
        None => RateVerdict::Allowed,
    }
}

/// A claim on an OIDC token id (`jti`): one exchange per JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiClaim {
    /// The issuer the token came from.
    pub issuer_url: String,
    /// The token's `jti`.
    pub jti: String,
    /// Unix seconds until which the claim is kept (after that the JWT no longer verifies).
    pub expires_at: i64,
    /// Unix seconds now (claims that expired before are swept).
    pub now: i64,
}
