//! The index's ports: one focused trait per concern, and the [`Index`] umbrella.
//!
//! A service takes the narrowest port it needs (`Arc<dyn Uploads>`, `&dyn Projects`, …); the
//! wiring holds one `Arc<dyn Index>`, which coerces to any of them (each port is a supertrait
//! of [`Index`]). A new feature adds a trait (and a supertrait of [`Index`]) or extends the
//! one it belongs to, without touching the others; a test double implements only the port it
//! changes.

use async_trait::async_trait;

use crate::{
    CommitResult, FileAdmission, FileCandidate, FileRecord, IndexError, IssuerRecord, JtiClaim,
    NewPublisher, NewToken, NewUpload, PoolUsage, Project, ProjectTarget, PublisherRecord,
    RateLimit, RateVerdict, ReifyResult, Release, SealedRootKey, StoredRootKey, TokenRecord,
    TokenSummary, User, YankChange,
};

/// The database behind the index, as health checks and metrics see it.
#[async_trait]
pub trait Health: Send + Sync + std::fmt::Debug {
    /// Tells whether the database answers.
    async fn ping(&self) -> Result<(), IndexError>;

    /// The connection pool's current use, for metrics.
    fn pool_usage(&self) -> PoolUsage;
}

/// Registry users and their API tokens.
#[async_trait]
pub trait Accounts: Send + Sync + std::fmt::Debug {
    /// Creates a user; fails with [`IndexError::Conflict`] if the name is taken.
    async fn create_user(&self, name: &str, now_micros: i64) -> Result<User, IndexError>;
    /// Finds a user by exact name.
    async fn find_user_by_name(&self, name: &str) -> Result<Option<User>, IndexError>;
    /// Finds a user by id.
    async fn find_user(&self, id: &str) -> Result<Option<User>, IndexError>;

    /// Stores a new API token record (its sealed root key is stored, never the token).
    async fn insert_token(&self, token: &NewToken) -> Result<(), IndexError>;
    /// Every token row's root key as stored (sealed or clear), for sealing and re-sealing.
    async fn list_root_keys(&self) -> Result<Vec<StoredRootKey>, IndexError>;
    /// Replaces a token row's root key with `sealed` and empties its clear column; returns
    /// whether the row exists.
    async fn store_sealed_root_key(
        &self,
        id: &str,
        sealed: &SealedRootKey,
    ) -> Result<bool, IndexError>;
    /// Finds a token record by its id (the macaroon identifier).
    async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError>;
    /// Lists every token with its owner, newest first; no key material.
    async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError>;
    /// Deletes a token; returns whether it existed.
    async fn delete_token(&self, id: &str) -> Result<bool, IndexError>;
    /// Records that a token was just used.
    async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError>;
}

/// Project rows, looked up by name.
#[async_trait]
pub trait Projects: Send + Sync + std::fmt::Debug {
    /// Finds a project by its normalized name.
    async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError>;
    /// Finds projects whose ultranormalized name equals the given one.
    async fn find_projects_by_ultranormalized(
        &self,
        ultranormalized_name: &str,
    ) -> Result<Vec<Project>, IndexError>;
    /// Every project, ordered by normalized name.
    async fn list_projects(&self) -> Result<Vec<Project>, IndexError>;
    /// Creates a project on an operator's order, `owner_id` its Owner: the new-name rules
    /// (standard-library names, prohibited names, look-alikes) are the operator's to waive,
    /// only the normalized name must be free. The new project's id, or `None` (nothing
    /// written) if a project has that normalized name.
    async fn create_project_by_operator(
        &self,
        project: &ProjectTarget,
        owner_id: &str,
        submitted_by: &str,
        now_micros: i64,
    ) -> Result<Option<String>, IndexError>;
}

/// Who holds which role (Owner, Maintainer) on a project.
#[async_trait]
pub trait Roles: Send + Sync + std::fmt::Debug {
    /// The role a user has on a project, if any.
    async fn user_role(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, IndexError>;
    /// The roles on a project as `(role, user name)`, ordered by user name.
    async fn project_roles(&self, project_id: &str) -> Result<Vec<(String, String)>, IndexError>;
}

/// A project's releases and files, their yank state, and the journal serial.
#[async_trait]
pub trait Releases: Send + Sync + std::fmt::Debug {
    /// The highest journal serial (0 for an empty index).
    async fn max_serial(&self) -> Result<i64, IndexError>;
    /// Every release of a project (including ones without files).
    async fn project_releases(&self, project_id: &str) -> Result<Vec<Release>, IndexError>;
    /// Every file of a project, with its release's version and yank state.
    async fn project_files(&self, project_id: &str) -> Result<Vec<FileRecord>, IndexError>;
    /// Yanks (`Some(reason)`) or unyanks (`None`) a release; returns false if no such release.
    async fn set_release_yanked(
        &self,
        change: &YankChange<'_>,
        now_micros: i64,
    ) -> Result<bool, IndexError>;
}

/// Admitting and committing uploaded files, under the rules of [`crate::rules`].
#[async_trait]
pub trait Uploads: Send + Sync + std::fmt::Debug {
    /// Finds the file committed for an upload id (makes bus redelivery idempotent).
    async fn find_file_by_upload_id(
        &self,
        upload_id: &str,
    ) -> Result<Option<FileRecord>, IndexError>;
    /// Checks, without writing, whether a file may be added ([`crate::rules::check_file`]).
    async fn check_file(&self, candidate: &FileCandidate<'_>) -> Result<FileAdmission, IndexError>;
    /// Makes an upload visible in one transaction ([`crate::rules::commit_upload`]): creates
    /// the project and release if needed, inserts the file, its filename registry entry and
    /// journal rows. Repeats the [`Uploads::check_file`] checks inside the transaction so
    /// concurrent uploads of one filename end with exactly one winner.
    async fn commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError>;
}

/// Trusted publishing: operator-managed OIDC issuers, publishers, token-id claims and the
/// tokens minted for publishers.
#[async_trait]
pub trait TrustedPublishing: Send + Sync + std::fmt::Debug {
    /// Adds an operator-managed OIDC issuer.
    async fn insert_issuer(&self, issuer: &IssuerRecord) -> Result<(), IndexError>;
    /// Every operator-managed issuer, by name.
    async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, IndexError>;
    /// Removes an issuer; returns whether it existed.
    async fn delete_issuer(&self, name: &str) -> Result<bool, IndexError>;

    /// Adds a publisher (active, attached to `project_ids`, or pending).
    async fn insert_publisher(&self, publisher: &NewPublisher) -> Result<(), IndexError>;
    /// Every publisher, oldest first.
    async fn list_publishers(&self) -> Result<Vec<PublisherRecord>, IndexError>;
    /// The publishers (active and pending) trusting tokens from one issuer.
    async fn publishers_for_issuer(
        &self,
        issuer_url: &str,
    ) -> Result<Vec<PublisherRecord>, IndexError>;
    /// Finds a publisher by id.
    async fn find_publisher(&self, id: &str) -> Result<Option<PublisherRecord>, IndexError>;
    /// Removes a publisher (and the tokens minted for it); returns whether it existed.
    async fn delete_publisher(&self, id: &str) -> Result<bool, IndexError>;
    /// Replaces a publisher's policy and label (pinning an owner id on first use).
    async fn update_publisher_policy(
        &self,
        id: &str,
        policy: &str,
        label: &str,
    ) -> Result<(), IndexError>;
    /// Turns a pending publisher into an active one ([`crate::rules::reify_pending_publisher`]):
    /// creates its project with the registering user as owner, attaches the publisher, and
    /// drops other users' pending publishers for the same (ultranormalized) name, in one
    /// transaction.
    async fn reify_pending_publisher(
        &self,
        publisher_id: &str,
        project: &ProjectTarget,
        now_micros: i64,
    ) -> Result<ReifyResult, IndexError>;
    /// Claims an OIDC token id; false if it was claimed before (a replay). Expired claims
    /// are cleaned up on the way.
    async fn claim_jti(
        &self,
        issuer_url: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, IndexError>;
    /// Records a trusted-publishing exchange in one transaction
    /// ([`crate::rules::record_minted_token`]): claims the token id (when given), stores the
    /// minted token and its audit event. `false`, with nothing stored, if the id was claimed
    /// before (a replay).
    async fn record_minted_token(
        &self,
        claim: Option<&JtiClaim>,
        token: &NewToken,
        audit_kind: &str,
        audit_detail: &str,
        now_micros: i64,
    ) -> Result<bool, IndexError>;
    /// Deletes a token only if it was minted for a publisher; returns whether it did.
    async fn delete_publisher_token(&self, id: &str) -> Result<bool, IndexError>;
}

/// Request limits shared by every process on the database.
#[async_trait]
pub trait RateLimits: Send + Sync + std::fmt::Debug {
    /// Counts one request of `key` against `limit` in `scope` (e.g. uploads per client IP),
    /// atomically across every process sharing the database. A refused request is not
    /// counted. Keys whose allowance is full again are swept on the way.
    async fn rate_limit(
        &self,
        scope: &str,
        key: &str,
        limit: RateLimit,
        now: i64,
    ) -> Result<RateVerdict, IndexError>;
}

/// The security audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Records a security event (mint, refusal, burn, publisher change).
    async fn record_audit(
        &self,
        kind: &str,
        detail: &str,
        now_micros: i64,
    ) -> Result<(), IndexError>;
}

/// The whole index: every port at once, for the wiring (`Arc<dyn Index>`) and the admin CLI.
/// Implemented for every type that implements all the ports; never implemented by hand.
pub trait Index:
    Health
    + Accounts
    + Projects
    + Roles
    + Releases
    + Uploads
    + TrustedPublishing
    + RateLimits
    + AuditLog
{
}

impl<T> Index for T where
    T: Health
        + Accounts
        + Projects
        + Roles
        + Releases
        + Uploads
        + TrustedPublishing
        + RateLimits
        + AuditLog
        + ?Sized
{
}
