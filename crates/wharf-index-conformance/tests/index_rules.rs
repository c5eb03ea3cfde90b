//! Conformance suite of the index rules ([`wharf_index::rules`] and the ports) (spec a.4 steps 17–20 and 24, a.6, a.7).
//!
//! Every rule is an `async fn(&dyn Harness)` that talks to the index through `&dyn Index`
//! only; the few things the trait cannot do (deleting a file row, reading the journal) go
//! through the [`Harness`], which each backend implements with raw SQL. The `conformance!`
//! macro turns every rule into one `#[tokio::test]` per backend, on a fresh database.
//!
//! Backends: SQLite on a temp file, and PostgreSQL on a fresh database per test (created
//! through the admin URL in `WHARF_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped afterwards). The PostgreSQL tests
//! fail (never skip) when the server is not reachable. Adding a backend: implement
//! [`Harness`] for it and add one `mod … { conformance!(…); }` line.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use wharf_core::Version;
use wharf_core::name::{normalize, ultranormalize};
use wharf_index::prelude::*;
use wharf_index::{
    CommitResult, FileAdmission, FileCandidate, FileRefusal, IssuerRecord, JtiClaim, NewFile,
    NewPublisher, NewToken, NewUpload, ProjectTarget, RateLimit, RateVerdict, ReifyResult,
    ReleaseTarget, SealedRootKey, User, YankChange,
};

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// One journal row, as the rules inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JournalRow {
    serial: i64,
    project_name: String,
    version: Option<String>,
    action: String,
    submitted_by: Option<String>,
}

/// What a backend provides to the suite: a fresh index plus the raw operations the
/// [`Index`] API deliberately does not offer.
#[async_trait]
trait Harness: Send + Sync {
    /// The index under test (fresh and empty for every test).
    fn index(&self) -> Arc<dyn Index>;
    /// Another index instance on the same database, with its own connection pool (as
    /// another gateway, worker or verifier process would have).
    async fn another_index(&self) -> Arc<dyn Index>;
    /// The audit events as `(kind, detail, created_at)`, oldest first.
    async fn audit_events(&self) -> Vec<(String, String, i64)>;
    /// Deletes a file row directly (as an administrator removing a file would), keeping the
    /// filename registry untouched.
    async fn delete_file_row(&self, filename: &str);
    /// The whole journal, ordered by serial.
    async fn journal(&self) -> Vec<JournalRow>;
    /// A token row's key columns as stored: `(root_key, sealed_root_key, root_key_id)`.
    async fn token_key_columns(&self, id: &str) -> (Vec<u8>, Option<Vec<u8>>, Option<String>);
    /// Writes a token row with a clear root key, as the code before sealing did.
    async fn insert_clear_token(&self, id: &str, root_key: &[u8]);
}

/// [`wharf_index_sqlite::SqliteIndex`] on a temp-file database.
struct SqliteHarness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    index: Arc<wharf_index_sqlite::SqliteIndex>,
    raw: SqlitePool,
}

impl SqliteHarness {
    async fn new() -> SqliteHarness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.sqlite3");
        let index = wharf_index_sqlite::SqliteIndex::open(&path)
            .await
            .expect("open sqlite index");
        let raw = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .expect("raw sqlite pool");
        SqliteHarness {
            _dir: dir,
            path,
            index: Arc::new(index),
            raw,
        }
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    fn index(&self) -> Arc<dyn Index> {
        Arc::clone(&self.index) as Arc<dyn Index>
    }

    async fn another_index(&self) -> Arc<dyn Index> {
        Arc::new(
            wharf_index_sqlite::SqliteIndex::open(&self.path)
                .await
                .expect("open another sqlite index"),
        )
    }

    async fn audit_events(&self) -> Vec<(String, String, i64)> {
        sqlx::query_as("SELECT kind, detail, created_at FROM audit_events ORDER BY id")
            .fetch_all(&self.raw)
            .await
            .expect("read audit events")
    }

    async fn delete_file_row(&self, filename: &str) {
        let deleted = sqlx::query("DELETE FROM files WHERE filename = ?1")
            .bind(filename)
            .execute(&self.raw)
            .await
            .expect("delete file row");
        assert_eq!(deleted.rows_affected(), 1, "no file row {filename}");
    }

    async fn token_key_columns(&self, id: &str) -> (Vec<u8>, Option<Vec<u8>>, Option<String>) {
        sqlx::query_as(
            "SELECT root_key, sealed_root_key, root_key_id FROM api_tokens WHERE id = ?1",
        )
        .bind(id)
        .fetch_one(&self.raw)
        .await
        .expect("read token row")
    }

    async fn insert_clear_token(&self, id: &str, root_key: &[u8]) {
        sqlx::query("INSERT INTO api_tokens (id, root_key, created_at) VALUES (?1, ?2, 0)")
            .bind(id)
            .bind(root_key)
            .execute(&self.raw)
            .await
            .expect("insert clear token row");
    }

    async fn journal(&self) -> Vec<JournalRow> {
        let rows: Vec<(i64, String, Option<String>, String, Option<String>)> = sqlx::query_as(
            "SELECT id, project_name, version, action, submitted_by FROM journal ORDER BY id",
        )
        .fetch_all(&self.raw)
        .await
        .expect("read journal");
        rows.into_iter()
            .map(
                |(serial, project_name, version, action, submitted_by)| JournalRow {
                    serial,
                    project_name,
                    version,
                    action,
                    submitted_by,
                },
            )
            .collect()
    }
}

/// The admin URL the PostgreSQL harness creates its databases through.
fn postgres_admin_url() -> String {
    std::env::var("WHARF_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Fails the test with instructions when PostgreSQL cannot be reached (never a silent skip).
fn postgres_unreachable(url: &str, error: &dyn std::fmt::Display) -> ! {
    panic!(
        "PostgreSQL is not reachable at {url} ({error}).\n\
         The PostgreSQL conformance tests need a server. On this machine start it with\n    \
         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
         or point WHARF_TEST_POSTGRES_URL at a server where the user may CREATE DATABASE."
    )
}

/// [`wharf_index_postgres::PgIndex`] on a fresh database `wharf_test_<uuid>`, dropped afterwards.
struct PgHarness {
    admin: PgConnectOptions,
    database: String,
    url: String,
    index: Arc<wharf_index_postgres::PgIndex>,
    raw: PgPool,
}

impl PgHarness {
    async fn new() -> PgHarness {
        let admin_url = postgres_admin_url();
        let admin: PgConnectOptions = admin_url
            .parse()
            .unwrap_or_else(|error| panic!("WHARF_TEST_POSTGRES_URL {admin_url}: {error}"));
        let mut conn =
            match tokio::time::timeout(std::time::Duration::from_secs(10), admin.connect()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(error)) => postgres_unreachable(&admin_url, &error),
                Err(_) => postgres_unreachable(&admin_url, &"no answer within 10 s"),
            };
        let database = format!("wharf_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {database} via {admin_url}: {error}"));
        let url = admin.clone().database(&database).to_url_lossy().to_string();
        let index = wharf_index_postgres::PgIndex::connect(&url)
            .await
            .expect("connect PgIndex");
        let raw = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("raw postgres pool");
        PgHarness {
            admin,
            database,
            url,
            index: Arc::new(index),
            raw,
        }
    }
}

impl Drop for PgHarness {
    /// Drops the test database, best effort (`WITH (FORCE)` ends the pools' sessions).
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

#[async_trait]
impl Harness for PgHarness {
    fn index(&self) -> Arc<dyn Index> {
        Arc::clone(&self.index) as Arc<dyn Index>
    }

    async fn another_index(&self) -> Arc<dyn Index> {
        let options: PgConnectOptions = self.url.parse().expect("test database URL");
        Arc::new(
            wharf_index_postgres::PgIndex::connect_with(
                options,
                PgPoolOptions::new().max_connections(2),
            )
            .await
            .expect("connect another PgIndex"),
        )
    }

    async fn audit_events(&self) -> Vec<(String, String, i64)> {
        sqlx::query_as("SELECT kind, detail, created_at FROM audit_events ORDER BY id")
            .fetch_all(&self.raw)
            .await
            .expect("read audit events")
    }

    async fn delete_file_row(&self, filename: &str) {
        let deleted = sqlx::query("DELETE FROM files WHERE filename = $1")
            .bind(filename)
            .execute(&self.raw)
            .await
            .expect("delete file row");
        assert_eq!(deleted.rows_affected(), 1, "no file row {filename}");
    }

    async fn token_key_columns(&self, id: &str) -> (Vec<u8>, Option<Vec<u8>>, Option<String>) {
        sqlx::query_as(
            "SELECT root_key, sealed_root_key, root_key_id FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.raw)
        .await
        .expect("read token row")
    }

    async fn insert_clear_token(&self, id: &str, root_key: &[u8]) {
        sqlx::query("INSERT INTO api_tokens (id, root_key, created_at) VALUES ($1, $2, 0)")
            .bind(id)
            .bind(root_key)
            .execute(&self.raw)
            .await
            .expect("insert clear token row");
    }

    async fn journal(&self) -> Vec<JournalRow> {
        let rows: Vec<(i64, String, Option<String>, String, Option<String>)> = sqlx::query_as(
            "SELECT id, project_name, version, action, submitted_by FROM journal ORDER BY id",
        )
        .fetch_all(&self.raw)
        .await
        .expect("read journal");
        rows.into_iter()
            .map(
                |(serial, project_name, version, action, submitted_by)| JournalRow {
                    serial,
                    project_name,
                    version,
                    action,
                    submitted_by,
                },
            )
            .collect()
    }
}

/// Expands to one test per rule for the given harness type (which needs an
/// `async fn new() -> Self`). The list of rules lives here, once.
macro_rules! conformance {
    ($harness:ty) => {
        conformance!(@tests $harness;
            ping_answers,
            commit_creates_project_with_owner_release_and_file,
            commit_returns_the_file_as_stored_in_an_existing_release,
            later_commits_reuse_project_and_release,
            serials_increase,
            identical_reupload_is_a_noop,
            same_filename_other_digests_is_refused,
            same_digests_other_filename_is_refused,
            deleted_filename_cannot_be_reused,
            one_sdist_per_release,
            closed_release_refuses_new_files,
            new_project_needs_an_owner,
            racing_creator_without_a_role_is_refused,
            canonical_versions_share_a_release,
            respelled_upload_updates_display_name,
            yank_and_unyank,
            tokens_insert_find_list_touch_delete,
            token_rows_store_only_sealed_root_keys,
            users_are_unique_by_name,
            race_conflicting_uploads_have_one_winner,
            race_identical_uploads_publish_once,
            race_new_project_is_created_once,
            race_one_filename_across_pools,
            race_sdists_of_one_release_have_one_winner,
            race_new_project_across_pools,
            race_yanks_and_uploads_keep_serials_in_order,
            lookalike_first_uploads_raced_past_the_early_check,
            race_lookalike_first_uploads_have_one_winner,
            lookalike_pending_publisher_raced_past_the_early_check,
            race_lookalike_pending_publisher_and_uploads_have_one_winner,
            project_size_limit_holds_at_commit,
            race_project_size_limit_across_pools,
            issuers_insert_list_delete,
            publishers_insert_find_update_delete,
            reify_pending_publisher,
            operator_creates_a_lookalike_project_its_owner_uploads_to,
            race_reify_once,
            claim_jti_once_until_expiry,
            race_claim_jti_one_winner,
            audit_events_are_recorded,
            minted_token_claims_its_jti_in_one_transaction,
            rate_limit_allows_a_burst_then_refuses_until_refilled,
            race_rate_limit_across_pools,
        );
    };
    (@tests $harness:ty; $($rule:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let harness = <$harness>::new().await;
                $crate::$rule(&harness).await;
            }
        )*
    };
}

mod sqlite {
    conformance!(super::SqliteHarness);
}

mod postgres {
    conformance!(super::PgHarness);
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// One day in microseconds.
const DAY: i64 = 86_400 * 1_000_000;
/// A fixed "now" (2026-01-01T00:00:00Z), so the rules never depend on the clock.
const T0: i64 = 1_767_225_600 * 1_000_000;

/// A deterministic, content-like 64-hex-digit digest of `seed` (distinct per `kind`).
fn fake_digest(kind: &str, seed: &str) -> String {
    (0..4u8)
        .map(|part| {
            let mut hasher = DefaultHasher::new();
            (kind, seed, part).hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

/// Builds uploads the way the worker does (normalized names, canonical versions).
#[derive(Debug, Clone)]
struct Upload {
    project: String,
    version: String,
    filename: String,
    /// Stands for the bytes: the digests derive from it.
    content: String,
    owner: Option<User>,
    now: i64,
    closed_after: Option<i64>,
    max_project_size: Option<u64>,
}

impl Upload {
    /// A wheel of `project` `version`, created (if needed) by `owner`.
    fn wheel(project: &str, version: &str, owner: &User) -> Upload {
        let filename = format!(
            "{}-{}-py3-none-any.whl",
            normalize(project).replace('-', "_"),
            version
        );
        Upload {
            project: project.to_owned(),
            version: version.to_owned(),
            content: format!("bytes of {filename}"),
            filename,
            owner: Some(owner.clone()),
            now: T0,
            closed_after: None,
            max_project_size: None,
        }
    }

    /// An sdist of `project` `version`.
    fn sdist(project: &str, version: &str, owner: &User) -> Upload {
        let filename = format!(
            "{}-{}.tar.gz",
            normalize(project).replace('-', "_"),
            version
        );
        Upload {
            filename: filename.clone(),
            content: format!("bytes of {filename}"),
            ..Upload::wheel(project, version, owner)
        }
    }

    /// Renames the file, keeping its bytes (its digests).
    fn filename(mut self, filename: &str) -> Upload {
        self.filename = filename.to_owned();
        self
    }

    fn content(mut self, content: &str) -> Upload {
        self.content = content.to_owned();
        self
    }

    fn no_owner(mut self) -> Upload {
        self.owner = None;
        self
    }

    fn at(mut self, now: i64) -> Upload {
        self.now = now;
        self
    }

    fn closed_after(mut self, window: i64) -> Upload {
        self.closed_after = Some(window);
        self
    }

    /// Commits under a `--max-project-size` of `limit` bytes.
    fn max_project_size(mut self, limit: u64) -> Upload {
        self.max_project_size = Some(limit);
        self
    }

    fn no_window(mut self) -> Upload {
        self.closed_after = None;
        self
    }

    fn packagetype(&self) -> &'static str {
        if self.filename.ends_with(".whl") {
            "bdist_wheel"
        } else {
            "sdist"
        }
    }

    fn sha256(&self) -> String {
        fake_digest("sha256", &self.content)
    }

    fn blake2_256(&self) -> String {
        fake_digest("blake2b-256", &self.content)
    }

    fn md5(&self) -> String {
        fake_digest("md5", &self.content)[..32].to_owned()
    }

    fn size(&self) -> i64 {
        i64::try_from(self.content.len()).expect("size")
    }

    fn path(&self) -> String {
        let b = self.blake2_256();
        format!("{}/{}/{}/{}", &b[..2], &b[2..4], &b[4..], self.filename)
    }

    fn canonical_version(&self) -> String {
        Version::parse(&self.version).expect("version").canonical()
    }

    fn normalized_name(&self) -> String {
        normalize(&self.project)
    }

    fn candidate<'a>(
        &'a self,
        normalized: &'a str,
        canonical: &'a str,
        sha256: &'a str,
        blake2: &'a str,
    ) -> FileCandidate<'a> {
        FileCandidate {
            normalized_name: normalized,
            canonical_version: canonical,
            filename: &self.filename,
            packagetype: self.packagetype(),
            sha256_digest: sha256,
            blake2_256_digest: blake2,
            closed_release_after_micros: self.closed_after,
            now_micros: self.now,
        }
    }

    fn new_upload(&self) -> NewUpload {
        let version = Version::parse(&self.version).expect("version");
        NewUpload {
            upload_id: uuid::Uuid::new_v4().to_string(),
            project: ProjectTarget {
                name: self.project.clone(),
                normalized_name: self.normalized_name(),
                ultranormalized_name: ultranormalize(&self.project),
                create_with_owner: self.owner.as_ref().map(|owner| owner.id.clone()),
            },
            release: ReleaseTarget {
                version: version.normalized(),
                canonical_version: version.canonical(),
                is_prerelease: version.is_prerelease(),
                requires_python: Some(">=3.9".to_owned()),
                metadata_json: serde_json::json!({
                    "metadata_version": "2.1",
                    "name": self.project,
                    "version": self.version,
                })
                .to_string(),
            },
            file: NewFile {
                filename: self.filename.clone(),
                packagetype: self.packagetype().to_owned(),
                python_version: if self.packagetype() == "sdist" {
                    "source".to_owned()
                } else {
                    "py3".to_owned()
                },
                size: self.size(),
                md5_digest: self.md5(),
                sha256_digest: self.sha256(),
                blake2_256_digest: self.blake2_256(),
                path: self.path(),
                comment_text: None,
                uploaded_via: Some("twine/6.1.0".to_owned()),
                requires_python: Some(">=3.9".to_owned()),
                metadata_sha256: None,
                metadata_blake2_256: None,
            },
            submitted_by: self
                .owner
                .as_ref()
                .map_or_else(|| "publisher:pub-1".to_owned(), |owner| owner.name.clone()),
            closed_release_after_micros: self.closed_after,
            max_project_size: self.max_project_size,
            now_micros: self.now,
        }
    }

    /// `check_file` for this upload.
    async fn check(&self, index: &dyn Index) -> FileAdmission {
        let (normalized, canonical) = (self.normalized_name(), self.canonical_version());
        let (sha256, blake2) = (self.sha256(), self.blake2_256());
        index
            .check_file(&self.candidate(&normalized, &canonical, &sha256, &blake2))
            .await
            .expect("check_file")
    }

    /// `commit_upload` for this upload (fresh upload id).
    async fn commit(&self, index: &dyn Index) -> CommitResult {
        index
            .commit_upload(&self.new_upload())
            .await
            .expect("commit_upload")
    }

    /// `commit_upload` that must publish; returns the serial.
    async fn publish(&self, index: &dyn Index) -> i64 {
        match self.commit(index).await {
            CommitResult::Published { serial, .. } => serial,
            other => panic!("{} not published: {other:?}", self.filename),
        }
    }

    fn file_exists(&self) -> FileRefusal {
        FileRefusal::FileExists {
            filename: self.filename.clone(),
            blake2_256_digest: self.blake2_256(),
        }
    }
}

async fn user(index: &dyn Index, name: &str) -> User {
    index.create_user(name, T0).await.expect("create user")
}

async fn project_id(index: &dyn Index, normalized: &str) -> String {
    index
        .find_project(normalized)
        .await
        .expect("find_project")
        .unwrap_or_else(|| panic!("project {normalized} missing"))
        .id
}

async fn file_count(index: &dyn Index, normalized: &str) -> usize {
    match index.find_project(normalized).await.expect("find_project") {
        Some(project) => index
            .project_files(&project.id)
            .await
            .expect("project_files")
            .len(),
        None => 0,
    }
}

fn actions(journal: &[JournalRow]) -> Vec<&str> {
    journal.iter().map(|row| row.action.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

async fn ping_answers(h: &dyn Harness) {
    let index = h.index();
    index.ping().await.expect("ping");
    assert_eq!(index.max_serial().await.expect("max_serial"), 0);
    assert!(index.list_projects().await.expect("list").is_empty());
}

async fn commit_creates_project_with_owner_release_and_file(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let up = Upload::wheel("Demo.Pkg", "1.0", &alice);
    assert_eq!(up.check(index).await, FileAdmission::New);

    let new_upload = up.new_upload();
    let result = index.commit_upload(&new_upload).await.expect("commit");
    let CommitResult::Published {
        file: committed,
        serial,
        project_created,
    } = result
    else {
        panic!("not published: {result:?}");
    };
    assert!(project_created);

    // Project, under its normalized name, with the display name as uploaded.
    let project = index
        .find_project("demo-pkg")
        .await
        .expect("find")
        .expect("project created");
    assert_eq!(project.name, "Demo.Pkg");
    assert_eq!(project.normalized_name, "demo-pkg");
    assert_eq!(project.status, "active");
    assert_eq!(project.last_serial, serial);
    assert_eq!(project.total_size, up.size());
    assert_eq!(project.created_at, T0);
    assert_eq!(
        index.list_projects().await.expect("list"),
        vec![project.clone()]
    );
    assert_eq!(
        index
            .find_projects_by_ultranormalized(&ultranormalize("demo_pkg"))
            .await
            .expect("ultranormalized"),
        vec![project.clone()]
    );

    // The creator is its owner.
    assert_eq!(
        index.user_role(&project.id, &alice.id).await.expect("role"),
        Some("Owner".to_owned())
    );
    assert_eq!(
        index.project_roles(&project.id).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );

    // The release, built from the upload.
    let releases = index.project_releases(&project.id).await.expect("releases");
    assert_eq!(releases.len(), 1);
    let release = &releases[0];
    assert_eq!(release.version, "1.0");
    assert_eq!(release.canonical_version, "1");
    assert!(!release.is_prerelease);
    assert!(!release.yanked);
    assert_eq!(release.yanked_reason, "");
    assert_eq!(release.requires_python.as_deref(), Some(">=3.9"));
    assert_eq!(release.metadata, new_upload.release.metadata_json);
    assert_eq!(release.created_at, T0);

    // The file.
    let files = index.project_files(&project.id).await.expect("files");
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(file.release_id, release.id);
    assert_eq!(file.version, "1.0");
    assert_eq!(file.filename, up.filename);
    assert_eq!(file.packagetype, "bdist_wheel");
    assert_eq!(file.python_version, "py3");
    assert_eq!(file.size, up.size());
    assert_eq!(file.md5_digest, up.md5());
    assert_eq!(file.sha256_digest, up.sha256());
    assert_eq!(file.blake2_256_digest, up.blake2_256());
    assert_eq!(file.path, up.path());
    assert_eq!(file.upload_time, T0);
    assert_eq!(file.requires_python.as_deref(), Some(">=3.9"));
    assert!(!file.yanked);
    assert_eq!(
        index
            .find_file_by_upload_id(&new_upload.upload_id)
            .await
            .expect("by upload id")
            .as_ref(),
        Some(file)
    );
    // What the commit returned is the row as stored (the worker does not read it back).
    assert_eq!(*committed, *file);
    assert_eq!(
        index
            .find_file_by_upload_id("no-such-upload")
            .await
            .expect("by upload id"),
        None
    );

    // Journal: create, add Owner, new release, add file; the last one is the serial.
    let journal = h.journal().await;
    assert_eq!(
        actions(&journal),
        vec![
            "create",
            "add Owner alice",
            "new release",
            "add py3 file demo_pkg-1.0-py3-none-any.whl",
        ]
    );
    assert!(
        journal
            .iter()
            .all(|row| row.project_name == "Demo.Pkg"
                && row.submitted_by.as_deref() == Some("alice"))
    );
    assert_eq!(journal[0].version, None);
    assert_eq!(journal[2].version.as_deref(), Some("1.0"));
    assert_eq!(journal[3].version.as_deref(), Some("1.0"));
    assert_eq!(journal.last().map(|row| row.serial), Some(serial));
    assert_eq!(index.max_serial().await.expect("max_serial"), serial);

    // Now the same file is a duplicate for check_file too.
    assert!(matches!(
        up.check(index).await,
        FileAdmission::Identical(existing) if *existing == *file
    ));
}

async fn later_commits_reuse_project_and_release(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let bob = user(index, "bob").await;
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    let before = h.journal().await.len();

    // Another file of the same release: no new project, no new role, no new release. (An
    // upload by someone else who was allowed to create the project while it did not exist is
    // refused instead: see racing_creator_without_a_role_is_refused.)
    let sdist = Upload::sdist("demo", "1.0", &alice);
    match sdist.commit(index).await {
        CommitResult::Published {
            project_created, ..
        } => assert!(!project_created),
        other => panic!("not published: {other:?}"),
    }
    let id = project_id(index, "demo").await;
    assert_eq!(
        index.project_roles(&id).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );
    assert_eq!(index.user_role(&id, &bob.id).await.expect("role"), None);
    assert_eq!(
        index.project_releases(&id).await.expect("releases").len(),
        1
    );
    let files = index.project_files(&id).await.expect("files");
    assert_eq!(files.len(), 2);
    assert_eq!(files.iter().map(|f| f.size).sum::<i64>(), {
        let project = index.find_project("demo").await.expect("find").expect("p");
        project.total_size
    });
    let journal = h.journal().await;
    assert_eq!(
        actions(&journal[before..]),
        vec!["add source file demo-1.0.tar.gz"]
    );
    assert_eq!(journal[before].submitted_by.as_deref(), Some("alice"));
}

async fn serials_increase(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let mut serials = vec![index.max_serial().await.expect("max_serial")];
    for up in [
        Upload::wheel("demo", "1.0", &alice),
        Upload::sdist("demo", "1.0", &alice),
        Upload::wheel("demo", "2.0", &alice),
        Upload::wheel("other", "0.1", &alice),
    ] {
        let serial = up.publish(index).await;
        assert_eq!(index.max_serial().await.expect("max_serial"), serial);
        let project = index
            .find_project(&up.normalized_name())
            .await
            .expect("find")
            .expect("project");
        assert_eq!(project.last_serial, serial);
        serials.push(serial);
    }
    let yanked = index
        .set_release_yanked(
            &YankChange {
                normalized_name: "demo",
                canonical_version: "2",
                yank_reason: Some("oops"),
                submitted_by: "alice",
            },
            T0,
        )
        .await
        .expect("yank");
    assert!(yanked);
    let after_yank = index.max_serial().await.expect("max_serial");
    serials.push(after_yank);
    assert!(
        serials.windows(2).all(|pair| pair[0] < pair[1]),
        "serials not increasing: {serials:?}"
    );
    assert_eq!(
        index
            .find_project("demo")
            .await
            .expect("find")
            .expect("project")
            .last_serial,
        after_yank
    );
    // The other project's serial is untouched by demo's changes.
    assert_eq!(
        index
            .find_project("other")
            .await
            .expect("find")
            .expect("project")
            .last_serial,
        serials[4]
    );
}

async fn identical_reupload_is_a_noop(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let up = Upload::wheel("demo", "1.0", &alice);
    up.publish(index).await;
    let journal = h.journal().await;
    let project = index.find_project("demo").await.expect("find").expect("p");

    let FileAdmission::Identical(existing) = up.check(index).await else {
        panic!("check_file: not identical");
    };
    assert_eq!(existing.filename, up.filename);
    assert_eq!(existing.sha256_digest, up.sha256());
    assert_eq!(existing.blake2_256_digest, up.blake2_256());

    // A second upload (another upload id) of the very same file, even from another user.
    let bob = user(index, "bob").await;
    let mut again = up.clone();
    again.owner = Some(bob);
    match again.commit(index).await {
        CommitResult::Identical(file) => assert_eq!(*file, *existing),
        other => panic!("commit: not identical: {other:?}"),
    }
    // Nothing written: no journal row, no size, no second file.
    assert_eq!(h.journal().await, journal);
    assert_eq!(
        index.find_project("demo").await.expect("find"),
        Some(project)
    );
    assert_eq!(file_count(index, "demo").await, 1);
}

async fn same_filename_other_digests_is_refused(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let up = Upload::wheel("demo", "1.0", &alice);
    up.publish(index).await;
    let journal = h.journal().await;

    let other_bytes = up.clone().content("other bytes");
    let refusal = FileAdmission::Refused(other_bytes.file_exists());
    assert_eq!(other_bytes.check(index).await, refusal);
    assert_eq!(
        other_bytes.commit(index).await,
        CommitResult::Refused(other_bytes.file_exists())
    );
    // Only one of the two digests differs: still not identical.
    let (normalized, canonical) = ("demo".to_owned(), "1".to_owned());
    let (sha256, other_blake2) = (up.sha256(), other_bytes.blake2_256());
    let admission = index
        .check_file(&up.candidate(&normalized, &canonical, &sha256, &other_blake2))
        .await
        .expect("check_file");
    assert!(
        matches!(
            admission,
            FileAdmission::Refused(FileRefusal::FileExists { .. })
        ),
        "{admission:?}"
    );
    // Filenames are global: the same filename under another project is refused as well.
    let mut elsewhere = other_bytes.clone().content("third bytes");
    elsewhere.project = "unrelated".to_owned();
    assert_eq!(
        elsewhere.commit(index).await,
        CommitResult::Refused(elsewhere.file_exists())
    );
    assert!(
        index
            .find_project("unrelated")
            .await
            .expect("find")
            .is_none()
    );

    assert_eq!(h.journal().await, journal);
    assert_eq!(file_count(index, "demo").await, 1);
}

async fn same_digests_other_filename_is_refused(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let up = Upload::wheel("demo", "1.0", &alice);
    up.publish(index).await;
    let journal = h.journal().await;

    // The same bytes under another (valid) filename of the same release.
    let renamed = up.clone().filename("demo-1.0-py2.py3-none-any.whl");
    let refusal = renamed.file_exists();
    assert_eq!(
        renamed.check(index).await,
        FileAdmission::Refused(refusal.clone())
    );
    assert_eq!(renamed.commit(index).await, CommitResult::Refused(refusal));

    // …and in another project.
    let elsewhere = Upload::wheel("other", "3.0", &alice).content(&up.content);
    assert_eq!(
        elsewhere.commit(index).await,
        CommitResult::Refused(elsewhere.file_exists())
    );
    assert!(index.find_project("other").await.expect("find").is_none());
    assert_eq!(h.journal().await, journal);
    assert_eq!(file_count(index, "demo").await, 1);
}

async fn deleted_filename_cannot_be_reused(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let up = Upload::wheel("demo", "1.0", &alice);
    up.publish(index).await;
    Upload::sdist("demo", "1.0", &alice).publish(index).await;
    h.delete_file_row(&up.filename).await;
    assert_eq!(file_count(index, "demo").await, 1);
    let journal = h.journal().await;

    // Other bytes under the deleted name, and even the very same bytes again.
    for attempt in [up.clone().content("fixed bytes"), up.clone()] {
        assert_eq!(
            attempt.check(index).await,
            FileAdmission::Refused(FileRefusal::FilenamePreviouslyUsed),
            "{}",
            attempt.content
        );
        assert_eq!(
            attempt.commit(index).await,
            CommitResult::Refused(FileRefusal::FilenamePreviouslyUsed)
        );
    }
    // The registry is global: another project cannot take the name either.
    let mut elsewhere = up.clone().content("squatter bytes");
    elsewhere.project = "squatter".to_owned();
    assert_eq!(
        elsewhere.commit(index).await,
        CommitResult::Refused(FileRefusal::FilenamePreviouslyUsed)
    );
    assert!(
        index
            .find_project("squatter")
            .await
            .expect("find")
            .is_none()
    );

    // A duplicate of a live file is reported in preference (a.6: duplicates first).
    let sdist_dup = Upload::sdist("demo", "1.0", &alice).content("other sdist bytes");
    assert_eq!(
        sdist_dup.check(index).await,
        FileAdmission::Refused(sdist_dup.file_exists())
    );

    // A new filename is fine.
    Upload::wheel("demo", "1.0.post1", &alice)
        .publish(index)
        .await;
    assert_eq!(h.journal().await.len(), journal.len() + 2);
}

async fn one_sdist_per_release(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    Upload::sdist("demo", "1.0", &alice).publish(index).await;

    let zip_sdist = Upload::sdist("demo", "1.0", &alice)
        .filename("demo-1.0.zip")
        .content("zip sdist bytes");
    let refusal = FileRefusal::OneSdistPerRelease;
    assert_eq!(
        zip_sdist.check(index).await,
        FileAdmission::Refused(refusal.clone())
    );
    assert_eq!(
        zip_sdist.commit(index).await,
        CommitResult::Refused(refusal.clone())
    );
    // 1.0.0 is the same release.
    let same_release = Upload::sdist("demo", "1.0.0", &alice);
    assert_eq!(
        same_release.commit(index).await,
        CommitResult::Refused(refusal)
    );
    // Wheels are not limited, and another release takes its own sdist.
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    Upload::wheel("demo", "1.0", &alice)
        .filename("demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl")
        .content("binary wheel")
        .publish(index)
        .await;
    Upload::sdist("demo", "1.1", &alice).publish(index).await;
    assert_eq!(file_count(index, "demo").await, 4);
}

async fn closed_release_refuses_new_files(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let window = 14 * DAY;
    let wheel = Upload::wheel("demo", "1.0", &alice);
    wheel
        .clone()
        .at(T0)
        .closed_after(window)
        .publish(index)
        .await;
    let journal = h.journal().await;

    let sdist = Upload::sdist("demo", "1.0", &alice).closed_after(window);
    // Exactly at the end of the window: still open.
    assert_eq!(
        sdist.clone().at(T0 + window).check(index).await,
        FileAdmission::New
    );
    // Past it: closed, for check_file and commit_upload alike.
    let late = sdist.clone().at(T0 + window + 1);
    assert_eq!(
        late.check(index).await,
        FileAdmission::Refused(FileRefusal::ReleaseClosed)
    );
    assert_eq!(
        late.commit(index).await,
        CommitResult::Refused(FileRefusal::ReleaseClosed)
    );
    assert_eq!(
        Upload::sdist("demo", "1.0.0", &alice)
            .closed_after(window)
            .at(T0 + 30 * DAY)
            .commit(index)
            .await,
        CommitResult::Refused(FileRefusal::ReleaseClosed)
    );
    assert_eq!(h.journal().await, journal);

    // A duplicate is reported in preference; an identical re-upload stays a no-op success.
    let conflicting = wheel
        .clone()
        .content("other bytes")
        .closed_after(window)
        .at(T0 + 30 * DAY);
    assert_eq!(
        conflicting.check(index).await,
        FileAdmission::Refused(conflicting.file_exists())
    );
    assert!(matches!(
        wheel
            .clone()
            .closed_after(window)
            .at(T0 + 30 * DAY)
            .commit(index)
            .await,
        CommitResult::Identical(_)
    ));

    // Without a window releases stay open; a new release is never closed.
    sdist
        .clone()
        .at(T0 + 365 * DAY)
        .no_window()
        .publish(index)
        .await;
    Upload::wheel("demo", "2.0", &alice)
        .closed_after(window)
        .at(T0 + 365 * DAY)
        .publish(index)
        .await;
    assert_eq!(file_count(index, "demo").await, 3);
}

async fn new_project_needs_an_owner(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let up = Upload::wheel("orphan", "1.0", &alice).no_owner();
    assert_eq!(
        up.commit(index).await,
        CommitResult::Refused(FileRefusal::ProjectMissing)
    );
    // Nothing persisted: no project, no journal, no filename registry entry.
    assert!(index.find_project("orphan").await.expect("find").is_none());
    assert!(h.journal().await.is_empty());
    assert_eq!(index.max_serial().await.expect("max_serial"), 0);
    assert_eq!(up.check(index).await, FileAdmission::New);

    // Once the project exists, an upload without a would-be owner is fine (e.g. a trusted
    // publisher), and the owner is the creator.
    let mut created = up.clone();
    created.owner = Some(alice.clone());
    created.publish(index).await;
    let id = project_id(index, "orphan").await;
    let publisher_upload = Upload::sdist("orphan", "1.0", &alice).no_owner();
    match publisher_upload.commit(index).await {
        CommitResult::Published {
            project_created, ..
        } => assert!(!project_created),
        other => panic!("not published: {other:?}"),
    }
    assert_eq!(
        index.project_roles(&id).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );
    let journal = h.journal().await;
    assert_eq!(
        journal.last().and_then(|row| row.submitted_by.as_deref()),
        Some("publisher:pub-1")
    );
}

/// A file added to an existing (yanked) release: the returned record carries the release's
/// version as first spelled and its yank state, exactly as a read of the row gives them.
async fn commit_returns_the_file_as_stored_in_an_existing_release(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    let yank = YankChange {
        normalized_name: "demo",
        canonical_version: "1",
        yank_reason: Some("broken"),
        submitted_by: "alice",
    };
    assert!(index.set_release_yanked(&yank, T0).await.expect("yank"));

    // "1.0.0" is the same release as "1.0" (canonical "1").
    let sdist = Upload::sdist("demo", "1.0.0", &alice);
    let new_upload = sdist.new_upload();
    let CommitResult::Published {
        file: committed,
        serial,
        project_created,
    } = index.commit_upload(&new_upload).await.expect("commit")
    else {
        panic!("not published");
    };
    assert!(!project_created);
    assert_eq!(committed.version, "1.0");
    assert!(committed.yanked);
    assert_eq!(committed.yanked_reason, "broken");
    assert_eq!(committed.serial, serial);
    assert_eq!(
        index
            .find_file_by_upload_id(&new_upload.upload_id)
            .await
            .expect("by upload id"),
        Some(*committed)
    );
}

/// Two users were both allowed to create a project that did not exist yet; the one who
/// commits second finds it owned by the other and is refused, never added to it.
async fn racing_creator_without_a_role_is_refused(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let mallory = user(index, "mallory").await;
    Upload::wheel("contested", "1.0", &alice)
        .publish(index)
        .await;
    let late = Upload::sdist("contested", "1.0", &mallory);
    assert_eq!(
        late.commit(index).await,
        CommitResult::Refused(FileRefusal::UploaderNotAllowed {
            project_name: "contested".to_owned()
        })
    );
    // The project's owner, uploading the same way, is fine.
    match Upload::sdist("contested", "1.0", &alice)
        .commit(index)
        .await
    {
        CommitResult::Published {
            project_created, ..
        } => assert!(!project_created),
        other => panic!("the owner's upload was not published: {other:?}"),
    }
    let id = project_id(index, "contested").await;
    assert_eq!(
        index.project_roles(&id).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );
}

async fn canonical_versions_share_a_release(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    Upload::sdist("demo", "1.0.0", &alice).publish(index).await;
    Upload::wheel("demo", "1.0.0", &alice)
        .filename("demo-1.0.0-py2-none-any.whl")
        .publish(index)
        .await;
    let id = project_id(index, "demo").await;
    let releases = index.project_releases(&id).await.expect("releases");
    assert_eq!(releases.len(), 1, "{releases:?}");
    // The first file defines the release.
    assert_eq!(releases[0].version, "1.0");
    assert_eq!(releases[0].canonical_version, "1");
    let files = index.project_files(&id).await.expect("files");
    assert_eq!(files.len(), 3);
    assert!(
        files
            .iter()
            .all(|file| file.release_id == releases[0].id && file.version == "1.0")
    );
    assert_eq!(
        actions(&h.journal().await)
            .iter()
            .filter(|action| **action == "new release")
            .count(),
        1
    );

    // A different version (1.0.1, 1.0rc1) is a different release.
    Upload::wheel("demo", "1.0.1", &alice).publish(index).await;
    Upload::wheel("demo", "1.0rc1", &alice).publish(index).await;
    let mut releases = index.project_releases(&id).await.expect("releases");
    releases.sort_by(|a, b| a.canonical_version.cmp(&b.canonical_version));
    let summary: Vec<(&str, &str, bool)> = releases
        .iter()
        .map(|r| {
            (
                r.version.as_str(),
                r.canonical_version.as_str(),
                r.is_prerelease,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("1.0", "1", false),
            ("1.0.1", "1.0.1", false),
            ("1.0rc1", "1rc1", true),
        ]
    );
}

async fn respelled_upload_updates_display_name(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    Upload::wheel("Demo.Pkg", "1.0", &alice)
        .publish(index)
        .await;
    Upload::sdist("demo_pkg", "1.0", &alice)
        .publish(index)
        .await;
    let project = index
        .find_project("demo-pkg")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.name, "demo_pkg");
    assert_eq!(index.list_projects().await.expect("list").len(), 1);
    Upload::wheel("DEMO-pkg", "2.0", &alice)
        .publish(index)
        .await;
    let project = index
        .find_project("demo-pkg")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.name, "DEMO-pkg");
    assert_eq!(
        index
            .find_projects_by_ultranormalized(&ultranormalize("DEMO-pkg"))
            .await
            .expect("ultranormalized")
            .len(),
        1
    );
    // The journal names the project as uploaded each time.
    let journal = h.journal().await;
    assert_eq!(
        journal.last().map(|row| row.project_name.as_str()),
        Some("DEMO-pkg")
    );
}

async fn yank_and_unyank(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    Upload::sdist("demo", "1.0", &alice).publish(index).await;
    Upload::wheel("demo", "2.0", &alice).publish(index).await;
    let id = project_id(index, "demo").await;

    let yank = |reason: Option<&'static str>| YankChange {
        normalized_name: "demo",
        canonical_version: "1",
        yank_reason: reason,
        submitted_by: "alice",
    };
    assert!(
        index
            .set_release_yanked(&yank(Some("broken build")), T0 + 1)
            .await
            .expect("yank")
    );
    let serial = index.max_serial().await.expect("max_serial");
    let journal = h.journal().await;
    let last = journal.last().expect("journal row");
    assert_eq!(last.action, "yank release");
    assert_eq!(last.version.as_deref(), Some("1"));
    assert_eq!(last.submitted_by.as_deref(), Some("alice"));
    assert_eq!(
        index
            .find_project("demo")
            .await
            .expect("find")
            .expect("p")
            .last_serial,
        serial
    );
    let files = index.project_files(&id).await.expect("files");
    for file in &files {
        let expected = file.version == "1.0";
        assert_eq!(file.yanked, expected, "{}", file.filename);
        assert_eq!(
            file.yanked_reason,
            if expected { "broken build" } else { "" }
        );
    }
    let releases = index.project_releases(&id).await.expect("releases");
    assert!(
        releases
            .iter()
            .all(|r| r.yanked == (r.canonical_version == "1"))
    );

    // Unyank clears the state and its reason.
    assert!(
        index
            .set_release_yanked(&yank(None), T0 + 2)
            .await
            .expect("unyank")
    );
    assert!(index.max_serial().await.expect("max_serial") > serial);
    assert_eq!(
        h.journal().await.last().map(|row| row.action.clone()),
        Some("unyank release".to_owned())
    );
    let files = index.project_files(&id).await.expect("files");
    assert!(
        files
            .iter()
            .all(|file| !file.yanked && file.yanked_reason.is_empty())
    );

    // A yank without a reason is still a yank.
    assert!(
        index
            .set_release_yanked(&yank(Some("")), T0 + 3)
            .await
            .expect("yank")
    );
    let releases = index.project_releases(&id).await.expect("releases");
    let one = releases
        .iter()
        .find(|r| r.canonical_version == "1")
        .expect("release 1");
    assert!(one.yanked);
    assert_eq!(one.yanked_reason, "");

    // Unknown releases and projects: false, nothing journaled.
    let before = h.journal().await;
    for (project, version) in [("demo", "9"), ("nope", "1")] {
        let change = YankChange {
            normalized_name: project,
            canonical_version: version,
            yank_reason: Some("x"),
            submitted_by: "alice",
        };
        assert!(
            !index
                .set_release_yanked(&change, T0 + 4)
                .await
                .expect("yank missing")
        );
    }
    assert_eq!(h.journal().await, before);
}

async fn tokens_insert_find_list_touch_delete(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let first = NewToken {
        id: "token-1".to_owned(),
        publisher_id: None,
        additional: None,
        user_id: Some(alice.id.clone()),
        description: "ci".to_owned(),
        root_key: sealed("key-a", 7),
        caveats: vec![r#"{"project_names":["demo"]}"#.to_owned()],
        created_at: T0,
        expires_at: Some(T0 + DAY),
    };
    let second = NewToken {
        id: "token-2".to_owned(),
        publisher_id: None,
        additional: None,
        user_id: None,
        description: String::new(),
        root_key: sealed("key-a", 9),
        caveats: Vec::new(),
        created_at: T0 + 10,
        expires_at: None,
    };
    index.insert_token(&first).await.expect("insert first");
    index.insert_token(&second).await.expect("insert second");
    assert!(
        index.insert_token(&first).await.is_err(),
        "a token id is unique"
    );

    let found = index
        .find_token("token-1")
        .await
        .expect("find")
        .expect("token-1");
    assert_eq!(found.id, "token-1");
    assert_eq!(found.user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(found.user_name.as_deref(), Some("alice"));
    assert_eq!(found.publisher_id, None);
    assert!(found.root_key.is_empty(), "no clear root key");
    assert_eq!(found.sealed_root_key, Some(vec![7; 60]));
    assert_eq!(found.root_key_id.as_deref(), Some("key-a"));
    assert_eq!(found.caveat_strings().expect("caveats"), first.caveats);
    assert_eq!(found.expires_at, Some(T0 + DAY));
    let anonymous = index
        .find_token("token-2")
        .await
        .expect("find")
        .expect("token-2");
    assert_eq!(anonymous.user_name, None);
    assert!(anonymous.caveat_strings().expect("caveats").is_empty());
    assert!(index.find_token("token-3").await.expect("find").is_none());

    // Newest first, with owner names and no key material.
    let listed = index.list_tokens().await.expect("list");
    let summary: Vec<(&str, Option<&str>, Option<i64>)> = listed
        .iter()
        .map(|t| (t.id.as_str(), t.user_name.as_deref(), t.last_used_at))
        .collect();
    assert_eq!(
        summary,
        vec![("token-2", None, None), ("token-1", Some("alice"), None)]
    );
    assert_eq!(listed[1].description, "ci");
    assert_eq!(listed[1].created_at, T0);
    assert_eq!(listed[1].expires_at, Some(T0 + DAY));

    index.touch_token("token-1", T0 + 500).await.expect("touch");
    // Touching a missing token is harmless.
    index.touch_token("token-3", T0 + 500).await.expect("touch");
    let listed = index.list_tokens().await.expect("list");
    let touched = listed.iter().find(|t| t.id == "token-1").expect("token-1");
    assert_eq!(touched.last_used_at, Some(T0 + 500));

    assert!(index.delete_token("token-1").await.expect("delete"));
    assert!(!index.delete_token("token-1").await.expect("delete again"));
    assert!(index.find_token("token-1").await.expect("find").is_none());
    let listed = index.list_tokens().await.expect("list");
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["token-2"]
    );
}

/// A sealed root key as the verifier would store it (60 bytes: nonce, key, tag).
fn sealed(key_id: &str, byte: u8) -> SealedRootKey {
    SealedRootKey {
        key_id: key_id.to_owned(),
        sealed: vec![byte; 60],
    }
}

/// Issue #12, finding 12: the database holds sealed root keys only. A new row's clear column
/// is empty; a row written in the clear before sealing is listed for sealing, and sealing it
/// empties its clear column, read back with raw SQL.
async fn token_rows_store_only_sealed_root_keys(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    index
        .insert_token(&NewToken {
            id: "sealed-token".to_owned(),
            user_id: None,
            publisher_id: None,
            additional: None,
            description: String::new(),
            root_key: sealed("key-a", 5),
            caveats: Vec::new(),
            created_at: T0,
            expires_at: None,
        })
        .await
        .expect("insert");
    assert_eq!(
        h.token_key_columns("sealed-token").await,
        (Vec::new(), Some(vec![5; 60]), Some("key-a".to_owned()))
    );

    h.insert_clear_token("clear-token", &[8; 32]).await;
    let rows = index.list_root_keys().await.expect("list root keys");
    let listed: Vec<(&str, &[u8], Option<SealedRootKey>)> = rows
        .iter()
        .map(|row| (row.id.as_str(), row.root_key.as_slice(), row.sealed()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("clear-token", &[8_u8; 32][..], None),
            ("sealed-token", &[][..], Some(sealed("key-a", 5))),
        ]
    );
    assert!(
        index
            .store_sealed_root_key("clear-token", &sealed("key-b", 6))
            .await
            .expect("seal")
    );
    assert!(
        !index
            .store_sealed_root_key("no-such-token", &sealed("key-b", 6))
            .await
            .expect("seal missing")
    );
    assert_eq!(
        h.token_key_columns("clear-token").await,
        (Vec::new(), Some(vec![6; 60]), Some("key-b".to_owned()))
    );
    let found = index
        .find_token("clear-token")
        .await
        .expect("find")
        .expect("clear-token");
    assert_eq!(found.stored_root_key().sealed(), Some(sealed("key-b", 6)));
}

async fn users_are_unique_by_name(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = index.create_user("alice", T0).await.expect("create");
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.created_at, T0);
    assert!(!alice.id.is_empty());
    let error = index
        .create_user("alice", T0 + 1)
        .await
        .expect_err("duplicate user");
    assert!(
        matches!(&error, IndexError::Conflict(message) if message.contains("alice")),
        "{error:?}"
    );
    assert!(!error.is_transient());
    let bob = index.create_user("bob", T0).await.expect("create bob");
    assert_ne!(alice.id, bob.id);

    assert_eq!(
        index.find_user_by_name("alice").await.expect("find"),
        Some(alice.clone())
    );
    assert_eq!(index.find_user(&alice.id).await.expect("find"), Some(alice));
    assert_eq!(index.find_user_by_name("carol").await.expect("find"), None);
    assert_eq!(index.find_user("no-such-id").await.expect("find"), None);
}

/// Runs `uploads` as concurrent `commit_upload` calls sharing one index.
async fn commit_concurrently(index: Arc<dyn Index>, uploads: Vec<Upload>) -> Vec<CommitResult> {
    let barrier = Arc::new(tokio::sync::Barrier::new(uploads.len()));
    let tasks: Vec<_> = uploads
        .into_iter()
        .map(|up| {
            let index = Arc::clone(&index);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let new_upload = up.new_upload();
                barrier.wait().await;
                index.commit_upload(&new_upload).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task").expect("commit_upload"));
    }
    results
}

async fn race_conflicting_uploads_have_one_winner(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    let base = Upload::wheel("racy", "1.0", &alice);
    let uploads: Vec<Upload> = (0..8)
        .map(|i| base.clone().content(&format!("contender {i}")))
        .collect();
    let results = commit_concurrently(Arc::clone(&index), uploads.clone()).await;

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, result)| matches!(result, CommitResult::Published { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = winners[0];
    let CommitResult::Published {
        file,
        serial,
        project_created,
    } = &results[winner]
    else {
        unreachable!("the winner published");
    };
    assert_eq!(*serial, index.max_serial().await.expect("max_serial"));
    assert!(*project_created);
    assert_eq!(file.sha256_digest, uploads[winner].sha256());
    for (i, result) in results.iter().enumerate() {
        if i != winner {
            assert_eq!(
                *result,
                CommitResult::Refused(uploads[i].file_exists()),
                "contender {i}"
            );
        }
    }
    let id = project_id(index.as_ref(), "racy").await;
    let files = index.project_files(&id).await.expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].sha256_digest, uploads[winner].sha256());
    assert_eq!(
        index.project_releases(&id).await.expect("releases").len(),
        1
    );
    assert_eq!(index.list_projects().await.expect("list").len(), 1);
    assert_eq!(h.journal().await.len(), 4);
}

async fn race_identical_uploads_publish_once(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    let up = Upload::wheel("racy", "1.0", &alice);
    let results = commit_concurrently(Arc::clone(&index), vec![up.clone(); 8]).await;

    let published = results
        .iter()
        .filter(|result| matches!(result, CommitResult::Published { .. }))
        .count();
    assert_eq!(published, 1, "{results:?}");
    let id = project_id(index.as_ref(), "racy").await;
    let files = index.project_files(&id).await.expect("files");
    assert_eq!(files.len(), 1);
    for result in &results {
        match result {
            CommitResult::Published { .. } => {}
            CommitResult::Identical(file) => assert_eq!(**file, files[0]),
            other => panic!("neither published nor identical: {other:?}"),
        }
    }
    assert_eq!(h.journal().await.len(), 4);
}

async fn race_new_project_is_created_once(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    // Eight different files of one new project, some in the same new release.
    let uploads: Vec<Upload> = (0..8)
        .map(|i| {
            let version = format!("1.{}", i % 3);
            let filename = format!("fresh-{version}-py3{i}-none-any.whl");
            Upload::wheel("fresh", &version, &alice)
                .content(&format!("bytes of {filename}"))
                .filename(&filename)
        })
        .collect();
    let results = commit_concurrently(Arc::clone(&index), uploads).await;
    let mut created = 0;
    for result in &results {
        match result {
            CommitResult::Published {
                project_created, ..
            } => created += usize::from(*project_created),
            other => panic!("not published: {other:?}"),
        }
    }
    assert_eq!(created, 1, "{results:?}");
    let id = project_id(index.as_ref(), "fresh").await;
    assert_eq!(index.project_files(&id).await.expect("files").len(), 8);
    assert_eq!(
        index.project_releases(&id).await.expect("releases").len(),
        3
    );
    assert_eq!(
        index.project_roles(&id).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );
    let journal = h.journal().await;
    let count = |action: &str| journal.iter().filter(|row| row.action == action).count();
    assert_eq!(count("create"), 1);
    assert_eq!(count("new release"), 3);
    assert_eq!(journal.len(), 2 + 3 + 8);
}

/// `count` more index instances on the same database, each with its own pool.
async fn other_indexes(h: &dyn Harness, count: usize) -> Vec<Arc<dyn Index>> {
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        indexes.push(h.another_index().await);
    }
    indexes
}

/// Runs `operation` on every index at once (released together by a barrier), as that many
/// processes would; the results in index order.
async fn on_every_index_at_once<T, F, Fut>(indexes: Vec<Arc<dyn Index>>, operation: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Index>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(indexes.len()));
    let tasks: Vec<_> = indexes
        .into_iter()
        .map(|index| {
            let barrier = Arc::clone(&barrier);
            let operation = operation(index);
            tokio::spawn(async move {
                barrier.wait().await;
                operation.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

/// Runs `uploads[i]` on `indexes[i]`, all at once.
async fn commit_across(indexes: &[Arc<dyn Index>], uploads: Vec<Upload>) -> Vec<CommitResult> {
    assert_eq!(indexes.len(), uploads.len());
    let barrier = Arc::new(tokio::sync::Barrier::new(uploads.len()));
    let tasks: Vec<_> = uploads
        .into_iter()
        .zip(indexes.iter().cloned())
        .map(|(up, index)| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let new_upload = up.new_upload();
                barrier.wait().await;
                index.commit_upload(&new_upload).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task").expect("commit_upload"));
    }
    results
}

/// Sixteen processes commit one filename at once, some with the same bytes: one winner, the
/// same bytes are `Identical`, other bytes `FileExists`.
async fn race_one_filename_across_pools(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    let indexes = other_indexes(h, 16).await;
    let base = Upload::wheel("racy", "1.0", &alice);
    let uploads: Vec<Upload> = (0..16)
        .map(|i| base.clone().content(&format!("contender {}", i % 4)))
        .collect();
    let results = commit_across(&indexes, uploads.clone()).await;

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, result)| matches!(result, CommitResult::Published { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = &uploads[winners[0]];
    let id = project_id(index.as_ref(), "racy").await;
    let files = index.project_files(&id).await.expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].sha256_digest, winner.sha256());
    for (i, result) in results.iter().enumerate() {
        if i == winners[0] {
            continue;
        }
        if uploads[i].content == winner.content {
            assert_eq!(*result, CommitResult::Identical(Box::new(files[0].clone())));
        } else {
            assert_eq!(*result, CommitResult::Refused(uploads[i].file_exists()));
        }
    }
    assert_eq!(index.list_projects().await.expect("list").len(), 1);
    assert_eq!(h.journal().await.len(), 4);
}

/// Eight processes upload different sdists of one (new) release at once: one sdist per
/// release holds although no unique constraint enforces it.
async fn race_sdists_of_one_release_have_one_winner(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    let indexes = other_indexes(h, 8).await;
    // All spell release 1 (canonical "1"), each under its own filename.
    let uploads: Vec<Upload> = [
        "1", "1.0", "1.0.0", "1.0.0.0", "1.00", "1.000", "01", "1.0.00",
    ]
    .into_iter()
    .map(|version| Upload::sdist("demo", version, &alice))
    .collect();
    let results = commit_across(&indexes, uploads).await;
    let published = results
        .iter()
        .filter(|result| matches!(result, CommitResult::Published { .. }))
        .count();
    assert_eq!(published, 1, "{results:?}");
    assert!(
        results.iter().all(|result| matches!(
            result,
            CommitResult::Published { .. } | CommitResult::Refused(FileRefusal::OneSdistPerRelease)
        )),
        "{results:?}"
    );
    let id = project_id(index.as_ref(), "demo").await;
    assert_eq!(index.project_files(&id).await.expect("files").len(), 1);
    assert_eq!(
        index.project_releases(&id).await.expect("releases").len(),
        1
    );
}

/// Sixteen processes upload different files of one new project at once: the project and
/// each release are created once, every file is published, serials are distinct.
async fn race_new_project_across_pools(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    let indexes = other_indexes(h, 16).await;
    let uploads: Vec<Upload> = (0..16)
        .map(|i| {
            let version = format!("2.{}", i % 4);
            let filename = format!("fresh-{version}-py3{i}-none-any.whl");
            Upload::wheel("fresh", &version, &alice)
                .content(&format!("bytes of {filename}"))
                .filename(&filename)
        })
        .collect();
    let results = commit_across(&indexes, uploads).await;
    let mut created = 0;
    let mut serials = Vec::new();
    for result in &results {
        match result {
            CommitResult::Published {
                serial,
                project_created,
                ..
            } => {
                created += usize::from(*project_created);
                serials.push(*serial);
            }
            other => panic!("not published: {other:?}"),
        }
    }
    assert_eq!(created, 1, "{results:?}");
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), 16);
    let project = index
        .find_project("fresh")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.last_serial, *serials.last().expect("serial"));
    assert_eq!(
        index.project_files(&project.id).await.expect("files").len(),
        16
    );
    assert_eq!(
        index
            .project_releases(&project.id)
            .await
            .expect("releases")
            .len(),
        4
    );
    let journal = h.journal().await;
    let count = |action: &str| journal.iter().filter(|row| row.action == action).count();
    assert_eq!(count("create"), 1);
    assert_eq!(count("new release"), 4);
    assert_eq!(journal.len(), 2 + 4 + 16);
}

/// Concurrent yanks and uploads of several projects: every project's `last_serial` is the
/// serial of its own latest journal row, and `max_serial` is the journal's last row.
async fn race_yanks_and_uploads_keep_serials_in_order(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    for project in ["p0", "p1", "p2"] {
        Upload::wheel(project, "1.0", &alice)
            .publish(index.as_ref())
            .await;
    }
    let indexes = other_indexes(h, 12).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(indexes.len()));
    let tasks: Vec<_> = indexes
        .into_iter()
        .enumerate()
        .map(|(i, index)| {
            let barrier = Arc::clone(&barrier);
            let alice = alice.clone();
            tokio::spawn(async move {
                let project = format!("p{}", i % 3);
                barrier.wait().await;
                if i % 2 == 0 {
                    let change = YankChange {
                        normalized_name: &project,
                        canonical_version: "1",
                        yank_reason: (i % 4 == 0).then_some("bad"),
                        submitted_by: "alice",
                    };
                    assert!(
                        index
                            .set_release_yanked(&change, T0 + 1)
                            .await
                            .expect("yank")
                    );
                } else {
                    Upload::wheel(&project, &format!("1.{i}"), &alice)
                        .publish(index.as_ref())
                        .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let journal = h.journal().await;
    assert_eq!(journal.len(), 3 * 4 + 6 + 6 * 2);
    assert_eq!(
        index.max_serial().await.expect("max_serial"),
        journal.last().expect("row").serial
    );
    for project in ["p0", "p1", "p2"] {
        let last = journal
            .iter()
            .filter(|row| row.project_name == project)
            .map(|row| row.serial)
            .max()
            .expect("journal rows");
        let found = index
            .find_project(project)
            .await
            .expect("find")
            .expect("project");
        assert_eq!(found.last_serial, last, "{project}");
    }
}

fn issuer(name: &str, kind: &str, url: &str, created_at: i64) -> IssuerRecord {
    IssuerRecord {
        name: name.to_owned(),
        kind: kind.to_owned(),
        url: url.to_owned(),
        allow_http: url.starts_with("http://"),
        created_at,
    }
}

async fn issuers_insert_list_delete(h: &dyn Harness) {
    let index = h.index();
    let ghes = issuer("ghes", "github", "https://ghes.example/_services/token", T0);
    let forgejo = issuer("forgejo", "generic", "http://forgejo.test", T0 + 1);
    index.insert_issuer(&ghes).await.expect("insert ghes");
    index.insert_issuer(&forgejo).await.expect("insert forgejo");
    assert_eq!(
        index.list_issuers().await.expect("list"),
        vec![forgejo.clone(), ghes.clone()]
    );
    // Names and URLs are unique.
    for duplicate in [
        issuer("ghes", "generic", "https://other.example", T0),
        issuer("other", "generic", &ghes.url, T0),
    ] {
        let error = index
            .insert_issuer(&duplicate)
            .await
            .expect_err("duplicate issuer");
        assert!(matches!(error, IndexError::Conflict(_)), "{error:?}");
        assert!(!error.is_transient());
    }
    assert!(index.delete_issuer("ghes").await.expect("delete"));
    assert!(!index.delete_issuer("ghes").await.expect("delete again"));
    assert_eq!(index.list_issuers().await.expect("list"), vec![forgejo]);
}

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const GITLAB: &str = "https://gitlab.com";

fn active_publisher(id: &str, issuer_url: &str, project_ids: Vec<String>, at: i64) -> NewPublisher {
    NewPublisher {
        id: id.to_owned(),
        kind: "github".to_owned(),
        issuer_url: issuer_url.to_owned(),
        policy: r#"{"repository":"octo/demo","workflow":"release.yml"}"#.to_owned(),
        label: format!("{id} label"),
        token_ttl_seconds: Some(900),
        pending_project_name: None,
        pending_project_ultranormalized: None,
        pending_user_id: None,
        project_ids,
        created_at: at,
    }
}

fn pending_publisher(id: &str, project: &str, owner: &User, at: i64) -> NewPublisher {
    NewPublisher {
        pending_project_name: Some(project.to_owned()),
        pending_project_ultranormalized: Some(ultranormalize(project)),
        pending_user_id: Some(owner.id.clone()),
        token_ttl_seconds: None,
        ..active_publisher(id, GITHUB, Vec::new(), at)
    }
}

fn publisher_token(id: &str, publisher_id: Option<&str>, user: Option<&User>) -> NewToken {
    NewToken {
        id: id.to_owned(),
        user_id: user.map(|user| user.id.clone()),
        publisher_id: publisher_id.map(str::to_owned),
        additional: publisher_id.map(|_| r#"{"sub":"repo:octo/demo"}"#.to_owned()),
        description: String::new(),
        root_key: sealed("key-a", 3),
        caveats: Vec::new(),
        created_at: T0,
        expires_at: Some(T0 + 900_000_000),
    }
}

async fn publishers_insert_find_update_delete(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    Upload::wheel("other", "1.0", &alice).publish(index).await;
    let demo = project_id(index, "demo").await;
    let other = project_id(index, "other").await;
    let mut both = vec![demo.clone(), other.clone()];
    both.sort();

    let active = active_publisher("pub-active", GITHUB, both.clone(), T0);
    let pending = pending_publisher("pub-pending", "New.Thing", &alice, T0 + 1);
    let gitlab = active_publisher("pub-gitlab", GITLAB, vec![demo.clone()], T0 + 2);
    for publisher in [&active, &pending, &gitlab] {
        index.insert_publisher(publisher).await.expect("insert");
    }

    let listed = index.list_publishers().await.expect("list");
    assert_eq!(
        listed.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["pub-active", "pub-pending", "pub-gitlab"]
    );
    let mut first = listed[0].clone();
    first.project_ids.sort();
    assert_eq!(first.project_ids, both);
    assert_eq!(first.kind, "github");
    assert_eq!(first.issuer_url, GITHUB);
    assert_eq!(first.policy, active.policy);
    assert_eq!(first.label, "pub-active label");
    assert_eq!(first.token_ttl_seconds, Some(900));
    assert_eq!(first.pending_project_name, None);
    assert_eq!(first.pending_user_id, None);
    assert_eq!(first.created_at, T0);
    let second = &listed[1];
    assert!(second.project_ids.is_empty());
    assert_eq!(second.pending_project_name.as_deref(), Some("New.Thing"));
    assert_eq!(second.pending_user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(second.token_ttl_seconds, None);

    let for_github = index.publishers_for_issuer(GITHUB).await.expect("github");
    assert_eq!(
        for_github.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["pub-active", "pub-pending"]
    );
    let for_gitlab = index.publishers_for_issuer(GITLAB).await.expect("gitlab");
    assert_eq!(for_gitlab.len(), 1);
    assert_eq!(for_gitlab[0].project_ids, vec![demo.clone()]);
    assert!(
        index
            .publishers_for_issuer("https://nope.example")
            .await
            .expect("none")
            .is_empty()
    );
    assert_eq!(
        index.find_publisher("pub-gitlab").await.expect("find"),
        Some(listed[2].clone())
    );
    assert_eq!(index.find_publisher("pub-nope").await.expect("find"), None);

    index
        .update_publisher_policy("pub-active", r#"{"repository":"octo/demo2"}"#, "new label")
        .await
        .expect("update");
    let updated = index
        .find_publisher("pub-active")
        .await
        .expect("find")
        .expect("publisher");
    assert_eq!(updated.policy, r#"{"repository":"octo/demo2"}"#);
    assert_eq!(updated.label, "new label");

    // Publisher tokens: only they can be burnt through delete_publisher_token.
    index
        .insert_token(&publisher_token("tok-user", None, Some(&alice)))
        .await
        .expect("user token");
    index
        .insert_token(&publisher_token("tok-pub-1", Some("pub-active"), None))
        .await
        .expect("publisher token");
    index
        .insert_token(&publisher_token("tok-pub-2", Some("pub-active"), None))
        .await
        .expect("publisher token");
    let minted = index
        .find_token("tok-pub-1")
        .await
        .expect("find")
        .expect("token");
    assert_eq!(minted.publisher_id.as_deref(), Some("pub-active"));
    assert_eq!(minted.user_id, None);
    assert!(
        !index
            .delete_publisher_token("tok-user")
            .await
            .expect("burn")
    );
    assert!(index.find_token("tok-user").await.expect("find").is_some());
    assert!(
        index
            .delete_publisher_token("tok-pub-1")
            .await
            .expect("burn")
    );
    assert!(
        !index
            .delete_publisher_token("tok-pub-1")
            .await
            .expect("burn")
    );
    assert!(index.find_token("tok-pub-1").await.expect("find").is_none());

    // Deleting a publisher deletes the tokens minted for it, nothing else.
    assert!(index.delete_publisher("pub-active").await.expect("delete"));
    assert!(!index.delete_publisher("pub-active").await.expect("again"));
    assert_eq!(
        index.find_publisher("pub-active").await.expect("find"),
        None
    );
    assert!(index.find_token("tok-pub-2").await.expect("find").is_none());
    assert!(index.find_token("tok-user").await.expect("find").is_some());
    assert_eq!(index.list_publishers().await.expect("list").len(), 2);
    assert!(index.find_project("demo").await.expect("find").is_some());
}

fn reify_target(name: &str) -> ProjectTarget {
    ProjectTarget {
        name: name.to_owned(),
        normalized_name: normalize(name),
        ultranormalized_name: ultranormalize(name),
        create_with_owner: None,
    }
}

async fn reify_pending_publisher(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let bob = user(index, "bob").await;
    Upload::wheel("demo", "1.0", &alice).publish(index).await;
    let journal_before = h.journal().await.len();

    index
        .insert_publisher(&pending_publisher("pub-a", "New.Thing", &alice, T0))
        .await
        .expect("insert");
    // Look-alikes: bob's goes away when alice's project appears; alice's own stays.
    index
        .insert_publisher(&pending_publisher("pub-bob", "newthing", &bob, T0 + 1))
        .await
        .expect("insert");
    index
        .insert_publisher(&pending_publisher("pub-a2", "new_th1ng", &alice, T0 + 2))
        .await
        .expect("insert");
    index
        .insert_publisher(&pending_publisher("pub-late", "Demo", &bob, T0 + 3))
        .await
        .expect("insert");

    let result = index
        .reify_pending_publisher("pub-a", &reify_target("New.Thing"), T0 + 10)
        .await
        .expect("reify");
    let ReifyResult::Created {
        project_id: created,
    } = result
    else {
        panic!("not created: {result:?}");
    };
    let project = index
        .find_project("new-thing")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.id, created);
    assert_eq!(project.name, "New.Thing");
    assert_eq!(project.created_at, T0 + 10);
    assert_eq!(
        index.project_roles(&created).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );
    let journal = h.journal().await;
    assert_eq!(
        actions(&journal[journal_before..]),
        vec!["create", "add Owner alice"]
    );
    assert!(
        journal[journal_before..]
            .iter()
            .all(|row| row.submitted_by.as_deref() == Some("alice")
                && row.project_name == "New.Thing")
    );
    let publisher = index
        .find_publisher("pub-a")
        .await
        .expect("find")
        .expect("publisher");
    assert_eq!(publisher.project_ids, vec![created.clone()]);
    assert_eq!(publisher.pending_project_name, None);
    assert_eq!(publisher.pending_user_id, None);
    assert_eq!(index.find_publisher("pub-bob").await.expect("find"), None);
    assert!(
        index
            .find_publisher("pub-a2")
            .await
            .expect("find")
            .is_some()
    );

    // Not pending any more: the losing side of a race, a typed outcome (not an error the
    // verifier would answer 503 for), and nothing is written.
    let journal = h.journal().await;
    for (publisher, name) in [
        ("pub-a", "New.Thing"),
        // Removed by alice's look-alike project.
        ("pub-bob", "newthing"),
        ("pub-nope", "Nope"),
    ] {
        assert_eq!(
            index
                .reify_pending_publisher(publisher, &reify_target(name), T0 + 11)
                .await
                .expect("reify"),
            ReifyResult::NoLongerPending,
            "{publisher}"
        );
    }
    assert_eq!(h.journal().await, journal);
    assert_eq!(index.list_projects().await.expect("list").len(), 2);
    let publisher = index
        .find_publisher("pub-a")
        .await
        .expect("find")
        .expect("the winner's publisher stays");
    assert_eq!(publisher.project_ids, vec![created.clone()]);

    // The project exists already: the pending publisher is dropped, nothing else changes.
    let journal = h.journal().await;
    assert_eq!(
        index
            .reify_pending_publisher("pub-late", &reify_target("Demo"), T0 + 12)
            .await
            .expect("reify"),
        ReifyResult::ProjectExists
    );
    assert_eq!(index.find_publisher("pub-late").await.expect("find"), None);
    assert_eq!(h.journal().await, journal);
    let demo = project_id(index, "demo").await;
    assert_eq!(
        index.project_roles(&demo).await.expect("roles"),
        vec![("Owner".to_owned(), "alice".to_owned())]
    );
}

/// Eight verifiers reify one pending publisher at once: one creates the project, the others
/// find it no longer pending (issue #12, finding 9: a typed outcome, never an error).
/// `wharf admin project create`: an operator may create a look-alike of an existing project
/// on purpose (the rule a first upload obeys is waived), its owner then uploads to it like to
/// any project; a taken normalized name is refused with nothing written.
async fn operator_creates_a_lookalike_project_its_owner_uploads_to(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let bob = user(index, "bob").await;
    Upload::wheel("x-lib", "1.0", &alice).publish(index).await;
    let journal_before = h.journal().await.len();

    let created = index
        .create_project_by_operator(&reify_target("xlib"), &bob.id, "bob", T0 + 1)
        .await
        .expect("create")
        .expect("created");
    let project = index
        .find_project("xlib")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.id, created);
    assert_eq!(project.created_at, T0 + 1);
    assert_eq!(
        index.project_roles(&created).await.expect("roles"),
        vec![("Owner".to_owned(), "bob".to_owned())]
    );
    let journal = h.journal().await;
    assert_eq!(
        actions(&journal[journal_before..]),
        vec!["create", "add Owner bob"]
    );

    // Its owner's uploads land (the project exists, so no new-name rule applies); others'
    // do not.
    Upload::wheel("xlib", "1.0", &bob).publish(index).await;
    assert_eq!(file_count(index, "xlib").await, 1);
    let intruder = Upload::wheel("xlib", "1.1", &alice).commit(index).await;
    assert!(
        matches!(
            intruder,
            CommitResult::Refused(FileRefusal::UploaderNotAllowed { .. })
        ),
        "{intruder:?}"
    );

    // The same normalized name again: nothing written.
    let journal_before = h.journal().await.len();
    for taken in ["XLib", "x-lib"] {
        let again = index
            .create_project_by_operator(&reify_target(taken), &alice.id, "alice", T0 + 2)
            .await
            .expect("create");
        assert_eq!(again, None, "{taken}");
    }
    assert_eq!(h.journal().await.len(), journal_before);
    assert_eq!(index.list_projects().await.expect("list").len(), 2);
}

async fn race_reify_once(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    index
        .insert_publisher(&pending_publisher("pub-a", "racy-thing", &alice, T0))
        .await
        .expect("insert");
    let results = on_every_index_at_once(other_indexes(h, 8).await, |index| async move {
        index
            .reify_pending_publisher("pub-a", &reify_target("racy-thing"), T0 + 1)
            .await
    })
    .await;
    let mut created = 0;
    for result in results {
        match result {
            Ok(ReifyResult::Created { .. }) => created += 1,
            Ok(ReifyResult::NoLongerPending) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(index.list_projects().await.expect("list").len(), 1);
    assert_eq!(h.journal().await.len(), 2);
}

async fn claim_jti_once_until_expiry(h: &dyn Harness) {
    let index = h.index();
    let claim = |issuer: &'static str, jti: &'static str, expires_at: i64, now: i64| {
        let index = Arc::clone(&index);
        async move {
            index
                .claim_jti(issuer, jti, expires_at, now)
                .await
                .expect("claim_jti")
        }
    };
    assert!(claim(GITHUB, "jti-1", T0 + 100, T0).await);
    assert!(!claim(GITHUB, "jti-1", T0 + 100, T0 + 1).await, "replay");
    // Still claimed at the very expiry instant.
    assert!(!claim(GITHUB, "jti-1", T0 + 200, T0 + 100).await, "replay");
    // Token ids are per issuer.
    assert!(claim(GITLAB, "jti-1", T0 + 100, T0 + 1).await);
    assert!(claim(GITHUB, "jti-2", T0 + 100, T0 + 1).await);
    assert!(!claim(GITHUB, "jti-2", T0 + 300, T0 + 100).await, "replay");
    // Once expired, a claim may be made again (and then holds until its own expiry).
    assert!(claim(GITHUB, "jti-1", T0 + 300, T0 + 101).await);
    assert!(!claim(GITHUB, "jti-1", T0 + 300, T0 + 250).await, "replay");
    assert!(claim(GITHUB, "jti-2", T0 + 300, T0 + 250).await);
}

/// Sixteen verifiers see the same OIDC token at once: exactly one claim wins.
async fn race_claim_jti_one_winner(h: &dyn Harness) {
    let index = h.index();
    // An expired claim of the same id must not let two of them through either.
    assert!(
        index
            .claim_jti(GITHUB, "jti-race", T0 - 10, T0 - 100)
            .await
            .expect("claim")
    );
    let claims = on_every_index_at_once(other_indexes(h, 16).await, |index| async move {
        index.claim_jti(GITHUB, "jti-race", T0 + 900, T0).await
    })
    .await;
    let won = claims
        .into_iter()
        .filter(|claimed| *claimed.as_ref().expect("claim_jti"))
        .count();
    assert_eq!(won, 1);
    assert!(
        !index
            .claim_jti(GITHUB, "jti-race", T0 + 900, T0 + 1)
            .await
            .expect("claim")
    );
}

/// A trusted-publishing exchange is stored at once: the token id's claim, the token and the
/// audit event; a replayed id stores nothing.
async fn minted_token_claims_its_jti_in_one_transaction(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    index
        .insert_publisher(&active_publisher("pub-mint", GITHUB, Vec::new(), T0))
        .await
        .expect("publisher");
    let claim = JtiClaim {
        issuer_url: GITHUB.to_owned(),
        jti: "jti-mint".to_owned(),
        expires_at: T0 + 100,
        now: T0,
    };
    let record = |token: &'static str, claim: Option<&JtiClaim>, detail: &'static str, at| {
        let claim = claim.cloned();
        async move {
            index
                .record_minted_token(
                    claim.as_ref(),
                    &publisher_token(token, Some("pub-mint"), None),
                    "oidc.minted",
                    detail,
                    at,
                )
                .await
                .expect("record_minted_token")
        }
    };
    assert!(record("tok-mint-1", Some(&claim), "first", T0).await);
    assert!(!record("tok-mint-2", Some(&claim), "replay", T0 + 1).await);
    assert!(
        index
            .find_token("tok-mint-1")
            .await
            .expect("find")
            .is_some()
    );
    assert!(
        index
            .find_token("tok-mint-2")
            .await
            .expect("find")
            .is_none(),
        "a replay stores no token"
    );
    assert!(
        !index
            .claim_jti(GITHUB, "jti-mint", T0 + 100, T0 + 2)
            .await
            .expect("claim_jti"),
        "the id stays claimed"
    );
    // Without a claim (a pending publisher's exchange claims first), it only stores.
    assert!(record("tok-mint-3", None, "third", T0 + 3).await);
    let details: Vec<String> = h
        .audit_events()
        .await
        .into_iter()
        .map(|(_, detail, _)| detail)
        .collect();
    assert_eq!(details, vec!["first".to_owned(), "third".to_owned()]);
}

async fn audit_events_are_recorded(h: &dyn Harness) {
    let index = h.index();
    index
        .record_audit("token.minted", r#"{"publisher":"pub-1"}"#, T0)
        .await
        .expect("audit");
    index
        .record_audit("token.refused", "no matching publisher", T0 + 1)
        .await
        .expect("audit");
    assert_eq!(
        h.audit_events().await,
        vec![
            (
                "token.minted".to_owned(),
                r#"{"publisher":"pub-1"}"#.to_owned(),
                T0
            ),
            (
                "token.refused".to_owned(),
                "no matching publisher".to_owned(),
                T0 + 1
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only
// ---------------------------------------------------------------------------------------------

mod postgres_only {
    use super::*;

    /// Several processes starting at once on an empty database: the migrator's advisory lock
    /// lets each of them connect, and the schema is applied once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_startups_migrate_once() {
        // A fresh database with the schema removed again, i.e. not migrated yet.
        let fresh = PgHarness::new().await;
        sqlx::query("DROP SCHEMA public CASCADE")
            .execute(&fresh.raw)
            .await
            .expect("drop schema");
        sqlx::query("CREATE SCHEMA public")
            .execute(&fresh.raw)
            .await
            .expect("create schema");
        let url = fresh.url.clone();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { wharf_index_postgres::PgIndex::connect(&url).await })
            })
            .collect();
        for task in tasks {
            let index = task.await.expect("task").expect("connect");
            index.ping().await.expect("ping");
        }
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&fresh.raw)
            .await
            .expect("migrations");
        // Each migration applied exactly once, however many processes raced.
        let migrations = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wharf-index-postgres/migrations"
        ))
        .expect("migrations dir")
        .count();
        assert_eq!(applied, i64::try_from(migrations).expect("count"));
    }

    /// An unreachable server is a transient error (the services answer 503 and retry).
    #[tokio::test]
    async fn unreachable_server_is_transient() {
        let error = wharf_index_postgres::PgIndex::connect("postgres://wharf@127.0.0.1:1/wharf")
            .await
            .expect_err("nothing listens on port 1");
        assert!(error.is_transient(), "{error:?}");
    }

    /// The server ends every session (restart, failover): the index serves again by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_after_sessions_are_terminated() {
        let harness = PgHarness::new().await;
        let index = harness.index();
        let alice = user(index.as_ref(), "alice").await;
        Upload::wheel("demo", "1.0", &alice)
            .publish(index.as_ref())
            .await;
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&harness.raw)
        .await
        .expect("terminate sessions");
        assert!(!terminated.is_empty());
        // Errors on the way back must be transient; then service resumes.
        let mut recovered = false;
        for _ in 0..50 {
            match index.find_project("demo").await {
                Ok(project) => {
                    assert!(project.is_some());
                    recovered = true;
                    break;
                }
                Err(error) => {
                    assert!(error.is_transient(), "{error:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        assert!(recovered);
        Upload::sdist("demo", "1.0", &alice)
            .publish(index.as_ref())
            .await;
    }

    /// A unique violation the locks did not prevent (a colliding upload id in another
    /// project) is retried, then reported as the database error it is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn colliding_upload_id_is_an_error_not_a_second_file() {
        let harness = PgHarness::new().await;
        let index = harness.index();
        let alice = user(index.as_ref(), "alice").await;
        let first = Upload::wheel("demo", "1.0", &alice).new_upload();
        index.commit_upload(&first).await.expect("first");
        let mut second = Upload::wheel("other", "1.0", &alice).new_upload();
        second.upload_id = first.upload_id.clone();
        let error = index
            .commit_upload(&second)
            .await
            .expect_err("same upload id");
        assert!(
            matches!(&error, IndexError::Database(sqlx::Error::Database(db)) if db.is_unique_violation()),
            "{error:?}"
        );
        assert!(index.find_project("other").await.expect("find").is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------

/// One second in microseconds.
const SECOND: i64 = 1_000_000;

async fn rate_limit_allows_a_burst_then_refuses_until_refilled(h: &dyn Harness) {
    let index = h.index();
    // 3 requests per 6 s: a burst of 3, then one more every 2 s.
    let limit = RateLimit::per_window(3, 6 * SECOND);
    let hit = |key: &'static str, now: i64| {
        let index = Arc::clone(&index);
        async move {
            index
                .rate_limit("upload-ip", key, limit, now)
                .await
                .expect("rate_limit")
        }
    };
    for _ in 0..3 {
        assert_eq!(hit("10.0.0.1", T0).await, RateVerdict::Allowed);
    }
    let refused = RateVerdict::Limited {
        retry_at: T0 + 2 * SECOND,
    };
    assert_eq!(hit("10.0.0.1", T0).await, refused);
    // A refused request is not counted: the retry time does not move.
    assert_eq!(hit("10.0.0.1", T0 + SECOND).await, refused);
    // Keys and scopes are independent.
    assert_eq!(hit("10.0.0.2", T0 + SECOND).await, RateVerdict::Allowed);
    assert_eq!(
        index
            .rate_limit("mint-ip", "10.0.0.1", limit, T0 + SECOND)
            .await
            .expect("rate_limit"),
        RateVerdict::Allowed
    );
    // At the retry time one request is allowed, the next is refused again.
    assert_eq!(hit("10.0.0.1", T0 + 2 * SECOND).await, RateVerdict::Allowed);
    assert_eq!(
        hit("10.0.0.1", T0 + 2 * SECOND).await,
        RateVerdict::Limited {
            retry_at: T0 + 4 * SECOND
        }
    );
    // After a whole window the full burst is back (the stale row is swept).
    for _ in 0..3 {
        assert_eq!(
            hit("10.0.0.1", T0 + 20 * SECOND).await,
            RateVerdict::Allowed
        );
    }
    assert!(matches!(
        hit("10.0.0.1", T0 + 20 * SECOND).await,
        RateVerdict::Limited { .. }
    ));
}

/// Sixteen gateways count the same key at once: exactly the burst gets through.
async fn race_rate_limit_across_pools(h: &dyn Harness) {
    let limit = RateLimit::per_window(5, 60 * SECOND);
    let verdicts = on_every_index_at_once(other_indexes(h, 16).await, |index| async move {
        index.rate_limit("upload-token", "token-1", limit, T0).await
    })
    .await;
    let allowed = verdicts
        .into_iter()
        .filter(|verdict| *verdict.as_ref().expect("rate_limit") == RateVerdict::Allowed)
        .count();
    assert_eq!(allowed, 5);
}

// ---------------------------------------------------------------------------------------------
// Look-alike names and the project size limit, enforced inside the commit (issue #12,
// findings 7 and 10)
// ---------------------------------------------------------------------------------------------

/// Names with one ultranormalized form (`x1ib`) and eight different normalized forms.
const LOOKALIKES: [&str; 8] = [
    "x-lib", "xlib", "x1ib", "xl1b", "x-1ib", "x1-ib", "xli-b", "x-l-i-b",
];

/// Whether `result` is PyPI's look-alike refusal for `name`.
fn lookalike_refused(result: &CommitResult, name: &str) -> bool {
    *result
        == CommitResult::Refused(FileRefusal::NameTooSimilar {
            project_name: name.to_owned(),
        })
}

/// What the verifier's early check sees: no project looks like `name` yet.
async fn early_check_passes(index: &dyn Index, name: &str) {
    assert_eq!(
        index
            .find_projects_by_ultranormalized(&ultranormalize(name))
            .await
            .expect("find_projects_by_ultranormalized"),
        Vec::new(),
        "the early look-alike check refuses {name}"
    );
}

/// Two first uploads of look-alike names by two users both pass the early check (as two
/// admissions at the same moment do), then commit one after the other: the second is
/// refused with the look-alike refusal, so exactly one project exists.
async fn lookalike_first_uploads_raced_past_the_early_check(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let bob = user(index, "bob").await;
    early_check_passes(index, "x-lib").await;
    early_check_passes(index, "xlib").await;
    Upload::wheel("x-lib", "1.0", &alice).publish(index).await;
    let late = Upload::wheel("xlib", "1.0", &bob).commit(index).await;
    assert!(lookalike_refused(&late, "xlib"), "{late:?}");
    // The same owner gets the same refusal (PyPI compares names, not owners).
    let own = Upload::wheel("x1ib", "1.0", &alice).commit(index).await;
    assert!(lookalike_refused(&own, "x1ib"), "{own:?}");
    let projects = index.list_projects().await.expect("list");
    assert_eq!(
        projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["x-lib"]
    );
    assert_eq!(file_count(index, "xlib").await, 0);
    // The winner's project takes further uploads, respelled too.
    Upload::wheel("X_Lib", "1.1", &alice).publish(index).await;
    assert_eq!(file_count(index, "x-lib").await, 2);
}

/// Eight users upload the first file of eight look-alike names at once, each through its own
/// index instance (eight processes): exactly one project exists, every other upload gets the
/// look-alike refusal.
async fn race_lookalike_first_uploads_have_one_winner(h: &dyn Harness) {
    let index = h.index();
    let mut uploads = Vec::new();
    for (i, name) in LOOKALIKES.iter().enumerate() {
        let owner = user(index.as_ref(), &format!("user{i}")).await;
        uploads.push(Upload::wheel(name, "1.0", &owner));
    }
    let indexes = other_indexes(h, uploads.len()).await;
    let results = commit_across(&indexes, uploads.clone()).await;
    let winners: Vec<usize> = (0..results.len())
        .filter(|&i| matches!(results[i], CommitResult::Published { .. }))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        if i != winners[0] {
            assert!(lookalike_refused(result, LOOKALIKES[i]), "{i}: {result:?}");
        }
    }
    let projects = index.list_projects().await.expect("list");
    assert_eq!(projects.len(), 1, "{projects:?}");
    assert_eq!(projects[0].name, LOOKALIKES[winners[0]]);
    let journal = h.journal().await;
    assert_eq!(
        journal.iter().filter(|row| row.action == "create").count(),
        1
    );
}

/// A pending publisher for `xlib` passes the verifier's early check; before it reifies, a user
/// uploads the first file of `x-lib`. The reify is refused as a look-alike, writes nothing,
/// and keeps the pending publisher.
async fn lookalike_pending_publisher_raced_past_the_early_check(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let bob = user(index, "bob").await;
    index
        .insert_publisher(&pending_publisher("pub-a", "xlib", &alice, T0))
        .await
        .expect("insert");
    early_check_passes(index, "xlib").await;
    Upload::wheel("x-lib", "1.0", &bob).publish(index).await;
    let journal = h.journal().await;
    let result = index
        .reify_pending_publisher("pub-a", &reify_target("xlib"), T0 + 1)
        .await
        .expect("reify");
    assert_eq!(result, ReifyResult::NameTooSimilar);
    assert_eq!(index.list_projects().await.expect("list").len(), 1);
    assert_eq!(index.find_project("xlib").await.expect("find"), None);
    assert_eq!(h.journal().await, journal);
    let publisher = index
        .find_publisher("pub-a")
        .await
        .expect("find")
        .expect("the pending publisher stays");
    assert_eq!(publisher.pending_project_name.as_deref(), Some("xlib"));
}

/// A pending publisher for `xlib` reifies while seven users upload first files of other
/// look-alike names, all at once on their own index instances: exactly one project exists.
async fn race_lookalike_pending_publisher_and_uploads_have_one_winner(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    index
        .insert_publisher(&pending_publisher("pub-a", "xlib", &alice, T0))
        .await
        .expect("insert");
    let mut uploads = Vec::new();
    for (i, name) in LOOKALIKES.iter().enumerate().filter(|(_, n)| **n != "xlib") {
        let owner = user(index.as_ref(), &format!("user{i}")).await;
        uploads.push(Upload::wheel(name, "1.0", &owner).new_upload());
    }
    let indexes = other_indexes(h, uploads.len() + 1).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(indexes.len()));
    let mut tasks = Vec::new();
    for (index, upload) in indexes.iter().cloned().zip(uploads) {
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = index.commit_upload(&upload).await.expect("commit");
            matches!(result, CommitResult::Published { .. })
        }));
    }
    let reifier = Arc::clone(indexes.last().expect("an index"));
    let reify = tokio::spawn(async move {
        barrier.wait().await;
        reifier
            .reify_pending_publisher("pub-a", &reify_target("xlib"), T0 + 1)
            .await
            .expect("reify")
    });
    let mut published = 0;
    for task in tasks {
        published += usize::from(task.await.expect("task"));
    }
    let reified = reify.await.expect("task");
    let created = usize::from(matches!(reified, ReifyResult::Created { .. }));
    assert!(
        matches!(
            reified,
            ReifyResult::Created { .. } | ReifyResult::NameTooSimilar
        ),
        "{reified:?}"
    );
    assert_eq!(published + created, 1, "{reified:?}");
    assert_eq!(index.list_projects().await.expect("list").len(), 1);
}

/// Two files that each fit under the project size limit but not together: the second commit
/// is refused (even when both passed the gateway's early check, as concurrent uploads do), the
/// project's total stays under the limit; an identical re-upload is still a no-op.
async fn project_size_limit_holds_at_commit(h: &dyn Harness) {
    let index = h.index();
    let index = index.as_ref();
    let alice = user(index, "alice").await;
    let first = Upload::wheel("Big.Thing", "1.0", &alice).content(&"a".repeat(600));
    let second = Upload::sdist("big-thing", "1.0", &alice).content(&"b".repeat(600));
    first.clone().max_project_size(1000).publish(index).await;
    let refused = second.clone().max_project_size(1000).commit(index).await;
    assert_eq!(
        refused,
        CommitResult::Refused(FileRefusal::ProjectTooLarge {
            project_name: "Big.Thing".to_owned(),
            limit: 1000,
        })
    );
    let project = index
        .find_project("big-thing")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.total_size, 600);
    assert_eq!(file_count(index, "big-thing").await, 1);
    // The identical file again is the same no-op as without a limit.
    assert!(matches!(
        first.clone().max_project_size(1000).commit(index).await,
        CommitResult::Identical(_)
    ));
    // Exactly at the limit is allowed; a first file over the limit never creates the project.
    second
        .clone()
        .content(&"c".repeat(400))
        .max_project_size(1000)
        .publish(index)
        .await;
    let huge = Upload::wheel("huge", "1.0", &alice)
        .content(&"d".repeat(1001))
        .max_project_size(1000)
        .commit(index)
        .await;
    assert_eq!(
        huge,
        CommitResult::Refused(FileRefusal::ProjectTooLarge {
            project_name: "huge".to_owned(),
            limit: 1000,
        })
    );
    assert_eq!(index.find_project("huge").await.expect("find"), None);
}

/// Eight processes commit eight 300-byte files of one project at once under a 1000-byte
/// limit: exactly three are published, the total never exceeds the limit.
async fn race_project_size_limit_across_pools(h: &dyn Harness) {
    let index = h.index();
    let alice = user(index.as_ref(), "alice").await;
    Upload::wheel("sized", "0.1", &alice)
        .content("seed")
        .publish(index.as_ref())
        .await;
    let uploads: Vec<Upload> = (0..8)
        .map(|i| {
            let filename = format!("sized-1.0-py3{i}-none-any.whl");
            Upload::wheel("sized", "1.0", &alice)
                .filename(&filename)
                .content(&format!("{i}{}", "x".repeat(299)))
                .max_project_size(1000)
        })
        .collect();
    let results = commit_across(&other_indexes(h, 8).await, uploads).await;
    let published = results
        .iter()
        .filter(|result| matches!(result, CommitResult::Published { .. }))
        .count();
    assert_eq!(published, 3, "{results:?}");
    for result in &results {
        assert!(
            matches!(
                result,
                CommitResult::Published { .. }
                    | CommitResult::Refused(FileRefusal::ProjectTooLarge { limit: 1000, .. })
            ),
            "{result:?}"
        );
    }
    let project = index
        .find_project("sized")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.total_size, 4 + 3 * 300);
    assert_eq!(file_count(index.as_ref(), "sized").await, 4);
}
