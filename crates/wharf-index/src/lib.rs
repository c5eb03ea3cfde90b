//! Wharf's index database: projects, releases, files, users, API tokens and the journal.
//!
//! Services talk to the index through the [`IndexRepo`] trait only; each database backend is an
//! adapter implementing it ([`SqliteIndex`] for the embedded mode, [`PgIndex`] for the scaled
//! mode), each with its own migrations. Every write that makes a file visible happens in one
//! transaction ([`IndexRepo::commit_upload`]).

mod postgres;
mod records;
mod sqlite;

use async_trait::async_trait;

pub use postgres::PgIndex;
pub use records::*;
pub use sqlite::SqliteIndex;

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database could not be reached or answered with an error.
    #[error("index database error")]
    Database(#[from] sqlx::Error),
    /// The migrations could not be applied.
    #[error("index migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A uniqueness rule was violated (the message names what already exists).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt index row: {0}")]
    Corrupt(String),
}

impl IndexError {
    /// Tells whether retrying the same operation later may succeed (lost connection, busy
    /// database, server restarting, lost race), as opposed to a permanent failure.
    pub fn is_transient(&self) -> bool {
        match self {
            IndexError::Database(error) => sqlx_error_is_transient(error),
            IndexError::Migrate(
                sqlx::migrate::MigrateError::Execute(error)
                | sqlx::migrate::MigrateError::ExecuteMigration(error, _),
            ) => sqlx_error_is_transient(error),
            IndexError::Migrate(_) | IndexError::Conflict(_) | IndexError::Corrupt(_) => false,
        }
    }
}

fn sqlx_error_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                pg_code_is_transient(pg.code())
            } else {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including extended codes.
                db.code()
                    .and_then(|code| code.parse::<u32>().ok())
                    .is_some_and(|code| {
                        let primary = code & 0xff;
                        primary == 5 || primary == 6
                    })
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs after which the same operation may succeed later.
fn pg_code_is_transient(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected: the transaction lost a race.
        "40001" | "40P01"
        // lock_not_available (lock_timeout), query_canceled (statement_timeout).
        | "55P03" | "57014"
        // admin_shutdown, crash_shutdown, cannot_connect_now: the server is restarting.
        | "57P01" | "57P02" | "57P03"
        // read_only_sql_transaction: connected to a standby during a failover.
        | "25006"
        // idle_in_transaction_session_timeout: the session was ended; reconnect.
        | "25P03"
    ) || code.starts_with("08") // connection_exception and its subclasses
        || code.starts_with("53") // insufficient_resources (too many connections, out of memory)
}

/// The index API every service uses; one adapter per database backend.
/// Connections of the index's database pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Open connections, idle or in use.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

impl PoolUsage {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolUsage {
        PoolUsage {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
}

#[async_trait]
pub trait IndexRepo: Send + Sync + std::fmt::Debug {
    /// Tells whether the database answers.
    async fn ping(&self) -> Result<(), IndexError>;

    /// The connection pool's current use, for metrics.
    fn pool_usage(&self) -> PoolUsage;

    /// Creates a user; fails with [`IndexError::Conflict`] if the name is taken.
    async fn create_user(&self, name: &str, now_micros: i64) -> Result<User, IndexError>;
    /// Finds a user by exact name.
    async fn find_user_by_name(&self, name: &str) -> Result<Option<User>, IndexError>;
    /// Finds a user by id.
    async fn find_user(&self, id: &str) -> Result<Option<User>, IndexError>;

    /// Stores a new API token record (the root key is stored, never the token).
    async fn insert_token(&self, token: &NewToken) -> Result<(), IndexError>;
    /// Finds a token record by its id (the macaroon identifier).
    async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError>;
    /// Lists every token with its owner, newest first; no key material.
    async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError>;
    /// Deletes a token; returns whether it existed.
    async fn delete_token(&self, id: &str) -> Result<bool, IndexError>;
    /// Records that a token was just used.
    async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError>;

    /// Finds a project by its normalized name.
    async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError>;
    /// Finds projects whose ultranormalized name equals the given one.
    async fn find_projects_by_ultranormalized(
        &self,
        ultranormalized_name: &str,
    ) -> Result<Vec<Project>, IndexError>;
    /// The role a user has on a project, if any.
    async fn user_role(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, IndexError>;
    /// The roles on a project as `(role, user name)`, ordered by user name.
    async fn project_roles(&self, project_id: &str) -> Result<Vec<(String, String)>, IndexError>;
    /// Every project, ordered by normalized name.
    async fn list_projects(&self) -> Result<Vec<Project>, IndexError>;
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
    /// Turns a pending publisher into an active one: creates its project with the
    /// registering user as owner, attaches the publisher, and drops other users' pending
    /// publishers for the same (ultranormalized) name, in one transaction.
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
    /// Records a trusted-publishing exchange in one transaction: claims the token id (when
    /// given), stores the minted token and its audit event. `false`, with nothing stored, if
    /// the id was claimed before (a replay).
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
    /// Records a security event (mint, refusal, burn, publisher change).
    async fn record_audit(
        &self,
        kind: &str,
        detail: &str,
        now_micros: i64,
    ) -> Result<(), IndexError>;

    /// Finds the file committed for an upload id (makes bus redelivery idempotent).
    async fn find_file_by_upload_id(
        &self,
        upload_id: &str,
    ) -> Result<Option<FileRecord>, IndexError>;
    /// Checks, without writing, whether a file may be added (duplicates, filename reuse,
    /// closed releases, one sdist per release).
    async fn check_file(&self, candidate: &FileCandidate<'_>) -> Result<FileAdmission, IndexError>;
    /// Makes an upload visible: creates the project and release if needed, inserts the file,
    /// its filename registry entry and journal rows, all in one transaction. Repeats the
    /// [`IndexRepo::check_file`] checks inside the transaction so concurrent uploads of one
    /// filename end with exactly one winner.
    async fn commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_transient_codes() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08006", "08001", "53300",
            "55P03", "57014", "25006",
        ] {
            assert!(pg_code_is_transient(code), "{code}");
        }
        for code in [
            "23505", "23503", "42P01", "42601", "22001", "57P04", "XX000",
        ] {
            assert!(!pg_code_is_transient(code), "{code}");
        }
    }

    #[test]
    fn io_and_pool_errors_are_transient() {
        let io = IndexError::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(io.is_transient());
        assert!(IndexError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(
            IndexError::Migrate(sqlx::migrate::MigrateError::Execute(
                sqlx::Error::PoolTimedOut
            ))
            .is_transient()
        );
        assert!(!IndexError::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(!IndexError::Conflict("x".to_owned()).is_transient());
    }
}
