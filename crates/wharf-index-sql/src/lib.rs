//! The SQL both index adapters run, written once.
//!
//! Most of the statements behind `wharf_index::rules::Queries` are the same text on SQLite and
//! PostgreSQL (`$N` parameters are understood by both). sqlx's types differ per backend, so the
//! shared code is a macro that each adapter expands over its own connection type:
//! [`portable_queries!`] writes the portable methods of `Queries` around the few that the
//! adapter writes itself (its locking, its journal insert, its token-id claim), and
//! [`select_file_record!`] / [`select_project!`] are the shared `SELECT` heads.

/// Selects a `FileRecord`: the file joined with its release. Callers append the `WHERE`.
#[macro_export]
macro_rules! select_file_record {
    () => {
        "SELECT f.id, f.release_id, r.version, f.filename, f.packagetype, f.python_version, \
         f.size, f.md5_digest, f.sha256_digest, f.blake2_256_digest, f.path, f.upload_time, \
         f.comment_text, f.requires_python, f.metadata_sha256, f.metadata_blake2_256, \
         r.yanked, r.yanked_reason, f.serial \
         FROM files f JOIN releases r ON r.id = f.release_id "
    };
}

/// Selects a `Project`. Callers append the `WHERE` or `ORDER BY`.
#[macro_export]
macro_rules! select_project {
    () => {
        "SELECT id, name, normalized_name, status, status_reason, total_size, last_serial, \
         created_at FROM projects "
    };
}

/// `impl Queries for $ty { <the adapter's own methods> }`, completed with every portable
/// method. `$ty` is a newtype over `&mut <backend connection>` (its field `.0`); the expansion
/// names `sqlx`, `async_trait`, `Queries`, `IndexError`, `FileRecord`, `FileRow`, `NewToken`,
/// `Project`, `ProjectTarget`, `ReleaseOf` and `ReleaseTarget`, which the adapter imports.
#[macro_export]
macro_rules! portable_queries {
    (impl Queries for $ty:ty { $($own:tt)* }) => {
        #[async_trait]
        impl Queries for $ty {
            $($own)*

            async fn file_by_name_or_digest(
                &mut self,
                filename: &str,
                sha256_digest: &str,
                blake2_256_digest: &str,
            ) -> Result<Option<FileRecord>, IndexError> {
                Ok(sqlx::query_as(concat!(
                    $crate::select_file_record!(),
                    "WHERE f.filename = $1 OR f.blake2_256_digest = $2 OR f.sha256_digest = $3 LIMIT 1"
                ))
                .bind(filename)
                .bind(blake2_256_digest)
                .bind(sha256_digest)
                .fetch_optional(&mut *self.0)
                .await?)
            }

            async fn filename_registered(&mut self, filename: &str) -> Result<bool, IndexError> {
                let used: Option<String> =
                    sqlx::query_scalar("SELECT filename FROM file_registry WHERE filename = $1")
                        .bind(filename)
                        .fetch_optional(&mut *self.0)
                        .await?;
                Ok(used.is_some())
            }

            async fn release_of(
                &mut self,
                normalized_name: &str,
                canonical_version: &str,
            ) -> Result<Option<ReleaseOf>, IndexError> {
                Ok(sqlx::query_as(
                    "SELECT r.id, p.id AS project_id, p.name AS project_name, r.version, r.created_at, \
                     r.yanked, r.yanked_reason FROM releases r JOIN projects p ON p.id = r.project_id \
                     WHERE p.normalized_name = $1 AND r.canonical_version = $2",
                )
                .bind(normalized_name)
                .bind(canonical_version)
                .fetch_optional(&mut *self.0)
                .await?)
            }

            async fn sdist_count(&mut self, release_id: &str) -> Result<i64, IndexError> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM files WHERE release_id = $1 AND packagetype = 'sdist'",
                )
                .bind(release_id)
                .fetch_one(&mut *self.0)
                .await?)
            }

            async fn project(&mut self, normalized_name: &str) -> Result<Option<Project>, IndexError> {
                Ok(
                    sqlx::query_as(concat!($crate::select_project!(), "WHERE normalized_name = $1"))
                        .bind(normalized_name)
                        .fetch_optional(&mut *self.0)
                        .await?,
                )
            }

            async fn projects_by_ultranormalized(
                &mut self,
                ultranormalized_name: &str,
            ) -> Result<Vec<Project>, IndexError> {
                Ok(
                    sqlx::query_as(concat!($crate::select_project!(), "WHERE ultranormalized_name = $1"))
                        .bind(ultranormalized_name)
                        .fetch_all(&mut *self.0)
                        .await?,
                )
            }

            async fn role(
                &mut self,
                project_id: &str,
                user_id: &str,
            ) -> Result<Option<String>, IndexError> {
                Ok(
                    sqlx::query_scalar("SELECT role FROM roles WHERE project_id = $1 AND user_id = $2")
                        .bind(project_id)
                        .bind(user_id)
                        .fetch_optional(&mut *self.0)
                        .await?,
                )
            }

            async fn insert_project(
                &mut self,
                id: &str,
                project: &ProjectTarget,
                now_micros: i64,
            ) -> Result<(), IndexError> {
                sqlx::query(
                    "INSERT INTO projects (id, name, normalized_name, ultranormalized_name, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(&project.name)
                .bind(&project.normalized_name)
                .bind(&project.ultranormalized_name)
                .bind(now_micros)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn insert_role(
                &mut self,
                project_id: &str,
                user_id: &str,
                role: &str,
            ) -> Result<(), IndexError> {
                sqlx::query("INSERT INTO roles (project_id, user_id, role) VALUES ($1, $2, $3)")
                    .bind(project_id)
                    .bind(user_id)
                    .bind(role)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn rename_project(&mut self, project_id: &str, name: &str) -> Result<(), IndexError> {
                sqlx::query("UPDATE projects SET name = $2 WHERE id = $1")
                    .bind(project_id)
                    .bind(name)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn update_project_serial(
                &mut self,
                project_id: &str,
                serial: i64,
                added_size: i64,
            ) -> Result<(), IndexError> {
                sqlx::query(
                    "UPDATE projects SET last_serial = $2, total_size = total_size + $3 WHERE id = $1",
                )
                .bind(project_id)
                .bind(serial)
                .bind(added_size)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn insert_release(
                &mut self,
                id: &str,
                project_id: &str,
                release: &ReleaseTarget,
                now_micros: i64,
            ) -> Result<(), IndexError> {
                sqlx::query(
                    "INSERT INTO releases (id, project_id, version, canonical_version, is_prerelease, \
                     requires_python, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(project_id)
                .bind(&release.version)
                .bind(&release.canonical_version)
                .bind(release.is_prerelease)
                .bind(&release.requires_python)
                .bind(&release.metadata_json)
                .bind(now_micros)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn set_yanked(
                &mut self,
                release_id: &str,
                yank_reason: Option<&str>,
            ) -> Result<(), IndexError> {
                sqlx::query("UPDATE releases SET yanked = $2, yanked_reason = $3 WHERE id = $1")
                    .bind(release_id)
                    .bind(yank_reason.is_some())
                    .bind(yank_reason.unwrap_or(""))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn insert_file(&mut self, row: &FileRow<'_>) -> Result<(), IndexError> {
                let file = row.file;
                sqlx::query(
                    "INSERT INTO files (id, release_id, filename, packagetype, python_version, size, \
                     md5_digest, sha256_digest, blake2_256_digest, path, upload_time, comment_text, \
                     uploaded_via, requires_python, metadata_sha256, metadata_blake2_256, upload_id, \
                     serial) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18)",
                )
                .bind(row.id)
                .bind(row.release_id)
                .bind(&file.filename)
                .bind(&file.packagetype)
                .bind(&file.python_version)
                .bind(file.size)
                .bind(&file.md5_digest)
                .bind(&file.sha256_digest)
                .bind(&file.blake2_256_digest)
                .bind(&file.path)
                .bind(row.upload_time)
                .bind(&file.comment_text)
                .bind(&file.uploaded_via)
                .bind(&file.requires_python)
                .bind(&file.metadata_sha256)
                .bind(&file.metadata_blake2_256)
                .bind(row.upload_id)
                .bind(row.serial)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn register_filename(&mut self, filename: &str) -> Result<(), IndexError> {
                sqlx::query("INSERT INTO file_registry (filename) VALUES ($1)")
                    .bind(filename)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn activate_publisher(
                &mut self,
                publisher_id: &str,
                project_id: &str,
            ) -> Result<(), IndexError> {
                sqlx::query(
                    "UPDATE publishers SET pending_project_name = NULL, \
                     pending_project_ultranormalized = NULL, pending_user_id = NULL WHERE id = $1",
                )
                .bind(publisher_id)
                .execute(&mut *self.0)
                .await?;
                sqlx::query("INSERT INTO publisher_projects (publisher_id, project_id) VALUES ($1, $2)")
                    .bind(publisher_id)
                    .bind(project_id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn delete_publisher_row(&mut self, publisher_id: &str) -> Result<(), IndexError> {
                sqlx::query("DELETE FROM publishers WHERE id = $1")
                    .bind(publisher_id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn delete_lookalike_pending_publishers(
                &mut self,
                ultranormalized_name: &str,
                owner_id: &str,
            ) -> Result<(), IndexError> {
                sqlx::query(
                    "DELETE FROM publishers WHERE pending_project_ultranormalized = $1 \
                     AND pending_user_id IS NOT NULL AND pending_user_id <> $2",
                )
                .bind(ultranormalized_name)
                .bind(owner_id)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn insert_token(&mut self, token: &NewToken) -> Result<(), IndexError> {
                sqlx::query(
                    "INSERT INTO api_tokens (id, user_id, description, root_key, caveats, created_at, \
                     expires_at, publisher_id, additional, sealed_root_key, root_key_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&token.id)
                .bind(&token.user_id)
                .bind(&token.description)
                // The clear column stays empty: only the sealed key is stored.
                .bind(Vec::<u8>::new())
                .bind(token.caveats_json()?)
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(&token.publisher_id)
                .bind(&token.additional)
                .bind(&token.root_key.sealed)
                .bind(&token.root_key.key_id)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn root_keys(&mut self) -> Result<Vec<StoredRootKey>, IndexError> {
                Ok(sqlx::query_as(
                    "SELECT id, root_key, sealed_root_key, root_key_id FROM api_tokens ORDER BY id",
                )
                .fetch_all(&mut *self.0)
                .await?)
            }

            async fn store_sealed_root_key(
                &mut self,
                id: &str,
                sealed: &SealedRootKey,
            ) -> Result<bool, IndexError> {
                let result = sqlx::query(
                    "UPDATE api_tokens SET sealed_root_key = $2, root_key_id = $3, root_key = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(&sealed.sealed)
                .bind(&sealed.key_id)
                .bind(Vec::<u8>::new())
                .execute(&mut *self.0)
                .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn record_audit(
                &mut self,
                kind: &str,
                detail: &str,
                now_micros: i64,
            ) -> Result<(), IndexError> {
                sqlx::query("INSERT INTO audit_events (kind, detail, created_at) VALUES ($1, $2, $3)")
                    .bind(kind)
                    .bind(detail)
                    .bind(now_micros)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }
        }
    };
}
