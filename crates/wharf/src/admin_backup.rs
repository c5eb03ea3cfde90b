//! `wharf admin backup DIR` and `wharf admin restore DIR`: the embedded mode's snapshot of
//! its SQLite index, the stored files that snapshot references and the token key file.
//!
//! A backup is a directory: `index.sqlite3` (`VACUUM INTO`, consistent while `serve`
//! writes), `files/packages/…` (each object a row of the snapshot names, copied and then
//! checked against the row) and `token-key`. It is written to a `.<name>.partial-…`
//! sibling and renamed at the end, so a killed backup never looks complete.

#![allow(clippy::print_stdout)] // The admin CLI's output is its stdout.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use wharf_blob::{BlobStore, ObjectPath};
use wharf_index_sqlite::SqliteIndex;

use crate::IndexArgs;
use crate::admin_check::{all_files, check_store};

/// The index file in a data directory and in a backup.
const INDEX_FILE: &str = "index.sqlite3";
/// The stored files in a data directory and in a backup.
const FILES_DIR: &str = "files";
/// The token key file in a data directory and in a backup.
const TOKEN_KEY_FILE: &str = "token-key";
/// The lock `wharf serve` holds on its data directory while it runs.
const LOCK_FILE: &str = "serve.lock";

/// An exclusive lock on a data directory, held by `wharf serve` (and by `restore` while it
/// writes), released when dropped or when the process dies.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

/// Takes the data directory's lock (creating the directory if missing); fails if a running
/// `wharf serve` (or a restore) holds it.
pub(crate) fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create the data directory {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the data directory {} is in use: a wharf serve (or a restore) runs on it ({} is \
             locked); stop it first",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("failed to lock {}", path.display()))
        }
    }
}

/// The SQLite index file these flags name; PostgreSQL is backed up with its own tools.
fn sqlite_index_path(index: &IndexArgs) -> anyhow::Result<PathBuf> {
    match &index.database_url {
        None => Ok(index.data_dir.join(INDEX_FILE)),
        Some(url) => match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(path) => Ok(PathBuf::from(path.split('?').next().unwrap_or(path))),
            None => anyhow::bail!(
                "backup and restore cover the embedded mode's SQLite index; back up a \
                 PostgreSQL index with pg_dump or point-in-time recovery, then the bucket \
                 (docs/operations.md)"
            ),
        },
    }
}

/// Streams one object from `from` to `to` under the same key; returns its size.
async fn copy_object(from: &BlobStore, to: &BlobStore, key: &ObjectPath) -> anyhow::Result<u64> {
    let Some(result) = from
        .get(key, None)
        .await
        .with_context(|| format!("failed to read {key}"))?
    else {
        anyhow::bail!("{key} is in the index but missing from the store (see `wharf admin check`)");
    };
    let mut stream = BlobStore::into_stream(result);
    let mut write = to.start_write(key.clone());
    let mut size = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = write.abort().await;
                return Err(error).with_context(|| format!("failed to read {key}"));
            }
        };
        size += chunk.len() as u64;
        write
            .write(chunk)
            .await
            .with_context(|| format!("failed to write {key}"))?;
    }
    write
        .finish()
        .await
        .with_context(|| format!("failed to write {key}"))?;
    Ok(size)
}

/// Copies a file that may hold a secret, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut source =
        File::open(from).with_context(|| format!("failed to read {}", from.display()))?;
    let mut target = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("failed to create {}", to.display()))?;
    std::io::copy(&mut source, &mut target)
        .and_then(|_| target.sync_all())
        .with_context(|| format!("failed to copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// `wharf admin backup DIR`.
pub(crate) async fn backup(
    index: &IndexArgs,
    blobs: &BlobStore,
    token_key_file: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let database = sqlite_index_path(index)?;
    if !database.is_file() {
        anyhow::bail!("no index database at {}", database.display());
    }
    if dir.exists() {
        anyhow::bail!("{} exists: back up into a new directory", dir.display());
    }
    let name = dir
        .file_name()
        .with_context(|| format!("{} names no directory", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("failed to create {}", parent.display()))?;
    let partial = parent.join(format!(".{name}.partial-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&partial)
        .with_context(|| format!("failed to create {}", partial.display()))?;
    let result = write_backup(&database, blobs, token_key_file, &partial).await;
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, dir).with_context(|| {
                format!(
                    "failed to rename {} to {}",
                    partial.display(),
                    dir.display()
                )
            })?;
            println!("{summary}");
            println!(
                "the backup holds the token key file ({TOKEN_KEY_FILE}), which seals every API \
                 token's root key: without it the tokens in the backup cannot be verified, and \
                 with it whoever holds {} can forge every token; keep it as secret as the \
                 tokens",
                dir.display()
            );
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(error)
        }
    }
}

/// Writes the backup into `out`; returns a one-line summary.
async fn write_backup(
    database: &Path,
    blobs: &BlobStore,
    token_key_file: &Path,
    out: &Path,
) -> anyhow::Result<String> {
    let snapshot_path = out.join(INDEX_FILE);
    let live = SqliteIndex::open(database)
        .await
        .with_context(|| format!("failed to open the index database {}", database.display()))?;
    let snapshot = live.snapshot_into(&snapshot_path).await;
    live.close().await;
    snapshot.context("failed to snapshot the index database")?;
    let snapshot = SqliteIndex::open(&snapshot_path)
        .await
        .context("failed to open the snapshot")?;
    let files = all_files(&snapshot).await;
    snapshot.close().await;
    let files = files?;

    let copies = BlobStore::local(&out.join(FILES_DIR))?;
    let mut bytes = 0;
    let mut objects = 0;
    for file in &files {
        let mut keys = vec![BlobStore::package_key(&file.path)?];
        if file.metadata_sha256.is_some() {
            keys.push(BlobStore::metadata_key(&file.path)?);
        }
        for key in keys {
            bytes += copy_object(blobs, &copies, &key).await?;
            objects += 1;
        }
    }
    // The copies are checked against the snapshot's rows, so a backup that completes holds
    // the very bytes the index records.
    let copied = files.clone();
    let report = check_store(&files, &copies, || async { Ok(copied) }).await?;
    if let Some(problem) = report.problems.first() {
        anyhow::bail!(
            "a copied file differs from its index row: {}: {}",
            problem.key,
            problem.what
        );
    }
    if token_key_file.is_file() {
        copy_private(token_key_file, &out.join(TOKEN_KEY_FILE))?;
    } else {
        println!(
            "warning: no token key file at {}: the API tokens in this backup cannot be \
             verified after a restore",
            token_key_file.display()
        );
    }
    Ok(format!(
        "backed up {} file(s): {objects} object(s), {bytes} byte(s), checked",
        files.len()
    ))
}

/// `wharf admin restore DIR --data-dir D [--force]`.
pub(crate) async fn restore(index: &IndexArgs, from: &Path, force: bool) -> anyhow::Result<()> {
    if index.database_url.is_some() {
        anyhow::bail!(
            "restore writes an embedded data directory (--data-dir); a PostgreSQL index is \
             restored with its own tools (docs/operations.md)"
        );
    }
    let backup_index = from.join(INDEX_FILE);
    if !backup_index.is_file() {
        anyhow::bail!("{} is not a backup: it has no {INDEX_FILE}", from.display());
    }
    let data_dir = &index.data_dir;
    let _lock = lock_data_dir(data_dir)?;
    let present: Vec<String> = std::fs::read_dir(data_dir)
        .with_context(|| format!("failed to read {}", data_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != LOCK_FILE)
        .collect();
    if !present.is_empty() {
        if !force {
            anyhow::bail!(
                "{} is not empty ({}): restore into an empty data directory, or pass --force \
                 to replace its index, files and token key",
                data_dir.display(),
                present.join(", ")
            );
        }
        for name in [
            INDEX_FILE,
            "index.sqlite3-wal",
            "index.sqlite3-shm",
            TOKEN_KEY_FILE,
        ] {
            let path = data_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("failed to remove {}", path.display()))?;
            }
        }
        let files = data_dir.join(FILES_DIR);
        if files.exists() {
            std::fs::remove_dir_all(&files)
                .with_context(|| format!("failed to remove {}", files.display()))?;
        }
    }
    // The files first and the index last: a restore killed midway leaves no index that
    // names files it lacks.
    let source = BlobStore::local(&from.join(FILES_DIR))?;
    let target = BlobStore::local(&data_dir.join(FILES_DIR))?;
    let keys: Vec<ObjectPath> = source
        .list_packages()
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .context("failed to list the backup's files")?;
    for key in &keys {
        copy_object(&source, &target, key).await?;
    }
    let key_file = from.join(TOKEN_KEY_FILE);
    if key_file.is_file() {
        copy_private(&key_file, &data_dir.join(TOKEN_KEY_FILE))?;
    } else {
        println!(
            "warning: the backup has no {TOKEN_KEY_FILE}: its API tokens cannot be verified; \
             create new ones"
        );
    }
    let staged = data_dir.join(".index.sqlite3.restoring");
    std::fs::copy(&backup_index, &staged)
        .with_context(|| format!("failed to copy {}", backup_index.display()))?;
    File::open(&staged)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("failed to sync {}", staged.display()))?;
    std::fs::rename(&staged, data_dir.join(INDEX_FILE))
        .with_context(|| format!("failed to rename {}", staged.display()))?;

    let restored = SqliteIndex::open(&data_dir.join(INDEX_FILE))
        .await
        .context("failed to open the restored index")?;
    let files = all_files(&restored).await;
    let report = match files {
        Ok(files) => {
            let again = files.clone();
            check_store(&files, &target, || async { Ok(again) }).await
        }
        Err(error) => Err(error),
    };
    restored.close().await;
    let report = report?;
    for problem in &report.problems {
        println!("PROBLEM {}: {}", problem.key, problem.what);
    }
    if !report.problems.is_empty() {
        anyhow::bail!(
            "the restored index and files disagree: {} problem(s)",
            report.problems.len()
        );
    }
    println!(
        "restored {} file(s) ({} object(s), {} byte(s), checked) into {}",
        report.files,
        report.objects,
        report.bytes,
        data_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_data_dir_is_refused_until_the_lock_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = lock_data_dir(&data).unwrap();
        let refused = lock_data_dir(&data).unwrap_err().to_string();
        assert!(refused.contains("is in use"), "{refused}");
        drop(held);
        lock_data_dir(&data).unwrap();
    }

    #[tokio::test]
    async fn restore_refuses_a_directory_that_is_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let index = IndexArgs {
            data_dir: dir.path().join("data"),
            database_url: None,
        };
        let refused = restore(&index, dir.path(), false).await.unwrap_err();
        assert!(refused.to_string().contains("is not a backup"), "{refused}");
        assert!(!index.data_dir.exists());
    }

    #[test]
    fn a_postgres_index_is_pointed_at_its_own_tools() {
        let index = IndexArgs {
            data_dir: PathBuf::from("unused"),
            database_url: Some("postgres://localhost/wharf".to_owned()),
        };
        let refused = sqlite_index_path(&index).unwrap_err().to_string();
        assert!(refused.contains("pg_dump"), "{refused}");
        let sqlite = IndexArgs {
            database_url: Some("sqlite:///srv/wharf/index.sqlite3?mode=rwc".to_owned()),
            ..index
        };
        assert_eq!(
            sqlite_index_path(&sqlite).unwrap(),
            PathBuf::from("/srv/wharf/index.sqlite3")
        );
    }
}
