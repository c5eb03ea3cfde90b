//! The SQLite adapter of [`IndexRepo`], used by the embedded mode.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use uuid::Uuid;

use crate::{
    CommitResult, FileAdmission, FileCandidate, FileRecord, FileRefusal, IndexError, IndexRepo,
    NewToken, NewUpload, Project, Release, TokenRecord, TokenSummary, User, YankChange,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Selects a [`FileRecord`]: the file joined with its release. Callers append the `WHERE`.
macro_rules! select_file_record {
    () => {
        "SELECT f.id, f.release_id, r.version, f.filename, f.packagetype, f.python_version, \
         f.size, f.md5_digest, f.sha256_digest, f.blake2_256_digest, f.path, f.upload_time, \
         f.comment_text, f.requires_python, f.metadata_sha256, f.metadata_blake2_256, \
         r.yanked, r.yanked_reason \
         FROM files f JOIN releases r ON r.id = f.release_id "
    };
}

macro_rules! select_project {
    () => {
        "SELECT id, name, normalized_name, status, status_reason, total_size, last_serial, \
         created_at FROM projects "
    };
}

/// The index on a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteIndex {
    pool: SqlitePool,
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
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteIndex { pool })
    }
}

async fn check_file_on(
    conn: &mut SqliteConnection,
    candidate: &FileCandidate<'_>,
) -> Result<FileAdmission, IndexError> {
    let existing: Option<FileRecord> = sqlx::query_as(concat!(
        select_file_record!(),
        "WHERE f.filename = ?1 OR f.blake2_256_digest = ?2 OR f.sha256_digest = ?3 LIMIT 1"
    ))
    .bind(candidate.filename)
    .bind(candidate.blake2_256_digest)
    .bind(candidate.sha256_digest)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(existing) = existing {
        let identical = existing.filename == candidate.filename
            && existing.sha256_digest == candidate.sha256_digest
            && existing.blake2_256_digest == candidate.blake2_256_digest;
        return Ok(if identical {
            FileAdmission::Identical(Box::new(existing))
        } else {
            FileAdmission::Refused(FileRefusal::FileExists {
                filename: candidate.filename.to_owned(),
                blake2_256_digest: candidate.blake2_256_digest.to_owned(),
            })
        });
    }

    let previously_used: Option<String> =
        sqlx::query_scalar("SELECT filename FROM file_registry WHERE filename = ?1")
            .bind(candidate.filename)
            .fetch_optional(&mut *conn)
            .await?;
    if previously_used.is_some() {
        return Ok(FileAdmission::Refused(FileRefusal::FilenamePreviouslyUsed));
    }

    let release: Option<(String, i64)> = sqlx::query_as(
        "SELECT r.id, r.created_at FROM releases r JOIN projects p ON p.id = r.project_id \
         WHERE p.normalized_name = ?1 AND r.canonical_version = ?2",
    )
    .bind(candidate.normalized_name)
    .bind(candidate.canonical_version)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((release_id, created_at)) = release {
        if let Some(window) = candidate.closed_release_after_micros
            && candidate.now_micros.saturating_sub(created_at) > window
        {
            return Ok(FileAdmission::Refused(FileRefusal::ReleaseClosed));
        }
        if candidate.packagetype == "sdist" {
            let sdists: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM files WHERE release_id = ?1 AND packagetype = 'sdist'",
            )
            .bind(&release_id)
            .fetch_one(&mut *conn)
            .await?;
            if sdists > 0 {
                return Ok(FileAdmission::Refused(FileRefusal::OneSdistPerRelease));
            }
        }
    }
    Ok(FileAdmission::New)
}

async fn append_journal(
    conn: &mut SqliteConnection,
    project_name: &str,
    version: Option<&str>,
    action: &str,
    submitted_by: &str,
    now_micros: i64,
) -> Result<i64, IndexError> {
    let result = sqlx::query(
        "INSERT INTO journal (project_name, version, action, submitted_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(project_name)
    .bind(version)
    .bind(action)
    .bind(submitted_by)
    .bind(now_micros)
    .execute(&mut *conn)
    .await?;
    Ok(result.last_insert_rowid())
}

#[async_trait]
impl IndexRepo for SqliteIndex {
    async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

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
        let caveats = serde_json::to_string(&token.caveats)
            .map_err(|error| IndexError::Corrupt(format!("token caveats: {error}")))?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, description, root_key, caveats, created_at, \
             expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&token.id)
        .bind(&token.user_id)
        .bind(&token.description)
        .bind(&token.root_key)
        .bind(caveats)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.user_id, u.name AS user_name, t.root_key, t.caveats, t.expires_at \
             FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError> {
        Ok(sqlx::query_as(
            "SELECT t.id, u.name AS user_name, t.description, t.caveats, t.created_at, \
             t.expires_at, t.last_used_at FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id \
             ORDER BY t.created_at DESC, t.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_token(&self, id: &str) -> Result<bool, IndexError> {
        let result = sqlx::query("DELETE FROM api_tokens WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(now_micros)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError> {
        Ok(
            sqlx::query_as(concat!(select_project!(), "WHERE normalized_name = ?1"))
                .bind(normalized_name)
                .fetch_optional(&self.pool)
                .await?,
        )
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

    async fn user_role(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, IndexError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM roles WHERE project_id = ?1 AND user_id = ?2")
                .bind(project_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
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

    async fn list_projects(&self) -> Result<Vec<Project>, IndexError> {
        Ok(
            sqlx::query_as(concat!(select_project!(), "ORDER BY normalized_name"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let target: Option<(String, String, String)> = sqlx::query_as(
            "SELECT r.id, p.id, p.name FROM releases r JOIN projects p ON p.id = r.project_id \
             WHERE p.normalized_name = ?1 AND r.canonical_version = ?2",
        )
        .bind(change.normalized_name)
        .bind(change.canonical_version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((release_id, project_id, project_name)) = target else {
            return Ok(false);
        };
        sqlx::query("UPDATE releases SET yanked = ?2, yanked_reason = ?3 WHERE id = ?1")
            .bind(&release_id)
            .bind(change.yank_reason.is_some())
            .bind(change.yank_reason.unwrap_or(""))
            .execute(&mut *tx)
            .await?;
        let action = if change.yank_reason.is_some() {
            "yank release"
        } else {
            "unyank release"
        };
        let serial = append_journal(
            &mut tx,
            &project_name,
            Some(change.canonical_version),
            action,
            change.submitted_by,
            now_micros,
        )
        .await?;
        sqlx::query("UPDATE projects SET last_serial = ?2 WHERE id = ?1")
            .bind(&project_id)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

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
        let mut conn = self.pool.acquire().await?;
        check_file_on(&mut conn, candidate).await
    }

    async fn commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError> {
        // IMMEDIATE takes the write lock up front, so the checks below and the inserts see
        // the same state and two concurrent commits of one filename cannot both pass.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let candidate = FileCandidate {
            normalized_name: &upload.project.normalized_name,
            canonical_version: &upload.release.canonical_version,
            filename: &upload.file.filename,
            packagetype: &upload.file.packagetype,
            sha256_digest: &upload.file.sha256_digest,
            blake2_256_digest: &upload.file.blake2_256_digest,
            closed_release_after_micros: upload.closed_release_after_micros,
            now_micros: upload.now_micros,
        };
        match check_file_on(&mut tx, &candidate).await? {
            FileAdmission::New => {}
            FileAdmission::Identical(existing) => return Ok(CommitResult::Identical(existing)),
            FileAdmission::Refused(refusal) => return Ok(CommitResult::Refused(refusal)),
        }

        let now = upload.now_micros;
        let project: Option<(String, String)> =
            sqlx::query_as("SELECT id, name FROM projects WHERE normalized_name = ?1")
                .bind(&upload.project.normalized_name)
                .fetch_optional(&mut *tx)
                .await?;
        let mut project_created = false;
        let project_id = match project {
            Some((id, name)) => {
                if name != upload.project.name {
                    // PyPI renames the display name to the spelling of the latest upload.
                    sqlx::query("UPDATE projects SET name = ?2 WHERE id = ?1")
                        .bind(&id)
                        .bind(&upload.project.name)
                        .execute(&mut *tx)
                        .await?;
                }
                id
            }
            None => {
                let Some(owner_id) = &upload.project.create_with_owner else {
                    return Ok(CommitResult::Refused(FileRefusal::ProjectMissing));
                };
                let id = Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO projects (id, name, normalized_name, ultranormalized_name, \
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(&id)
                .bind(&upload.project.name)
                .bind(&upload.project.normalized_name)
                .bind(&upload.project.ultranormalized_name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO roles (project_id, user_id, role) VALUES (?1, ?2, 'Owner')",
                )
                .bind(&id)
                .bind(owner_id)
                .execute(&mut *tx)
                .await?;
                append_journal(
                    &mut tx,
                    &upload.project.name,
                    None,
                    "create",
                    &upload.submitted_by,
                    now,
                )
                .await?;
                let owner_action = format!("add Owner {}", upload.submitted_by);
                append_journal(
                    &mut tx,
                    &upload.project.name,
                    None,
                    &owner_action,
                    &upload.submitted_by,
                    now,
                )
                .await?;
                project_created = true;
                id
            }
        };

        let release_id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM releases WHERE project_id = ?1 AND canonical_version = ?2",
        )
        .bind(&project_id)
        .bind(&upload.release.canonical_version)
        .fetch_optional(&mut *tx)
        .await?;
        let release_id = match release_id {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO releases (id, project_id, version, canonical_version, \
                     is_prerelease, requires_python, metadata, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .bind(&id)
                .bind(&project_id)
                .bind(&upload.release.version)
                .bind(&upload.release.canonical_version)
                .bind(upload.release.is_prerelease)
                .bind(&upload.release.requires_python)
                .bind(&upload.release.metadata_json)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                append_journal(
                    &mut tx,
                    &upload.project.name,
                    Some(&upload.release.version),
                    "new release",
                    &upload.submitted_by,
                    now,
                )
                .await?;
                id
            }
        };

        let file = &upload.file;
        sqlx::query(
            "INSERT INTO files (id, release_id, filename, packagetype, python_version, size, \
             md5_digest, sha256_digest, blake2_256_digest, path, upload_time, comment_text, \
             uploaded_via, requires_python, metadata_sha256, metadata_blake2_256, upload_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(&release_id)
        .bind(&file.filename)
        .bind(&file.packagetype)
        .bind(&file.python_version)
        .bind(file.size)
        .bind(&file.md5_digest)
        .bind(&file.sha256_digest)
        .bind(&file.blake2_256_digest)
        .bind(&file.path)
        .bind(now)
        .bind(&file.comment_text)
        .bind(&file.uploaded_via)
        .bind(&file.requires_python)
        .bind(&file.metadata_sha256)
        .bind(&file.metadata_blake2_256)
        .bind(&upload.upload_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO file_registry (filename) VALUES (?1)")
            .bind(&file.filename)
            .execute(&mut *tx)
            .await?;
        let action = format!("add {} file {}", file.python_version, file.filename);
        let serial = append_journal(
            &mut tx,
            &upload.project.name,
            Some(&upload.release.version),
            &action,
            &upload.submitted_by,
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE projects SET last_serial = ?2, total_size = total_size + ?3 WHERE id = ?1",
        )
        .bind(&project_id)
        .bind(serial)
        .bind(file.size)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CommitResult::Published {
            serial,
            project_created,
        })
    }
}
