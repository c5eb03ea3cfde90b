//! The PostgreSQL adapter of the [`wharf_index`] ports, used by the scaled mode: any number of
//! gateways, workers and verifiers share one database. The rules are [`wharf_index::rules`],
//! run over `Tx`, this adapter's [`Queries`]; this file decides only how they are isolated.
//!
//! # Concurrency
//!
//! SQLite serializes every writer (`BEGIN IMMEDIATE`); PostgreSQL runs transactions side by
//! side, so the adapter serializes exactly the writers whose checks could interfere:
//!
//! - Every writing transaction runs at `READ COMMITTED` (set explicitly, whatever the server's
//!   default), where each statement takes a fresh snapshot. It first takes
//!   transaction-scoped advisory locks (`pg_advisory_xact_lock`) on what its checks are about:
//!   the normalized project name (project and release creation, one sdist per release,
//!   closed releases, display-name updates, yanks, reifying a pending publisher), the
//!   filename, and both digests. Only then does it run the checks, so a contender that waited
//!   for the lock sees the winner's committed rows and answers `Identical` or
//!   `Refused(FileExists)` just as SQLite would.
//! - Locks are taken in ascending key order, so two transactions never wait for each other in
//!   a cycle.
//! - A transaction that may create a project also takes, after those locks, an advisory lock
//!   on the project's ultranormalized name ([`Queries::lock_similar_names`]) before it checks
//!   for look-alike projects, so two look-alike first uploads (or an upload and a pending
//!   publisher) cannot both pass the check.
//! - Before its first write ([`Queries::begin_writes`]), a transaction also takes one global
//!   "journal" lock, held until commit. Serials (journal ids) are therefore handed out in
//!   commit order: a reader that sees serial `n` also sees every change with a smaller serial,
//!   as with SQLite. The lock covers only the short write phase; the checks of different files
//!   still run in parallel.
//! - The unique constraints stay the last line of defence. A unique violation (`23505`), a
//!   serialization failure (`40001`) or a deadlock (`40P01`) rolls the transaction back and
//!   retries it (bounded); the retry's checks then see the committed winner, so such a race
//!   ends in the same result SQLite gives, never in an error.
//! - `claim_jti` is one `INSERT … ON CONFLICT DO UPDATE … WHERE expired` statement: the
//!   primary key decides among concurrent claims, exactly one inserts (or takes over an
//!   expired claim). The sweep of expired claims skips rows other sweepers hold
//!   (`FOR UPDATE SKIP LOCKED`), so claims never wait on one another's clean-up.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use uuid::Uuid;

use wharf_index::prelude::*;
use wharf_index::rules::{self, FileRow, JournalEntry, Queries, ReleaseOf};
use wharf_index::{
    CommitResult, FileAdmission, FileCandidate, FileRecord, IssuerRecord, JtiClaim, NewPublisher,
    NewToken, NewUpload, PoolUsage, Project, ProjectTarget, PublisherRecord, RateLimit,
    RateVerdict, ReifyResult, Release, ReleaseTarget, SealedRootKey, StoredRootKey, TokenRecord,
    TokenSummary, User, YankChange, limited_until,
};
use wharf_index_sql::{select_file_record, select_project};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often a writing transaction is attempted when it loses a race the locks did not
/// prevent (unique violation, serialization failure, deadlock).
const MAX_ATTEMPTS: u32 = 4;

/// Explicit, because the checks-after-locking design needs a fresh snapshot per statement.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

macro_rules! select_publisher {
    () => {
        "SELECT p.id, p.kind, p.issuer_url, p.policy, p.label, p.token_ttl_seconds, \
         p.pending_project_name, p.pending_user_id, \
         ARRAY(SELECT pp.project_id FROM publisher_projects pp \
               WHERE pp.publisher_id = p.id ORDER BY pp.project_id COLLATE \"C\") AS project_ids, \
         p.created_at \
         FROM publishers p "
    };
}

/// The index on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgIndex {
    pool: PgPool,
}

impl PgIndex {
    /// Connects to a `postgres://…` URL and applies the migrations (under the migrator's
    /// advisory lock, so several processes may start at once).
    pub async fn connect(url: &str) -> Result<PgIndex, IndexError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // A request waiting for a connection to an unreachable database fails (as a
            // transient error, i.e. 503) within seconds instead of hanging.
            .acquire_timeout(Duration::from_secs(5));
        PgIndex::connect_with(options, pool).await
    }

    /// Connects with explicit connection and pool options and applies the migrations.
    ///
    /// Unless the options say otherwise, sessions are named `wharf`, a lock wait gives up
    /// after 30 s (`55P03`, transient) and a session idle inside a transaction for 60 s is
    /// ended by the server (so a vanished client cannot hold locks forever).
    pub async fn connect_with(
        options: PgConnectOptions,
        pool: PgPoolOptions,
    ) -> Result<PgIndex, IndexError> {
        let mut options = options;
        if options.get_application_name().is_none() {
            options = options.application_name("wharf");
        }
        let configured = options.get_options().unwrap_or_default().to_owned();
        let mut settings = Vec::new();
        if !configured.contains("lock_timeout") {
            settings.push(("lock_timeout", "30s"));
        }
        if !configured.contains("idle_in_transaction_session_timeout") {
            settings.push(("idle_in_transaction_session_timeout", "60s"));
        }
        if !settings.is_empty() {
            options = options.options(settings);
        }
        let pool = pool.connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgIndex { pool })
    }
}

/// A stable 64-bit key for `pg_advisory_xact_lock` (FNV-1a over `namespace`, NUL, `value`).
/// Stable across processes and releases, since every replica must compute the same key.
fn lock_key(namespace: &str, value: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([0]).chain(value.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

fn project_key(normalized_name: &str) -> i64 {
    lock_key("wharf.project", normalized_name)
}

/// Takes transaction-scoped advisory locks on `keys`, in ascending order (no lock cycles).
async fn lock_keys(conn: &mut PgConnection, mut keys: Vec<i64>) -> Result<(), IndexError> {
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Takes the journal lock: from here to the commit, this is the only transaction writing
/// journal rows, so serials become visible in order. Always taken after [`lock_keys`].
async fn lock_journal(conn: &mut PgConnection) -> Result<(), IndexError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key("wharf.journal", ""))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether a failed transaction lost a race and should run again: a unique violation
/// (another transaction committed the same key first), a serialization failure or a deadlock.
fn lost_race(error: &IndexError) -> bool {
    let IndexError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    matches!(db.code().as_deref(), Some("23505" | "40001" | "40P01"))
}

/// Runs `$attempt` (an expression producing a `Result` future) until it does not lose a race,
/// at most [`MAX_ATTEMPTS`] times.
macro_rules! retry_races {
    ($what:literal, $attempt:expr) => {{
        let mut attempt = 1;
        loop {
            match $attempt.await {
                Err(error) if attempt < MAX_ATTEMPTS && lost_race(&error) => {
                    tracing::debug!(
                        attempt,
                        what = $what,
                        error = ?error,
                        "index transaction lost a race; retrying"
                    );
                    attempt += 1;
                }
                result => break result,
            }
        }
    }};
}

/// [`Queries`] on a PostgreSQL connection (a transaction holding the advisory locks the rule
/// needs, or a pooled connection for [`rules::check_file`]).
struct Tx<'c>(&'c mut PgConnection);

wharf_index_sql::portable_queries! {
    impl Queries for Tx<'_> {
        async fn pending_publisher_owner(
            &mut self,
            publisher_id: &str,
        ) -> Result<Option<(String, String)>, IndexError> {
            // The row lock keeps a concurrent delete of the publisher out until the commit.
            Ok(sqlx::query_as(
                "SELECT p.pending_user_id, u.name FROM publishers p JOIN users u \
                 ON u.id = p.pending_user_id WHERE p.id = $1 AND p.pending_project_name IS NOT NULL \
                 FOR UPDATE OF p",
            )
            .bind(publisher_id)
            .fetch_optional(&mut *self.0)
            .await?)
        }

        async fn lock_similar_names(
            &mut self,
            ultranormalized_name: &str,
        ) -> Result<(), IndexError> {
            // Taken after the transaction's key locks and before the journal lock (and at most
            // one per transaction), so the lock order stays acyclic.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key("wharf.ultranormalized", ultranormalized_name))
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn begin_writes(&mut self) -> Result<(), IndexError> {
            lock_journal(self.0).await
        }

        async fn append_journal(&mut self, entry: &JournalEntry<'_>) -> Result<i64, IndexError> {
            // The caller took the journal lock (begin_writes): serials become visible in order.
            Ok(sqlx::query_scalar(
                "INSERT INTO journal (project_name, version, action, submitted_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(entry.project_name)
            .bind(entry.version)
            .bind(entry.action)
            .bind(entry.submitted_by)
            .bind(entry.now_micros)
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn claim_jti(&mut self, claim: &JtiClaim) -> Result<bool, IndexError> {
            // Garbage collection only: the claim below is correct whether or not this ran.
            sqlx::query(
                "DELETE FROM oidc_jti WHERE (issuer_url, jti) IN (SELECT issuer_url, jti \
                 FROM oidc_jti WHERE expires_at < $1 LIMIT 1000 FOR UPDATE SKIP LOCKED)",
            )
            .bind(claim.now)
            .execute(&mut *self.0)
            .await?;
            // A claim succeeds if the id was never claimed or its claim has expired; the primary
            // key makes exactly one of any number of concurrent claims insert (or take over).
            let claimed = sqlx::query(
                "INSERT INTO oidc_jti (issuer_url, jti, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (issuer_url, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at \
                 WHERE oidc_jti.expires_at < $4",
            )
            .bind(&claim.issuer_url)
            .bind(&claim.jti)
            .bind(claim.expires_at)
            .bind(claim.now)
            .execute(&mut *self.0)
            .await?;
            Ok(claimed.rows_affected() == 1)
        }
    }
}
/// A publisher row with its attached project ids.
#[derive(sqlx::FromRow)]
struct PublisherRow {
    id: String,
    kind: String,
    issuer_url: String,
    policy: String,
    label: String,
    token_ttl_seconds: Option<i64>,
    pending_project_name: Option<String>,
    pending_user_id: Option<String>,
    project_ids: Vec<String>,
    created_at: i64,
}

impl From<PublisherRow> for PublisherRecord {
    fn from(row: PublisherRow) -> PublisherRecord {
        PublisherRecord {
            id: row.id,
            kind: row.kind,
            issuer_url: row.issuer_url,
            policy: row.policy,
            label: row.label,
            token_ttl_seconds: row.token_ttl_seconds,
            pending_project_name: row.pending_project_name,
            pending_user_id: row.pending_user_id,
            project_ids: row.project_ids,
            created_at: row.created_at,
        }
    }
}

impl PgIndex {
    /// Starts a writing transaction holding the advisory locks on `keys`.
    async fn begin_locked(
        &self,
        keys: Vec<i64>,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, IndexError> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        lock_keys(&mut tx, keys).await?;
        Ok(tx)
    }

    async fn try_set_release_yanked(
        &self,
        change: &YankChange<'_>,
        now_micros: i64,
    ) -> Result<bool, IndexError> {
        let mut tx = self
            .begin_locked(vec![project_key(change.normalized_name)])
            .await?;
        let yanked = rules::set_release_yanked(&mut Tx(&mut tx), change, now_micros).await?;
        finish(tx, yanked).await?;
        Ok(yanked)
    }

    async fn try_create_project_by_operator(
        &self,
        project: &ProjectTarget,
        owner_id: &str,
        submitted_by: &str,
        now_micros: i64,
    ) -> Result<Option<String>, IndexError> {
        let mut tx = self
            .begin_locked(vec![project_key(&project.normalized_name)])
            .await?;
        let created = rules::create_project_by_operator(
            &mut Tx(&mut tx),
            project,
            owner_id,
            submitted_by,
            now_micros,
        )
        .await?;
        finish(tx, created.is_some()).await?;
        Ok(created)
    }

    async fn try_reify_pending_publisher(
        &self,
        publisher_id: &str,
        project: &ProjectTarget,
        now_micros: i64,
    ) -> Result<ReifyResult, IndexError> {
        let mut tx = self
            .begin_locked(vec![project_key(&project.normalized_name)])
            .await?;
        let result =
            rules::reify_pending_publisher(&mut Tx(&mut tx), publisher_id, project, now_micros)
                .await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn try_commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError> {
        let file = &upload.file;
        // Everything the rule's checks are about; contenders wait here, then see the winner.
        let mut tx = self
            .begin_locked(vec![
                project_key(&upload.project.normalized_name),
                lock_key("wharf.filename", &file.filename),
                lock_key("wharf.sha256", &file.sha256_digest),
                lock_key("wharf.blake2_256", &file.blake2_256_digest),
            ])
            .await?;
        let result = rules::commit_upload(&mut Tx(&mut tx), upload).await?;
        finish(tx, matches!(result, CommitResult::Published { .. })).await?;
        Ok(result)
    }
}

/// Commits `tx` if the rule wrote something to keep, else rolls it back (a refusal wrote
/// nothing; rolling back at once frees the locks without waiting for the pool).
async fn finish(
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    keep: bool,
) -> Result<(), IndexError> {
    if keep {
        tx.commit().await?;
    } else {
        let _ = tx.rollback().await;
    }
    Ok(())
}

#[async_trait]
impl Health for PgIndex {
    async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage::of(&self.pool)
    }
}

#[async_trait]
impl Accounts for PgIndex {
    async fn create_user(&self, name: &str, now_micros: i64) -> Result<User, IndexError> {
        let user = User {
            id: Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now_micros,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.created_at)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(IndexError::Conflict(format!(
                "user '{name}' already exists"
            )));
        }
        Ok(user)
    }

    async fn find_user_by_name(&self, name: &str) -> Result<Option<User>, IndexError> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn find_user(&self, id: &str) -> Result<Option<User>, IndexError> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn insert_token(&self, token: &NewToken) -> Result<(), IndexError> {
        Tx(&mut *self.pool.acquire().await?)
            .insert_token(token)
            .await
    }

    async fn list_root_keys(&self) -> Result<Vec<StoredRootKey>, IndexError> {
        Tx(&mut *self.pool.acquire().await?).root_keys().await
    }

    async fn store_sealed_root_key(
        &self,
        id: &str,
        sealed: &SealedRootKey,
    ) -> Result<bool, IndexError> {
        Tx(&mut *self.pool.acquire().await?)
            .store_sealed_root_key(id, sealed)
            .await
    }

    async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.user_id, u.name AS user_name, t.publisher_id, t.root_key, \
             t.sealed_root_key, t.root_key_id, t.caveats, t.expires_at \
             FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT t.id, u.name AS user_name, t.publisher_id, t.description, t.caveats, \
             t.created_at, t.expires_at, t.last_used_at \
             FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id \
             ORDER BY t.created_at DESC, t.id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_token(&self, id: &str) -> Result<bool, IndexError> {
        let result = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_micros)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Projects for PgIndex {
    async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError> {
        Tx(&mut *self.pool.acquire().await?)
            .project(normalized_name)
            .await
    }

    async fn find_projects_by_ultranormalized(
        &self,
        ultranormalized_name: &str,
    ) -> Result<Vec<Project>, IndexError> {
        Ok(sqlx::query_as(concat!(
            select_project!(),
            "WHERE ultranormalized_name = $1 ORDER BY normalized_name COLLATE \"C\""
        ))
        .bind(ultranormalized_name)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_projects(&self) -> Result<Vec<Project>, IndexError> {
        Ok(sqlx::query_as(concat!(
            select_project!(),
            "ORDER BY normalized_name COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await?)
    }
    async fn create_project_by_operator(
        &self,
        project: &ProjectTarget,
        owner_id: &str,
        submitted_by: &str,
        now_micros: i64,
    ) -> Result<Option<String>, IndexError> {
        retry_races!(
            "create_project_by_operator",
            self.try_create_project_by_operator(project, owner_id, submitted_by, now_micros)
        )
    }
}

#[async_trait]
impl Roles for PgIndex {
    async fn user_role(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, IndexError> {
        Tx(&mut *self.pool.acquire().await?)
            .role(project_id, user_id)
            .await
    }

    async fn project_roles(&self, project_id: &str) -> Result<Vec<(String, String)>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT r.role, u.name FROM roles r JOIN users u ON u.id = r.user_id \
             WHERE r.project_id = $1 ORDER BY u.name COLLATE \"C\"",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[async_trait]
impl Releases for PgIndex {
    async fn max_serial(&self) -> Result<i64, IndexError> {
        let serial: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM journal")
            .fetch_one(&self.pool)
            .await?;
        Ok(serial.unwrap_or(0))
    }

    async fn project_releases(&self, project_id: &str) -> Result<Vec<Release>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT id, version, canonical_version, is_prerelease, yanked, yanked_reason, \
             requires_python, metadata, created_at FROM releases WHERE project_id = $1 \
             ORDER BY created_at, canonical_version COLLATE \"C\"",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn project_files(&self, project_id: &str) -> Result<Vec<FileRecord>, IndexError> {
        Ok(sqlx::query_as(concat!(
            select_file_record!(),
            "WHERE r.project_id = $1 ORDER BY f.filename COLLATE \"C\""
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_release_yanked(
        &self,
        change: &YankChange<'_>,
        now_micros: i64,
    ) -> Result<bool, IndexError> {
        retry_races!(
            "set_release_yanked",
            self.try_set_release_yanked(change, now_micros)
        )
    }
}

#[async_trait]
impl Uploads for PgIndex {
    async fn find_file_by_upload_id(
        &self,
        upload_id: &str,
    ) -> Result<Option<FileRecord>, IndexError> {
        Ok(
            sqlx::query_as(concat!(select_file_record!(), "WHERE f.upload_id = $1"))
                .bind(upload_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn check_file(&self, candidate: &FileCandidate<'_>) -> Result<FileAdmission, IndexError> {
        rules::check_file(&mut Tx(&mut *self.pool.acquire().await?), candidate).await
    }

    async fn commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError> {
        retry_races!("commit_upload", self.try_commit_upload(upload))
    }
}

#[async_trait]
impl TrustedPublishing for PgIndex {
    async fn insert_issuer(&self, issuer: &IssuerRecord) -> Result<(), IndexError> {
        let inserted = sqlx::query(
            "INSERT INTO oidc_issuers (name, kind, url, allow_http, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&issuer.name)
        .bind(&issuer.kind)
        .bind(&issuer.url)
        .bind(issuer.allow_http)
        .bind(issuer.created_at)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(IndexError::Conflict(format!(
                "an issuer named '{}' or with URL {} exists already",
                issuer.name, issuer.url
            )));
        }
        Ok(())
    }

    async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT name, kind, url, allow_http, created_at FROM oidc_issuers \
             ORDER BY name COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_issuer(&self, name: &str) -> Result<bool, IndexError> {
        let result = sqlx::query("DELETE FROM oidc_issuers WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn insert_publisher(&self, publisher: &NewPublisher) -> Result<(), IndexError> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        sqlx::query(
            "INSERT INTO publishers (id, kind, issuer_url, policy, label, token_ttl_seconds, \
             pending_project_name, pending_project_ultranormalized, pending_user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&publisher.id)
        .bind(&publisher.kind)
        .bind(&publisher.issuer_url)
        .bind(&publisher.policy)
        .bind(&publisher.label)
        .bind(publisher.token_ttl_seconds)
        .bind(&publisher.pending_project_name)
        .bind(&publisher.pending_project_ultranormalized)
        .bind(&publisher.pending_user_id)
        .bind(publisher.created_at)
        .execute(&mut *tx)
        .await?;
        for project_id in &publisher.project_ids {
            sqlx::query(
                "INSERT INTO publisher_projects (publisher_id, project_id) VALUES ($1, $2)",
            )
            .bind(&publisher.id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_publishers(&self) -> Result<Vec<PublisherRecord>, IndexError> {
        let rows: Vec<PublisherRow> = sqlx::query_as(concat!(
            select_publisher!(),
            "ORDER BY p.created_at, p.id COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(PublisherRecord::from).collect())
    }

    async fn publishers_for_issuer(
        &self,
        issuer_url: &str,
    ) -> Result<Vec<PublisherRecord>, IndexError> {
        let rows: Vec<PublisherRow> = sqlx::query_as(concat!(
            select_publisher!(),
            "WHERE p.issuer_url = $1 ORDER BY p.created_at, p.id COLLATE \"C\""
        ))
        .bind(issuer_url)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(PublisherRecord::from).collect())
    }

    async fn find_publisher(&self, id: &str) -> Result<Option<PublisherRecord>, IndexError> {
        let row: Option<PublisherRow> =
            sqlx::query_as(concat!(select_publisher!(), "WHERE p.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(PublisherRecord::from))
    }

    async fn delete_publisher(&self, id: &str) -> Result<bool, IndexError> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        sqlx::query("DELETE FROM api_tokens WHERE publisher_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM publisher_projects WHERE publisher_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query("DELETE FROM publishers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected() > 0)
    }

    async fn update_publisher_policy(
        &self,
        id: &str,
        policy: &str,
        label: &str,
    ) -> Result<(), IndexError> {
        sqlx::query("UPDATE publishers SET policy = $2, label = $3 WHERE id = $1")
            .bind(id)
            .bind(policy)
            .bind(label)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reify_pending_publisher(
        &self,
        publisher_id: &str,
        project: &ProjectTarget,
        now_micros: i64,
    ) -> Result<ReifyResult, IndexError> {
        retry_races!(
            "reify_pending_publisher",
            self.try_reify_pending_publisher(publisher_id, project, now_micros)
        )
    }

    async fn claim_jti(
        &self,
        issuer_url: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, IndexError> {
        let claim = JtiClaim {
            issuer_url: issuer_url.to_owned(),
            jti: jti.to_owned(),
            expires_at,
            now,
        };
        Tx(&mut *self.pool.acquire().await?).claim_jti(&claim).await
    }

    async fn record_minted_token(
        &self,
        claim: Option<&JtiClaim>,
        token: &NewToken,
        audit_kind: &str,
        audit_detail: &str,
        now_micros: i64,
    ) -> Result<bool, IndexError> {
        let mut tx = self.pool.begin().await?;
        let recorded = rules::record_minted_token(
            &mut Tx(&mut tx),
            claim,
            token,
            audit_kind,
            audit_detail,
            now_micros,
        )
        .await?;
        finish(tx, recorded).await?;
        Ok(recorded)
    }

    async fn delete_publisher_token(&self, id: &str) -> Result<bool, IndexError> {
        let result =
            sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND publisher_id IS NOT NULL")
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() > 0)
    }
}

#[async_trait]
impl RateLimits for PgIndex {
    async fn rate_limit(
        &self,
        scope: &str,
        key: &str,
        limit: RateLimit,
        now: i64,
    ) -> Result<RateVerdict, IndexError> {
        // Garbage collection only: a swept row and a missing row mean the same.
        sqlx::query(
            "DELETE FROM rate_limits WHERE (scope, key) IN (SELECT scope, key FROM rate_limits \
             WHERE tat < $1 LIMIT 1000 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        // GCRA in one statement (the row lock serialises concurrent gateways): the new
        // arrival time is taken only if it stays within the tolerance; otherwise nothing
        // changes and no row comes back.
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits (scope, key, tat) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (scope, key) DO UPDATE SET tat = GREATEST(rate_limits.tat, $3) + $4 \
             WHERE GREATEST(rate_limits.tat, $3) + $4 - $3 <= $5 RETURNING tat",
        )
        .bind(scope)
        .bind(key)
        .bind(now)
        .bind(limit.interval_micros)
        .bind(limit.tolerance_micros())
        .fetch_optional(&self.pool)
        .await?;
        if taken.is_some() {
            return Ok(RateVerdict::Allowed);
        }
        let tat: Option<i64> =
            sqlx::query_scalar("SELECT tat FROM rate_limits WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(limited_until(tat, limit))
    }
}

#[async_trait]
impl AuditLog for PgIndex {
    async fn record_audit(
        &self,
        kind: &str,
        detail: &str,
        now_micros: i64,
    ) -> Result<(), IndexError> {
        Tx(&mut *self.pool.acquire().await?)
            .record_audit(kind, detail, now_micros)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_namespaced() {
        // The key is part of the protocol between replicas: it must never change.
        assert_eq!(
            lock_key("", ""),
            i64::from_ne_bytes(0xaf63_bd4c_8601_b7df_u64.to_ne_bytes())
        );
        assert_eq!(project_key("demo"), project_key("demo"));
        assert_ne!(project_key("demo"), lock_key("wharf.filename", "demo"));
        assert_ne!(project_key("demo"), project_key("demo2"));
    }
}
