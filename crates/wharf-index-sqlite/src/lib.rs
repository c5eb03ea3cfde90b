//! The SQLite adapter of the [`wharf_index`] ports, used by the embedded mode.
//!
//! Every writing transaction is `BEGIN IMMEDIATE` on the single writer connection: it takes
//! SQLite's write lock up front, so a rule's checks and its writes see the same state and two
//! concurrent commits of one filename cannot both pass. The rules themselves are
//! [`wharf_index::rules`], run over `Tx`, this adapter's [`Queries`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
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

/// The index on a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteIndex {
    /// Reads, in parallel (WAL).
    pool: SqlitePool,
    /// Writes, one at a time: SQLite has a single writer, and waiting here is an async queue
    /// where waiting on SQLite's lock would be its busy handler sleeping (1, 2, 5 … 100 ms).
    writer: SqlitePool,
}

impl SqliteIndex {
    /// Opens (creating if needed) the database at `path` and applies the migrations.
    pub async fn open(path: &Path) -> Result<SqliteIndex, IndexError> {
        let options = SqliteConnectOptions::new().filename(path);
        SqliteIndex::connect_with(options).await
    }

    /// Opens a `sqlite://…` URL and applies the migrations.
    pub async fn open_url(url: &str) -> Result<SqliteIndex, IndexError> {
        let options = SqliteConnectOptions::from_str(url)?;
        SqliteIndex::connect_with(options).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> Result<SqliteIndex, IndexError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit that returned is on disk, so an acknowledged upload survives a
            // power cut, not only a process kill.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(SqliteIndex { pool, writer })
    }

    /// Writes a consistent copy of the database to `dest` (which must not exist) while
    /// writers go on: `VACUUM INTO` reads one snapshot in a read transaction, so the copy
    /// holds every commit made before it started and none made after.
    pub async fn snapshot_into(&self, dest: &Path) -> Result<(), IndexError> {
        let dest = dest.to_str().ok_or_else(|| {
            sqlx::Error::Configuration(format!("{} is not valid UTF-8", dest.display()).into())
        })?;
        sqlx::query("VACUUM INTO ?1")
            .bind(dest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes every connection (the last one checkpoints the WAL and removes its files).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// [`Queries`] on a SQLite connection (a transaction of the writer, or a reader for
/// [`rules::check_file`]).
struct Tx<'c>(&'c mut SqliteConnection);

wharf_index_sql::portable_queries! {
    impl Queries for Tx<'_> {
        async fn pending_publisher_owner(
            &mut self,
            publisher_id: &str,
        ) -> Result<Option<(String, String)>, IndexError> {
            Ok(sqlx::query_as(
                "SELECT p.pending_user_id, u.name FROM publishers p JOIN users u \
                 ON u.id = p.pending_user_id WHERE p.id = ?1 AND p.pending_project_name IS NOT NULL",
            )
            .bind(publisher_id)
            .fetch_optional(&mut *self.0)
            .await?)
        }

        async fn lock_similar_names(&mut self, _ultranormalized_name: &str) -> Result<(), IndexError> {
            // `BEGIN IMMEDIATE` serializes every writer already.
            Ok(())
        }

        async fn begin_writes(&mut self) -> Result<(), IndexError> {
            // `BEGIN IMMEDIATE` took the write lock already.
            Ok(())
        }

        async fn append_journal(&mut self, entry: &JournalEntry<'_>) -> Result<i64, IndexError> {
            let result = sqlx::query(
                "INSERT INTO journal (project_name, version, action, submitted_by, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(entry.project_name)
            .bind(entry.version)
            .bind(entry.action)
            .bind(entry.submitted_by)
            .bind(entry.now_micros)
            .execute(&mut *self.0)
            .await?;
            Ok(result.last_insert_rowid())
        }

        async fn claim_jti(&mut self, claim: &JtiClaim) -> Result<bool, IndexError> {
            sqlx::query("DELETE FROM oidc_jti WHERE expires_at < ?1")
                .bind(claim.now)
                .execute(&mut *self.0)
                .await?;
            let claimed = sqlx::query(
                "INSERT INTO oidc_jti (issuer_url, jti, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&claim.issuer_url)
            .bind(&claim.jti)
            .bind(claim.expires_at)
            .execute(&mut *self.0)
            .await?;
            Ok(claimed.rows_affected() == 1)
        }
    }
}
impl SqliteIndex {
    /// Starts a writing transaction: `BEGIN IMMEDIATE` on the single writer.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, IndexError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A publisher row with its attached project ids (comma-joined).
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
    project_ids: Option<String>,
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
            project_ids: row
                .project_ids
                .map(|ids| ids.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            created_at: row.created_at,
        }
    }
}

macro_rules! select_publisher {
    () => {
        "SELECT p.id, p.kind, p.issuer_url, p.policy, p.label, p.token_ttl_seconds, \
         p.pending_project_name, p.pending_user_id, \
         (SELECT GROUP_CONCAT(pp.project_id) FROM publisher_projects pp \
          WHERE pp.publisher_id = p.id) AS project_ids, p.created_at \
         FROM publishers p "
    };
}

#[async_trait]
impl Health for SqliteIndex {
    async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage::of(&self.pool)
    }
}

#[async_trait]
impl Accounts for SqliteIndex {
    async fn create_user(&self, name: &str, now_micros: i64) -> Result<User, IndexError> {
        let user = User {
            id: Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now_micros,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.created_at)
        .execute(&self.writer)
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
            sqlx::query_as("SELECT id, name, created_at FROM users WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn find_user(&self, id: &str) -> Result<Option<User>, IndexError> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM users WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn insert_token(&self, token: &NewToken) -> Result<(), IndexError> {
        Tx(&mut *self.writer.acquire().await?)
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
        Tx(&mut *self.writer.acquire().await?)
            .store_sealed_root_key(id, sealed)
            .await
    }

    async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.user_id, u.name AS user_name, t.publisher_id, t.root_key, \
             t.sealed_root_key, t.root_key_id, t.caveats, t.expires_at \
             FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT t.id, u.name AS user_name, t.publisher_id, t.description, t.caveats, t.created_at, \
             t.expires_at, t.last_used_at FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id \
             ORDER BY t.created_at DESC, t.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_token(&self, id: &str) -> Result<bool, IndexError> {
        let result = sqlx::query("DELETE FROM api_tokens WHERE id = ?1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(now_micros)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Projects for SqliteIndex {
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
            "WHERE ultranormalized_name = ?1"
        ))
        .bind(ultranormalized_name)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_projects(&self) -> Result<Vec<Project>, IndexError> {
        Ok(
            sqlx::query_as(concat!(select_project!(), "ORDER BY normalized_name"))
                .fetch_all(&self.pool)
                .await?,
        )
    }
    async fn create_project_by_operator(
        &self,
        project: &ProjectTarget,
        owner_id: &str,
        submitted_by: &str,
        now_micros: i64,
    ) -> Result<Option<String>, IndexError> {
        let mut tx = self.begin_write().await?;
        let created = rules::create_project_by_operator(
            &mut Tx(&mut tx),
            project,
            owner_id,
            submitted_by,
            now_micros,
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }
}

#[async_trait]
impl Roles for SqliteIndex {
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
             WHERE r.project_id = ?1 ORDER BY u.name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[async_trait]
impl Releases for SqliteIndex {
    async fn max_serial(&self) -> Result<i64, IndexError> {
        let serial: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM journal")
            .fetch_one(&self.pool)
            .await?;
        Ok(serial.unwrap_or(0))
    }

    async fn project_releases(&self, project_id: &str) -> Result<Vec<Release>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT id, version, canonical_version, is_prerelease, yanked, yanked_reason, \
             requires_python, metadata, created_at FROM releases WHERE project_id = ?1",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn project_files(&self, project_id: &str) -> Result<Vec<FileRecord>, IndexError> {
        Ok(sqlx::query_as(concat!(
            select_file_record!(),
            "WHERE r.project_id = ?1 ORDER BY f.filename"
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
        let mut tx = self.begin_write().await?;
        let yanked = rules::set_release_yanked(&mut Tx(&mut tx), change, now_micros).await?;
        tx.commit().await?;
        Ok(yanked)
    }
}

#[async_trait]
impl Uploads for SqliteIndex {
    async fn find_file_by_upload_id(
        &self,
        upload_id: &str,
    ) -> Result<Option<FileRecord>, IndexError> {
        Ok(
            sqlx::query_as(concat!(select_file_record!(), "WHERE f.upload_id = ?1"))
                .bind(upload_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn check_file(&self, candidate: &FileCandidate<'_>) -> Result<FileAdmission, IndexError> {
        rules::check_file(&mut Tx(&mut *self.pool.acquire().await?), candidate).await
    }

    async fn commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError> {
        // IMMEDIATE takes the write lock up front, so the rule's checks and its inserts see
        // the same state and two concurrent commits of one filename cannot both pass.
        let mut tx = self.begin_write().await?;
        let result = rules::commit_upload(&mut Tx(&mut tx), upload).await?;
        if matches!(result, CommitResult::Published { .. }) {
            tx.commit().await?;
        }
        Ok(result)
    }
}

#[async_trait]
impl TrustedPublishing for SqliteIndex {
    async fn insert_issuer(&self, issuer: &IssuerRecord) -> Result<(), IndexError> {
        let inserted = sqlx::query(
            "INSERT INTO oidc_issuers (name, kind, url, allow_http, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .bind(&issuer.name)
        .bind(&issuer.kind)
        .bind(&issuer.url)
        .bind(issuer.allow_http)
        .bind(issuer.created_at)
        .execute(&self.writer)
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
            "SELECT name, kind, url, allow_http, created_at FROM oidc_issuers ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_issuer(&self, name: &str) -> Result<bool, IndexError> {
        let result = sqlx::query("DELETE FROM oidc_issuers WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn insert_publisher(&self, publisher: &NewPublisher) -> Result<(), IndexError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO publishers (id, kind, issuer_url, policy, label, token_ttl_seconds, \
             pending_project_name, pending_project_ultranormalized, pending_user_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
                "INSERT INTO publisher_projects (publisher_id, project_id) VALUES (?1, ?2)",
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
        let rows: Vec<PublisherRow> =
            sqlx::query_as(concat!(select_publisher!(), "ORDER BY p.created_at, p.id"))
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
            "WHERE p.issuer_url = ?1 ORDER BY p.created_at, p.id"
        ))
        .bind(issuer_url)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(PublisherRecord::from).collect())
    }

    async fn find_publisher(&self, id: &str) -> Result<Option<PublisherRecord>, IndexError> {
        let row: Option<PublisherRow> =
            sqlx::query_as(concat!(select_publisher!(), "WHERE p.id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(PublisherRecord::from))
    }

    async fn delete_publisher(&self, id: &str) -> Result<bool, IndexError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM api_tokens WHERE publisher_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM publisher_projects WHERE publisher_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query("DELETE FROM publishers WHERE id = ?1")
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
        sqlx::query("UPDATE publishers SET policy = ?2, label = ?3 WHERE id = ?1")
            .bind(id)
            .bind(policy)
            .bind(label)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn reify_pending_publisher(
        &self,
        publisher_id: &str,
        project: &ProjectTarget,
        now_micros: i64,
    ) -> Result<ReifyResult, IndexError> {
        let mut tx = self.begin_write().await?;
        let result =
            rules::reify_pending_publisher(&mut Tx(&mut tx), publisher_id, project, now_micros)
                .await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn claim_jti(
        &self,
        issuer_url: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, IndexError> {
        // One transaction, one commit: the sweep and the claim.
        let mut tx = self.begin_write().await?;
        let claim = JtiClaim {
            issuer_url: issuer_url.to_owned(),
            jti: jti.to_owned(),
            expires_at,
            now,
        };
        let claimed = Tx(&mut tx).claim_jti(&claim).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn record_minted_token(
        &self,
        claim: Option<&JtiClaim>,
        token: &NewToken,
        audit_kind: &str,
        audit_detail: &str,
        now_micros: i64,
    ) -> Result<bool, IndexError> {
        // One commit for the whole exchange: the single writer is the bottleneck of minting.
        let mut tx = self.begin_write().await?;
        let recorded = rules::record_minted_token(
            &mut Tx(&mut tx),
            claim,
            token,
            audit_kind,
            audit_detail,
            now_micros,
        )
        .await?;
        if recorded {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(recorded)
    }

    async fn delete_publisher_token(&self, id: &str) -> Result<bool, IndexError> {
        let result =
            sqlx::query("DELETE FROM api_tokens WHERE id = ?1 AND publisher_id IS NOT NULL")
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(result.rows_affected() > 0)
    }
}

#[async_trait]
impl RateLimits for SqliteIndex {
    async fn rate_limit(
        &self,
        scope: &str,
        key: &str,
        limit: RateLimit,
        now: i64,
    ) -> Result<RateVerdict, IndexError> {
        // One transaction, one commit: the sweep, the check and, when limited, the read.
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM rate_limits WHERE tat < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // GCRA in one statement: the new arrival time is taken only if it stays within the
        // tolerance; otherwise nothing changes and no row comes back.
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits (scope, key, tat) VALUES (?1, ?2, ?3 + ?4) \
             ON CONFLICT (scope, key) DO UPDATE SET tat = MAX(tat, ?3) + ?4 \
             WHERE MAX(tat, ?3) + ?4 - ?3 <= ?5 RETURNING tat",
        )
        .bind(scope)
        .bind(key)
        .bind(now)
        .bind(limit.interval_micros)
        .bind(limit.tolerance_micros())
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_some() {
            tx.commit().await?;
            return Ok(RateVerdict::Allowed);
        }
        let tat: Option<i64> =
            sqlx::query_scalar("SELECT tat FROM rate_limits WHERE scope = ?1 AND key = ?2")
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(limited_until(tat, limit))
    }
}

#[async_trait]
impl AuditLog for SqliteIndex {
    async fn record_audit(
        &self,
        kind: &str,
        detail: &str,
        now_micros: i64,
    ) -> Result<(), IndexError> {
        Tx(&mut *self.writer.acquire().await?)
            .record_audit(kind, detail, now_micros)
            .await
    }
}
