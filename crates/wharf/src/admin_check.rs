//! `wharf admin check`: does the store hold exactly what the index says it holds? Every file
//! row has its object (and its `.metadata` companion where the row records one), with the
//! recorded size, SHA-256 and BLAKE2b-256; every object under `packages/` has a row.

#![allow(clippy::print_stdout)] // The admin CLI's output is its stdout.

use std::collections::HashSet;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use wharf_archive::MultiHasher;
use wharf_blob::{BlobStore, ObjectPath};
use wharf_index::{FileRecord, Index};

/// One thing wrong between the index and the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The object key (`packages/…`).
    pub(crate) key: String,
    /// What is wrong, in a sentence.
    pub(crate) what: String,
}

/// What a check found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// File rows checked.
    pub(crate) files: usize,
    /// Objects read and hashed (files and `.metadata`).
    pub(crate) objects: usize,
    /// Bytes read and hashed.
    pub(crate) bytes: u64,
    pub(crate) problems: Vec<Problem>,
}

/// Every file row of the index.
pub(crate) async fn all_files(index: &dyn Index) -> anyhow::Result<Vec<FileRecord>> {
    let mut files = Vec::new();
    for project in index
        .list_projects()
        .await
        .context("failed to list projects")?
    {
        files.extend(
            index
                .project_files(&project.id)
                .await
                .with_context(|| format!("failed to list the files of {}", project.name))?,
        );
    }
    Ok(files)
}

/// What an object should be.
struct Expected<'a> {
    size: Option<i64>,
    sha256: &'a str,
    blake2_256: Option<&'a str>,
}

/// Streams an object through the hashers and records in `report` how it differs from
/// `expected` (or that it is missing).
async fn check_object(
    blobs: &BlobStore,
    key: &ObjectPath,
    expected: &Expected<'_>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut problem = |what: String| {
        report.problems.push(Problem {
            key: key.to_string(),
            what,
        });
    };
    let Some(result) = blobs
        .get(key, None)
        .await
        .with_context(|| format!("failed to read {key}"))?
    else {
        problem("missing from the store".to_owned());
        return Ok(());
    };
    let mut stream = BlobStore::into_stream(result);
    let mut hasher = MultiHasher::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk.with_context(|| format!("failed to read {key}"))?);
    }
    let size = hasher.bytes_hashed();
    let digests = hasher.finalize();
    report.objects += 1;
    report.bytes += size;
    if let Some(recorded) = expected.size
        && u64::try_from(recorded).ok() != Some(size)
    {
        problem(format!("size {size} bytes, the index records {recorded}"));
    }
    if !digests.sha256_hex().eq_ignore_ascii_case(expected.sha256) {
        problem(format!(
            "sha256 {}, the index records {}",
            digests.sha256_hex(),
            expected.sha256
        ));
    }
    if let Some(recorded) = expected.blake2_256
        && !digests.blake2_256_hex().eq_ignore_ascii_case(recorded)
    {
        problem(format!(
            "blake2b-256 {}, the index records {recorded}",
            digests.blake2_256_hex()
        ));
    }
    Ok(())
}

/// Checks `files` against the store. An object without a row in `files` is looked up again
/// in `recheck` (the index read once more) before it is reported, so a file a running
/// registry committed during the check is not reported as stray.
pub(crate) async fn check_store<F, Fut>(
    files: &[FileRecord],
    blobs: &BlobStore,
    recheck: F,
) -> anyhow::Result<Report>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<FileRecord>>>,
{
    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    let mut known = HashSet::new();
    for file in files {
        let key = BlobStore::package_key(&file.path)?;
        known.insert(key.to_string());
        let expected = Expected {
            size: Some(file.size),
            sha256: &file.sha256_digest,
            blake2_256: Some(&file.blake2_256_digest),
        };
        check_object(blobs, &key, &expected, &mut report).await?;
        if let Some(sha256) = &file.metadata_sha256 {
            let key = BlobStore::metadata_key(&file.path)?;
            known.insert(key.to_string());
            let expected = Expected {
                size: None,
                sha256,
                blake2_256: file.metadata_blake2_256.as_deref(),
            };
            check_object(blobs, &key, &expected, &mut report).await?;
        }
    }
    let mut strays: Vec<String> = blobs
        .list_packages()
        .map_ok(|meta| meta.location.to_string())
        .try_filter(|key| std::future::ready(!known.contains(key)))
        .try_collect()
        .await
        .context("failed to list the stored files")?;
    if !strays.is_empty() {
        let mut now_known = HashSet::new();
        for file in recheck().await? {
            now_known.insert(BlobStore::package_key(&file.path)?.to_string());
            if file.metadata_sha256.is_some() {
                now_known.insert(BlobStore::metadata_key(&file.path)?.to_string());
            }
        }
        strays.retain(|key| !now_known.contains(key));
        strays.sort();
        report
            .problems
            .extend(strays.into_iter().map(|key| Problem {
                key,
                what: "stored, but no file in the index names it".to_owned(),
            }));
    }
    Ok(report)
}

/// `wharf admin check`: prints each problem and a summary; fails if there is any problem.
pub(crate) async fn run(index: &dyn Index, blobs: &BlobStore) -> anyhow::Result<()> {
    let files = all_files(index).await?;
    let report = check_store(&files, blobs, || all_files(index)).await?;
    for problem in &report.problems {
        println!("PROBLEM {}: {}", problem.key, problem.what);
    }
    println!(
        "checked {} file(s): {} object(s), {} byte(s) hashed; {} problem(s)",
        report.files,
        report.objects,
        report.bytes,
        report.problems.len()
    );
    if !report.problems.is_empty() {
        anyhow::bail!(
            "the index and the store disagree: {} problem(s)",
            report.problems.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(filename: &str, bytes: &[u8], metadata: Option<&[u8]>) -> FileRecord {
        let digests = wharf_archive::digest_bytes(bytes);
        let metadata = metadata.map(wharf_archive::digest_bytes);
        FileRecord {
            id: filename.to_owned(),
            release_id: "r".to_owned(),
            version: "1.0".to_owned(),
            filename: filename.to_owned(),
            packagetype: "bdist_wheel".to_owned(),
            python_version: "py3".to_owned(),
            size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            md5_digest: digests.md5_hex(),
            sha256_digest: digests.sha256_hex(),
            blake2_256_digest: digests.blake2_256_hex(),
            path: digests.storage_path(filename),
            upload_time: 0,
            comment_text: None,
            requires_python: None,
            metadata_sha256: metadata.map(|digests| digests.sha256_hex()),
            metadata_blake2_256: metadata.map(|digests| digests.blake2_256_hex()),
            yanked: false,
            yanked_reason: String::new(),
            serial: 1,
        }
    }

    /// A local store holding two files, one with its `.metadata`, and their rows.
    async fn healthy() -> (tempfile::TempDir, BlobStore, Vec<FileRecord>) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(&dir.path().join("files")).unwrap();
        let wheel = record("a-1.0-py3-none-any.whl", b"wheel bytes", Some(b"Metadata"));
        let sdist = record("a-1.0.tar.gz", b"sdist bytes", None);
        let put = |key: ObjectPath, bytes: &'static [u8]| {
            let blobs = blobs.clone();
            async move { blobs.put(&key, Bytes::from_static(bytes)).await.unwrap() }
        };
        put(BlobStore::package_key(&wheel.path).unwrap(), b"wheel bytes").await;
        put(BlobStore::metadata_key(&wheel.path).unwrap(), b"Metadata").await;
        put(BlobStore::package_key(&sdist.path).unwrap(), b"sdist bytes").await;
        (dir, blobs, vec![wheel, sdist])
    }

    async fn check(files: &[FileRecord], blobs: &BlobStore) -> Report {
        let again = files.to_vec();
        check_store(files, blobs, || async { Ok(again) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_healthy_store_has_no_problem() {
        let (_dir, blobs, files) = healthy().await;
        let report = check(&files, &blobs).await;
        assert_eq!(report.problems, []);
        assert_eq!((report.files, report.objects), (2, 3));
    }

    #[tokio::test]
    async fn a_missing_object_and_a_missing_metadata_are_named() {
        let (_dir, blobs, files) = healthy().await;
        let sdist = BlobStore::package_key(&files[1].path).unwrap();
        let metadata = BlobStore::metadata_key(&files[0].path).unwrap();
        blobs.delete(&sdist).await.unwrap();
        blobs.delete(&metadata).await.unwrap();
        let report = check(&files, &blobs).await;
        let mut problems: Vec<_> = report
            .problems
            .iter()
            .map(|problem| (problem.key.clone(), problem.what.clone()))
            .collect();
        problems.sort();
        let mut expected = vec![
            (sdist.to_string(), "missing from the store".to_owned()),
            (metadata.to_string(), "missing from the store".to_owned()),
        ];
        expected.sort();
        assert_eq!(problems, expected);
    }

    #[tokio::test]
    async fn altered_bytes_are_caught_by_size_and_digests() {
        let (dir, blobs, files) = healthy().await;
        let key = BlobStore::package_key(&files[1].path).unwrap();
        // Same length, other bytes: only the digests can tell.
        std::fs::write(dir.path().join("files").join(key.as_ref()), b"sdist bytez").unwrap();
        let report = check(&files, &blobs).await;
        let whats: Vec<_> = report.problems.iter().map(|p| p.what.as_str()).collect();
        assert_eq!(whats.len(), 2, "{whats:?}");
        assert!(whats[0].starts_with("sha256 "), "{whats:?}");
        assert!(whats[1].starts_with("blake2b-256 "), "{whats:?}");
        assert!(report.problems.iter().all(|p| p.key == key.to_string()));
        // A truncated file is also caught by its size.
        std::fs::write(dir.path().join("files").join(key.as_ref()), b"sdist").unwrap();
        let report = check(&files, &blobs).await;
        assert!(
            report.problems[0]
                .what
                .starts_with("size 5 bytes, the index records 11")
        );
    }

    #[tokio::test]
    async fn an_object_without_a_row_is_reported_unless_it_was_committed_meanwhile() {
        let (_dir, blobs, files) = healthy().await;
        let stray = record("b-2.0.tar.gz", b"stray", None);
        let key = BlobStore::package_key(&stray.path).unwrap();
        blobs.put(&key, Bytes::from_static(b"stray")).await.unwrap();
        let report = check(&files, &blobs).await;
        assert_eq!(
            report.problems,
            [Problem {
                key: key.to_string(),
                what: "stored, but no file in the index names it".to_owned(),
            }]
        );
        // The same object, committed to the index while the check ran: no problem.
        let mut later = files.clone();
        later.push(stray);
        let report = check_store(&files, &blobs, || async { Ok(later) })
            .await
            .unwrap();
        assert_eq!(report.problems, []);
    }
}
