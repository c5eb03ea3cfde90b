//! PyPI's admission and commit rules, written once for every backend.
//!
//! Each rule is a function over [`Queries`], the small set of primitive reads and writes a
//! backend implements on its own transaction (or connection) type. The backend decides how
//! the transaction is isolated (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: advisory locks taken
//! before the rule runs, plus the journal lock [`Queries::begin_writes`] takes), runs the rule
//! inside it, and commits when the rule returns `Ok` (a refusal has written nothing). What a
//! rule decides (identical bytes, filename reuse, closed releases, one sdist per release,
//! who may create a project, which journal rows are written) lives here only, so a rule
//! change is one edit.

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    CommitResult, FileAdmission, FileCandidate, FileRecord, FileRefusal, IndexError, JtiClaim,
    NewFile, NewToken, NewUpload, Project, ProjectTarget, ReifyResult, ReleaseTarget,
    SealedRootKey, StoredRootKey, YankChange,
};

/// A release as the rules read it: with its project's id and display name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReleaseOf {
    /// The release id.
    pub id: String,
    /// The project's id.
    pub project_id: String,
    /// The project's display name.
    pub project_name: String,
    /// The version as first uploaded.
    pub version: String,
    /// When the release was created (microseconds since the epoch).
    pub created_at: i64,
    /// Whether the release is yanked.
    pub yanked: bool,
    /// Why it was yanked (empty if not, or if no reason was given).
    pub yanked_reason: String,
}

/// One journal row to append.
#[derive(Debug, Clone, Copy)]
pub struct JournalEntry<'a> {
    /// The project's display name.
    pub project_name: &'a str,
    /// The release's version, for release and file changes.
    pub version: Option<&'a str>,
    /// What happened, in PyPI's words (`create`, `new release`, `add py3 file …`).
    pub action: &'a str,
    /// Who did it (user name, or `publisher:<id>`).
    pub submitted_by: &'a str,
    /// When (microseconds since the epoch).
    pub now_micros: i64,
}

/// A file row to insert.
#[derive(Debug, Clone, Copy)]
pub struct FileRow<'a> {
    /// The new file's id.
    pub id: &'a str,
    /// The release it belongs to.
    pub release_id: &'a str,
    /// The upload that carried it (unique: a redelivery finds the committed file).
    pub upload_id: &'a str,
    /// The journal serial at which it becomes visible.
    pub serial: i64,
    /// Its upload time (microseconds since the epoch).
    pub upload_time: i64,
    /// The file itself.
    pub file: &'a NewFile,
}

/// The primitive queries the rules run, implemented by each backend on its transaction.
///
/// Reads see the transaction's own writes. Nothing here decides anything: each method is one
/// statement (or two that always go together).
#[async_trait]
pub trait Queries: Send {
    /// Any stored file with this filename or either digest.
    async fn file_by_name_or_digest(
        &mut self,
        filename: &str,
        sha256_digest: &str,
        blake2_256_digest: &str,
    ) -> Result<Option<FileRecord>, IndexError>;
    /// Whether the filename was ever used (the registry outlives deleted files).
    async fn filename_registered(&mut self, filename: &str) -> Result<bool, IndexError>;
    /// The release of (project, version), by normalized name and canonical version.
    async fn release_of(
        &mut self,
        normalized_name: &str,
        canonical_version: &str,
    ) -> Result<Option<ReleaseOf>, IndexError>;
    /// How many sdists a release has.
    async fn sdist_count(&mut self, release_id: &str) -> Result<i64, IndexError>;
    /// The project with this normalized name.
    async fn project(&mut self, normalized_name: &str) -> Result<Option<Project>, IndexError>;
    /// The role a user has on a project.
    async fn role(&mut self, project_id: &str, user_id: &str)
    -> Result<Option<String>, IndexError>;
    /// The projects whose ultranormalized name is this one.
    async fn projects_by_ultranormalized(
        &mut self,
        ultranormalized_name: &str,
    ) -> Result<Vec<Project>, IndexError>;
    /// For a pending publisher: the id and name of the user who registered it.
    async fn pending_publisher_owner(
        &mut self,
        publisher_id: &str,
    ) -> Result<Option<(String, String)>, IndexError>;

    /// Serializes, until the transaction ends, every transaction that may create a project
    /// with this ultranormalized name, so a look-alike check made after it sees every such
    /// project committed before (PostgreSQL: an advisory lock on the name; SQLite already
    /// holds its write lock). Called before [`Queries::begin_writes`].
    async fn lock_similar_names(&mut self, ultranormalized_name: &str) -> Result<(), IndexError>;
    /// Called once before the rule's first write (PostgreSQL takes the journal lock here, so
    /// serials become visible in commit order; SQLite already holds its write lock).
    async fn begin_writes(&mut self) -> Result<(), IndexError>;
    /// Inserts a project row.
    async fn insert_project(
        &mut self,
        id: &str,
        project: &ProjectTarget,
        now_micros: i64,
    ) -> Result<(), IndexError>;
    /// Gives a user a role on a project.
    async fn insert_role(
        &mut self,
        project_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<(), IndexError>;
    /// Changes a project's display name.
    async fn rename_project(&mut self, project_id: &str, name: &str) -> Result<(), IndexError>;
    /// Records a change of a project: its last serial, and the size its new files add.
    async fn update_project_serial(
        &mut self,
        project_id: &str,
        serial: i64,
        added_size: i64,
    ) -> Result<(), IndexError>;
    /// Inserts a release row.
    async fn insert_release(
        &mut self,
        id: &str,
        project_id: &str,
        release: &ReleaseTarget,
        now_micros: i64,
    ) -> Result<(), IndexError>;
    /// Yanks (`Some(reason)`) or unyanks (`None`) a release.
    async fn set_yanked(
        &mut self,
        release_id: &str,
        yank_reason: Option<&str>,
    ) -> Result<(), IndexError>;
    /// Inserts a file row.
    async fn insert_file(&mut self, row: &FileRow<'_>) -> Result<(), IndexError>;
    /// Adds a filename to the registry of used filenames.
    async fn register_filename(&mut self, filename: &str) -> Result<(), IndexError>;
    /// Appends a journal row and returns its serial.
    async fn append_journal(&mut self, entry: &JournalEntry<'_>) -> Result<i64, IndexError>;
    /// Turns a pending publisher into an active one attached to `project_id`.
    async fn activate_publisher(
        &mut self,
        publisher_id: &str,
        project_id: &str,
    ) -> Result<(), IndexError>;
    /// Deletes a publisher row.
    async fn delete_publisher_row(&mut self, publisher_id: &str) -> Result<(), IndexError>;
    /// Deletes the pending publishers of other users than `owner_id` for a project name.
    async fn delete_lookalike_pending_publishers(
        &mut self,
        ultranormalized_name: &str,
        owner_id: &str,
    ) -> Result<(), IndexError>;
    /// Sweeps expired token-id claims and claims `claim`'s id; `false` if it was claimed
    /// before.
    async fn claim_jti(&mut self, claim: &JtiClaim) -> Result<bool, IndexError>;
    /// Inserts an API token record.
    async fn insert_token(&mut self, token: &NewToken) -> Result<(), IndexError>;
    /// Every token row's root key as stored (sealed, or clear before sealing).
    async fn root_keys(&mut self) -> Result<Vec<StoredRootKey>, IndexError>;
    /// Replaces a token row's root key with `sealed`, emptying the clear column; returns
    /// whether the row exists.
    async fn store_sealed_root_key(
        &mut self,
        id: &str,
        sealed: &SealedRootKey,
    ) -> Result<bool, IndexError>;
    /// Inserts an audit event.
    async fn record_audit(
        &mut self,
        kind: &str,
        detail: &str,
        now_micros: i64,
    ) -> Result<(), IndexError>;
}

/// Whether a file may be added: identical bytes are a no-op, a filename or digest in use (or
/// a filename ever used) is refused, as are new files in a closed release and a second sdist.
pub async fn check_file<Q: Queries + ?Sized>(
    queries: &mut Q,
    candidate: &FileCandidate<'_>,
) -> Result<FileAdmission, IndexError> {
    Ok(match admit(queries, candidate).await? {
        Ok(_) => FileAdmission::New,
        Err(admission) => admission,
    })
}

/// [`check_file`], keeping the release the new file goes to (if it exists) for the commit.
async fn admit<Q: Queries + ?Sized>(
    queries: &mut Q,
    candidate: &FileCandidate<'_>,
) -> Result<Result<Option<ReleaseOf>, FileAdmission>, IndexError> {
    let existing = queries
        .file_by_name_or_digest(
            candidate.filename,
            candidate.sha256_digest,
            candidate.blake2_256_digest,
        )
        .await?;
    if let Some(existing) = existing {
        let identical = existing.filename == candidate.filename
            && existing.sha256_digest == candidate.sha256_digest
            && existing.blake2_256_digest == candidate.blake2_256_digest;
        return Ok(Err(if identical {
            FileAdmission::Identical(Box::new(existing))
        } else {
            FileAdmission::Refused(FileRefusal::FileExists {
                filename: candidate.filename.to_owned(),
                blake2_256_digest: candidate.blake2_256_digest.to_owned(),
            })
        }));
    }
    if queries.filename_registered(candidate.filename).await? {
        return Ok(Err(FileAdmission::Refused(
            FileRefusal::FilenamePreviouslyUsed,
        )));
    }
    let release = queries
        .release_of(candidate.normalized_name, candidate.canonical_version)
        .await?;
    if let Some(release) = &release {
        if let Some(window) = candidate.closed_release_after_micros
            && candidate.now_micros.saturating_sub(release.created_at) > window
        {
            return Ok(Err(FileAdmission::Refused(FileRefusal::ReleaseClosed)));
        }
        if candidate.packagetype == "sdist" && queries.sdist_count(&release.id).await? > 0 {
            return Ok(Err(FileAdmission::Refused(FileRefusal::OneSdistPerRelease)));
        }
    }
    Ok(Ok(release))
}

/// Makes an upload visible: repeats the [`check_file`] checks, creates the project (with its
/// owner) and the release if needed, inserts the file, its filename registry entry and the
/// journal rows, and returns the committed file.
pub async fn commit_upload<Q: Queries + ?Sized>(
    queries: &mut Q,
    upload: &NewUpload,
) -> Result<CommitResult, IndexError> {
    let file = &upload.file;
    let candidate = FileCandidate {
        normalized_name: &upload.project.normalized_name,
        canonical_version: &upload.release.canonical_version,
        filename: &file.filename,
        packagetype: &file.packagetype,
        sha256_digest: &file.sha256_digest,
        blake2_256_digest: &file.blake2_256_digest,
        closed_release_after_micros: upload.closed_release_after_micros,
        now_micros: upload.now_micros,
    };
    let release = match admit(queries, &candidate).await? {
        Ok(release) => release,
        Err(FileAdmission::New) => None,
        Err(FileAdmission::Identical(existing)) => return Ok(CommitResult::Identical(existing)),
        Err(FileAdmission::Refused(refusal)) => return Ok(CommitResult::Refused(refusal)),
    };

    let now = upload.now_micros;
    let project = queries.project(&upload.project.normalized_name).await?;
    let creator = upload.project.create_with_owner.as_deref();
    match (&project, creator) {
        (None, None) => return Ok(CommitResult::Refused(FileRefusal::ProjectMissing)),
        (None, Some(_)) => {
            queries
                .lock_similar_names(&upload.project.ultranormalized_name)
                .await?;
            if lookalike_exists(queries, &upload.project).await? {
                // A concurrent first upload of a look-alike name committed first.
                return Ok(CommitResult::Refused(FileRefusal::NameTooSimilar {
                    project_name: upload.project.name.clone(),
                }));
            }
        }
        (Some(project), Some(creator)) => {
            if queries.role(&project.id, creator).await?.is_none() {
                // A concurrent first upload by another user created the project.
                return Ok(CommitResult::Refused(FileRefusal::UploaderNotAllowed {
                    project_name: project.name.clone(),
                }));
            }
        }
        (Some(_), None) => {}
    }
    if let Some(refusal) = project_size_refusal(project.as_ref(), upload) {
        return Ok(CommitResult::Refused(refusal));
    }
    queries.begin_writes().await?;
    let (project_id, project_created) = match (project, creator) {
        (Some(project), _) => {
            if project.name != upload.project.name {
                // PyPI renames the display name to the spelling of the latest upload.
                queries
                    .rename_project(&project.id, &upload.project.name)
                    .await?;
            }
            (project.id, false)
        }
        (None, Some(owner_id)) => {
            let id = create_project(
                queries,
                &upload.project,
                owner_id,
                &upload.submitted_by,
                now,
            )
            .await?;
            (id, true)
        }
        (None, None) => return Ok(CommitResult::Refused(FileRefusal::ProjectMissing)),
    };

    let journal = |action| JournalEntry {
        project_name: &upload.project.name,
        version: Some(&upload.release.version),
        action,
        submitted_by: &upload.submitted_by,
        now_micros: now,
    };
    let (release_id, version, yanked, yanked_reason) = match release {
        Some(release) => (
            release.id,
            release.version,
            release.yanked,
            release.yanked_reason,
        ),
        None => {
            let id = Uuid::new_v4().to_string();
            queries
                .insert_release(&id, &project_id, &upload.release, now)
                .await?;
            queries.append_journal(&journal("new release")).await?;
            (id, upload.release.version.clone(), false, String::new())
        }
    };

    let action = format!("add {} file {}", file.python_version, file.filename);
    let serial = queries.append_journal(&journal(&action)).await?;
    let file_id = Uuid::new_v4().to_string();
    queries
        .insert_file(&FileRow {
            id: &file_id,
            release_id: &release_id,
            upload_id: &upload.upload_id,
            serial,
            upload_time: now,
            file,
        })
        .await?;
    queries.register_filename(&file.filename).await?;
    queries
        .update_project_serial(&project_id, serial, file.size)
        .await?;
    Ok(CommitResult::Published {
        file: Box::new(FileRecord {
            id: file_id,
            release_id,
            version,
            filename: file.filename.clone(),
            packagetype: file.packagetype.clone(),
            python_version: file.python_version.clone(),
            size: file.size,
            md5_digest: file.md5_digest.clone(),
            sha256_digest: file.sha256_digest.clone(),
            blake2_256_digest: file.blake2_256_digest.clone(),
            path: file.path.clone(),
            upload_time: now,
            comment_text: file.comment_text.clone(),
            requires_python: file.requires_python.clone(),
            metadata_sha256: file.metadata_sha256.clone(),
            metadata_blake2_256: file.metadata_blake2_256.clone(),
            yanked,
            yanked_reason,
            serial,
        }),
        serial,
        project_created,
    })
}

/// PyPI's look-alike rule: whether another project (another normalized name) has
/// `project`'s ultranormalized name. The verifier checks it early, for a fast refusal; this
/// check, made after [`Queries::lock_similar_names`], is the one that holds when two
/// look-alike projects are created at once. (It is a check, not a unique index, so an
/// operator may still create a look-alike project on purpose.)
async fn lookalike_exists<Q: Queries + ?Sized>(
    queries: &mut Q,
    project: &ProjectTarget,
) -> Result<bool, IndexError> {
    Ok(queries
        .projects_by_ultranormalized(&project.ultranormalized_name)
        .await?
        .iter()
        .any(|similar| similar.normalized_name != project.normalized_name))
}

/// The refusal when the file would take the project (its total as committed, read under the
/// project's lock) over the upload's `max_project_size`.
fn project_size_refusal(project: Option<&Project>, upload: &NewUpload) -> Option<FileRefusal> {
    let limit = upload.max_project_size?;
    let total = project.map_or(0, |project| project.total_size);
    let after = u64::try_from(total)
        .unwrap_or(0)
        .saturating_add(u64::try_from(upload.file.size).unwrap_or(u64::MAX));
    (after > limit).then(|| FileRefusal::ProjectTooLarge {
        project_name: project.map_or_else(|| upload.project.name.clone(), |p| p.name.clone()),
        limit,
    })
}

/// Creates a project with `owner_id` as its Owner, and the journal rows PyPI writes.
async fn create_project<Q: Queries + ?Sized>(
    queries: &mut Q,
    project: &ProjectTarget,
    owner_id: &str,
    submitted_by: &str,
    now_micros: i64,
) -> Result<String, IndexError> {
    let id = Uuid::new_v4().to_string();
    queries.insert_project(&id, project, now_micros).await?;
    queries.insert_role(&id, owner_id, "Owner").await?;
    let owner_action = format!("add Owner {submitted_by}");
    for action in ["create", owner_action.as_str()] {
        queries
            .append_journal(&JournalEntry {
                project_name: &project.name,
                version: None,
                action,
                submitted_by,
                now_micros,
            })
            .await?;
    }
    Ok(id)
}

/// Creates a project on an operator's order (`wharf admin project create`), `owner_id` its
/// Owner, with the journal rows of a first upload. The new-name rules are waived on purpose
/// (a vetted copy of a public package may clash with a stdlib module or look like another
/// project); only the normalized name must be free: `None`, nothing written, if it is taken.
pub async fn create_project_by_operator<Q: Queries + ?Sized>(
    queries: &mut Q,
    project: &ProjectTarget,
    owner_id: &str,
    submitted_by: &str,
    now_micros: i64,
) -> Result<Option<String>, IndexError> {
    if queries.project(&project.normalized_name).await?.is_some() {
        return Ok(None);
    }
    queries.begin_writes().await?;
    create_project(queries, project, owner_id, submitted_by, now_micros)
        .await
        .map(Some)
}

/// Yanks or unyanks a release and journals it; `false` (nothing written) if no such release.
pub async fn set_release_yanked<Q: Queries + ?Sized>(
    queries: &mut Q,
    change: &YankChange<'_>,
    now_micros: i64,
) -> Result<bool, IndexError> {
    let Some(release) = queries
        .release_of(change.normalized_name, change.canonical_version)
        .await?
    else {
        return Ok(false);
    };
    queries.begin_writes().await?;
    queries.set_yanked(&release.id, change.yank_reason).await?;
    let action = if change.yank_reason.is_some() {
        "yank release"
    } else {
        "unyank release"
    };
    let serial = queries
        .append_journal(&JournalEntry {
            project_name: &release.project_name,
            version: Some(change.canonical_version),
            action,
            submitted_by: change.submitted_by,
            now_micros,
        })
        .await?;
    queries
        .update_project_serial(&release.project_id, serial, 0)
        .await?;
    Ok(true)
}

/// Turns a pending publisher into an active one: creates its project with the registering
/// user as owner, attaches the publisher, and drops other users' pending publishers for the
/// same (ultranormalized) name. If the project exists already, the pending publisher is
/// deleted instead; if the publisher is no longer pending (a concurrent exchange won),
/// [`ReifyResult::NoLongerPending`] and nothing is written.
pub async fn reify_pending_publisher<Q: Queries + ?Sized>(
    queries: &mut Q,
    publisher_id: &str,
    project: &ProjectTarget,
    now_micros: i64,
) -> Result<ReifyResult, IndexError> {
    // The look-alike lock comes before the journal lock, as in `commit_upload`.
    queries
        .lock_similar_names(&project.ultranormalized_name)
        .await?;
    // Reifying deletes other users' pending publishers: it is serialized as a whole, so the
    // loser of a race sees the winner's writes here.
    queries.begin_writes().await?;
    let Some((owner_id, owner_name)) = queries.pending_publisher_owner(publisher_id).await? else {
        return Ok(ReifyResult::NoLongerPending);
    };
    if queries.project(&project.normalized_name).await?.is_some() {
        queries.delete_publisher_row(publisher_id).await?;
        return Ok(ReifyResult::ProjectExists);
    }
    if lookalike_exists(queries, project).await? {
        // A look-alike project was created since the verifier's early check.
        return Ok(ReifyResult::NameTooSimilar);
    }
    let project_id = create_project(queries, project, &owner_id, &owner_name, now_micros).await?;
    queries
        .activate_publisher(publisher_id, &project_id)
        .await?;
    // Other users' pending publishers for a look-alike name can never succeed now.
    queries
        .delete_lookalike_pending_publishers(&project.ultranormalized_name, &owner_id)
        .await?;
    Ok(ReifyResult::Created { project_id })
}

/// Records a trusted-publishing exchange: claims the token id (when given), stores the
/// minted token and its audit event. `false` if the id was claimed before; the caller then
/// rolls back, so nothing is stored.
pub async fn record_minted_token<Q: Queries + ?Sized>(
    queries: &mut Q,
    claim: Option<&JtiClaim>,
    token: &NewToken,
    audit_kind: &str,
    audit_detail: &str,
    now_micros: i64,
) -> Result<bool, IndexError> {
    if let Some(claim) = claim
        && !queries.claim_jti(claim).await?
    {
        return Ok(false);
    }
    queries.insert_token(token).await?;
    queries
        .record_audit(audit_kind, audit_detail, now_micros)
        .await?;
    Ok(true)
}
