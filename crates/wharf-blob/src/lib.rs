//! Wharf's object storage: where staged uploads and published distributions live.
//!
//! Keys: `staging/<upload id>` for bytes a gateway received and a worker has not processed yet,
//! `packages/<b2[0:2]>/<b2[2:4]>/<b2[4:]>/<filename>` for published files (PyPI's layout, so a
//! path names its content) and the same path plus `.metadata` for a wheel's PEP 658 metadata.
//! Any `object_store` backend works; the embedded mode uses a local directory.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};

pub use object_store::path::Path as ObjectPath;
pub use object_store::{GetRange, GetResult, GetResultPayload, ObjectMeta};

const STAGING_PREFIX: &str = "staging";
const PACKAGES_PREFIX: &str = "packages";
/// Part size of streamed writes. S3 needs at least 5 MiB per multipart part.
const WRITE_PART_BYTES: usize = 8 * 1024 * 1024;
/// How many bytes a [`BlobReader`] fetches per range request.
const READ_CHUNK_BYTES: u64 = 1024 * 1024;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The object store failed or could not be reached.
    #[error("object store error")]
    Store(#[from] object_store::Error),
    /// A key could not be built from the given input.
    #[error("invalid object key: {0}")]
    InvalidKey(String),
}

impl BlobError {
    /// Tells whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::Store(object_store::Error::NotFound { .. }))
    }
}

/// S3 settings that override the `AWS_*` environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint of an S3-compatible server (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`.
    pub path_style: bool,
}

/// The object store with Wharf's key layout.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store: its in-progress parts are files the store never lists
    /// (see [`BlobStore::purge_staging`]).
    local_root: Option<Arc<std::path::PathBuf>>,
}

impl BlobStore {
    /// A store in a local directory (created if missing). Writes are fsynced, so a stored
    /// object survives a power cut once the call returned.
    pub fn local(dir: &std::path::Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            BlobError::InvalidKey(format!("cannot create {}: {error}", dir.display()))
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(BlobStore {
            local_root: Some(Arc::new(dir.to_path_buf())),
            ..BlobStore::from_store(Arc::new(store))
        })
    }

    /// A store from a URL: `file:///absolute/dir`, `memory://`, or `s3://bucket[/prefix]`.
    /// S3 settings (credentials, region, endpoint, plain HTTP for a local server) come from
    /// the standard `AWS_*` environment variables, overridden by `s3`.
    pub fn from_url(url: &str, s3: &S3Options) -> Result<BlobStore, BlobError> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(BlobError::InvalidKey(format!(
                    "a file:// store needs an absolute path, got '{url}'"
                )));
            }
            return BlobStore::local(std::path::Path::new(path));
        }
        if url == "memory://" || url == "memory:" {
            return Ok(BlobStore::memory());
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BlobError::InvalidKey(format!("no bucket in '{url}'")));
            }
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if s3.allow_http {
                builder = builder.with_allow_http(true);
            }
            if s3.path_style {
                builder = builder.with_virtual_hosted_style_request(false);
            }
            let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                return Ok(BlobStore::from_store(store));
            }
            let prefixed = object_store::prefix::PrefixStore::new(store, Path::from(prefix));
            return Ok(BlobStore::from_store(Arc::new(prefixed)));
        }
        Err(BlobError::InvalidKey(format!(
            "unsupported store URL '{url}': use file:///dir, memory:// or s3://bucket[/prefix]"
        )))
    }

    /// A store in memory (tests).
    pub fn memory() -> BlobStore {
        BlobStore::from_store(Arc::new(InMemory::new()))
    }

    /// Wraps any `object_store` backend.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> BlobStore {
        BlobStore {
            store,
            local_root: None,
        }
    }

    /// The key of an upload's staged bytes.
    pub fn staging_key(upload_id: &str) -> Result<Path, BlobError> {
        Path::parse(format!("{STAGING_PREFIX}/{upload_id}"))
            .map_err(|error| BlobError::InvalidKey(error.to_string()))
    }

    /// The key of a published file, from its storage path (`ab/cd/…/filename`).
    pub fn package_key(storage_path: &str) -> Result<Path, BlobError> {
        Path::parse(format!("{PACKAGES_PREFIX}/{storage_path}"))
            .map_err(|error| BlobError::InvalidKey(error.to_string()))
    }

    /// The key of a wheel's PEP 658 metadata file.
    pub fn metadata_key(storage_path: &str) -> Result<Path, BlobError> {
        Path::parse(format!("{PACKAGES_PREFIX}/{storage_path}.metadata"))
            .map_err(|error| BlobError::InvalidKey(error.to_string()))
    }

    /// Checks that the store answers (a missing object is a fine answer).
    pub async fn ping(&self) -> Result<(), BlobError> {
        match self.store.head(&Path::from("wharf-readiness-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Starts a streamed write; nothing is visible under `key` until
    /// [`StreamingWrite::finish`] returns.
    pub fn start_write(&self, key: Path) -> StreamingWrite {
        let writer = BufWriter::with_capacity(Arc::clone(&self.store), key, WRITE_PART_BYTES)
            .with_max_concurrency(2);
        StreamingWrite { writer }
    }

    /// Stores a small object in one request.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), BlobError> {
        self.store.put(key, bytes.into()).await?;
        Ok(())
    }

    /// The object's size and tag, or `None` if it does not exist.
    pub async fn head(&self, key: &Path) -> Result<Option<ObjectMeta>, BlobError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Opens an object (optionally a byte range of it) for streaming, or `None` if it does not
    /// exist.
    pub async fn get(
        &self,
        key: &Path,
        range: Option<GetRange>,
    ) -> Result<Option<GetResult>, BlobError> {
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        match self.store.get_opts(key, options).await {
            Ok(result) => Ok(Some(result)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The bytes of a [`BlobStore::get`] result as a stream. A local file is read in
    /// 256 KiB chunks: `object_store` reads it in 8 KiB ones, each a trip to the blocking
    /// pool, which made a 10 MB download cost 1,280 of them.
    pub fn into_stream(result: GetResult) -> BoxStream<'static, io::Result<Bytes>> {
        const FILE_CHUNK: usize = 256 * 1024;
        let range = result.range.clone();
        match result.payload {
            GetResultPayload::File(file, _path) => futures::stream::once(async move {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut file = tokio::fs::File::from_std(file);
                file.seek(SeekFrom::Start(range.start)).await?;
                let length = range.end - range.start;
                Ok::<_, io::Error>(tokio_util::io::ReaderStream::with_capacity(
                    file.take(length),
                    FILE_CHUNK,
                ))
            })
            .try_flatten()
            .boxed(),
            GetResultPayload::Stream(stream) => stream.map_err(io::Error::other).boxed(),
        }
    }

    /// Copies an object to a content-addressed key (same key, same bytes), so an object
    /// already there is kept as it is.
    ///
    /// Uses the store's create-only copy where it has one: the local store then hard-links
    /// straight to the key. Its overwriting copy links to a temporary `<key>#<n>` and renames
    /// that onto the key, and a rename onto another link of the same file is a no-op under
    /// POSIX, which left the temporary file behind whenever one staged object was copied twice
    /// (a redelivered upload, a retry after a failed commit).
    pub async fn copy(&self, from: &Path, to: &Path) -> Result<(), BlobError> {
        match self.store.copy_if_not_exists(from, to).await {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => {
                self.store.copy(from, to).await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Every published object (files and their `.metadata`), in no particular order; the
    /// in-progress parts of a local store's writes are not listed.
    pub fn list_packages(&self) -> BoxStream<'static, Result<ObjectMeta, BlobError>> {
        self.store
            .list(Some(&Path::from(PACKAGES_PREFIX)))
            .map_err(BlobError::from)
            .boxed()
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &Path) -> Result<(), BlobError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes every staged upload, and the in-progress parts of staging writes a crash cut
    /// short; returns how many. Only safe when no upload is in flight (the embedded mode
    /// calls it at start-up, before it accepts requests).
    ///
    /// A local store writes a streamed object to `<key>#<n>` and renames it onto the key when
    /// the write completes; a killed process leaves that part behind, and the store's listing
    /// never shows it, so the parts are found on disk. On S3 an interrupted write is an
    /// incomplete multipart upload, which `object_store` can neither list nor abort without
    /// its id: the bucket's lifecycle rule (`AbortIncompleteMultipartUpload`) removes those.
    pub async fn purge_staging(&self) -> Result<usize, BlobError> {
        let prefix = Path::from(STAGING_PREFIX);
        let mut listing = self.store.list(Some(&prefix));
        let mut purged = 0;
        while let Some(meta) = listing.next().await {
            self.delete(&meta?.location).await?;
            purged += 1;
        }
        Ok(purged + self.purge_local_parts(None).await?)
    }

    /// Deletes staged uploads older than `max_age`; returns how many. A staged object that
    /// old has no client waiting for it any more (the gateway gave up and answered 503), so
    /// this only clears what a crash between staging and queueing left behind.
    pub async fn purge_staging_older_than(&self, max_age: Duration) -> Result<usize, BlobError> {
        let prefix = Path::from(STAGING_PREFIX);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        let cutoff = now.saturating_sub(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        let mut listing = self.store.list(Some(&prefix));
        let mut purged = 0;
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if meta.last_modified.timestamp() < cutoff {
                self.delete(&meta.location).await?;
                purged += 1;
            }
        }
        // A part still being written is modified with every chunk, so only an abandoned one
        // is this old.
        let cutoff =
            std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(cutoff).unwrap_or(0));
        Ok(purged + self.purge_local_parts(Some(cutoff)).await?)
    }

    /// Deletes the in-progress parts (`<key>#<digits>`, the files a local store hides from
    /// its listing) below a local store's `staging/`, those last modified before `cutoff`
    /// (all of them without one); returns how many. Nothing to do for other stores.
    async fn purge_local_parts(
        &self,
        cutoff: Option<std::time::SystemTime>,
    ) -> Result<usize, BlobError> {
        let Some(root) = &self.local_root else {
            return Ok(0);
        };
        let staging = root.join(STAGING_PREFIX);
        tokio::task::spawn_blocking(move || purge_parts(&staging, cutoff))
            .await
            .unwrap_or_else(|error| Err(io::Error::other(error)))
            .map_err(|error| {
                BlobError::Store(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(error),
                })
            })
    }

    /// A blocking `Read + Seek` view of an object of `size` bytes, fetched by ranges. Use it
    /// only on a blocking thread (`spawn_blocking`); `runtime` is the Tokio runtime to run
    /// the range requests on.
    pub fn blocking_reader(
        &self,
        key: Path,
        size: u64,
        runtime: tokio::runtime::Handle,
    ) -> BlobReader {
        BlobReader {
            store: Arc::clone(&self.store),
            key,
            size,
            position: 0,
            buffer: Bytes::new(),
            buffer_start: 0,
            runtime,
        }
    }
}

/// Whether a file name is a local store's in-progress part: `<name>#<digits>`, by the rule
/// `object_store`'s local store hides files from its listing with (so no object is counted
/// twice).
fn is_part_name(name: &str) -> bool {
    name.split_once('#').is_some_and(|(_, suffix)| {
        !suffix.is_empty() && suffix.bytes().all(|byte| byte.is_ascii_digit())
    })
}

/// Removes the part files below `dir` modified before `cutoff` (all without one).
fn purge_parts(dir: &std::path::Path, cutoff: Option<std::time::SystemTime>) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut purged = 0;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            purged += purge_parts(&entry.path(), cutoff)?;
            continue;
        }
        if !kind.is_file() || !entry.file_name().to_str().is_some_and(is_part_name) {
            continue;
        }
        if let Some(cutoff) = cutoff
            && entry.metadata()?.modified()? >= cutoff
        {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => purged += 1,
            // Completed (renamed) or aborted meanwhile.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(purged)
}

/// A streamed write in progress (see [`BlobStore::start_write`]).
#[derive(Debug)]
pub struct StreamingWrite {
    writer: BufWriter,
}

impl StreamingWrite {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.writer.put(bytes).await?;
        Ok(())
    }

    /// Completes the write; the object becomes visible atomically.
    pub async fn finish(mut self) -> Result<(), BlobError> {
        use tokio::io::AsyncWriteExt;
        self.writer.shutdown().await.map_err(|error| {
            BlobError::Store(object_store::Error::Generic {
                store: "BufWriter",
                source: Box::new(error),
            })
        })
    }

    /// Abandons the write; nothing becomes visible.
    pub async fn abort(mut self) -> Result<(), BlobError> {
        self.writer.abort().await?;
        Ok(())
    }
}

/// Blocking, seekable reads of one object through range requests (see
/// [`BlobStore::blocking_reader`]). Keeps at most one chunk in memory.
#[derive(Debug)]
pub struct BlobReader {
    store: Arc<dyn ObjectStore>,
    key: Path,
    size: u64,
    position: u64,
    buffer: Bytes,
    buffer_start: u64,
    runtime: tokio::runtime::Handle,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.position >= self.size {
            return Ok(0);
        }
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if self.position < self.buffer_start || self.position >= buffer_end {
            let end = self.size.min(self.position + READ_CHUNK_BYTES);
            let range = self.position..end;
            let fetched = self
                .runtime
                .block_on(self.store.get_range(&self.key, range))
                .map_err(io::Error::other)?;
            if fetched.is_empty() {
                return Ok(0);
            }
            self.buffer = fetched;
            self.buffer_start = self.position;
        }
        let offset =
            usize::try_from(self.position - self.buffer_start).map_err(io::Error::other)?;
        let available = &self.buffer[offset..];
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let position = match target {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let position = position.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the object",
            )
        })?;
        self.position = position;
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_write_then_ranged_blocking_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::local(dir.path()).expect("local store");
        let key = BlobStore::staging_key("upload-1").expect("key");
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();

        let mut write = blobs.start_write(key.clone());
        for chunk in content.chunks(700_000) {
            write
                .write(Bytes::copy_from_slice(chunk))
                .await
                .expect("write");
        }
        write.finish().await.expect("finish");
        let meta = blobs.head(&key).await.expect("head").expect("exists");
        assert_eq!(meta.size, content.len() as u64);

        let reader_blobs = blobs.clone();
        let runtime = tokio::runtime::Handle::current();
        let expected = content.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = reader_blobs.blocking_reader(key, meta.size, runtime);
            let mut tail = [0u8; 10];
            reader.seek(SeekFrom::End(-10)).expect("seek");
            reader.read_exact(&mut tail).expect("read tail");
            assert_eq!(&tail, &expected[expected.len() - 10..]);
            reader.seek(SeekFrom::Start(0)).expect("rewind");
            let mut all = Vec::new();
            reader.read_to_end(&mut all).expect("read all");
            assert_eq!(all, expected);
        })
        .await
        .expect("blocking reads");

        assert_eq!(blobs.purge_staging().await.expect("purge"), 1);
        assert!(
            blobs
                .head(&BlobStore::staging_key("upload-1").expect("key"))
                .await
                .expect("head")
                .is_none()
        );
    }

    /// What a gateway killed mid-upload leaves: the local store's in-progress part of the
    /// staging write (`staging/<id>#1`), which the store's listing hides.
    async fn killed_staging_write(blobs: &BlobStore, dir: &std::path::Path, id: &str) -> PathBuf {
        let mut write = blobs.start_write(BlobStore::staging_key(id).expect("key"));
        // More than one part, so the writer has started its multipart upload.
        write
            .write(Bytes::from(vec![7u8; WRITE_PART_BYTES + 1]))
            .await
            .expect("write");
        // A kill runs no destructor: nothing aborts the write.
        std::mem::forget(write);
        let part = dir.join(STAGING_PREFIX).join(format!("{id}#1"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !part.exists() {
            assert!(std::time::Instant::now() < deadline, "no part at {part:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        part
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_staging_removes_the_parts_a_killed_write_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::local(dir.path()).expect("local store");
        let part = killed_staging_write(&blobs, dir.path(), "killed").await;
        // A leaked part of an earlier run, and a finished staged upload beside it.
        std::fs::write(dir.path().join(STAGING_PREFIX).join("older#2"), b"x").expect("part");
        blobs
            .put(
                &BlobStore::staging_key("done").expect("key"),
                Bytes::from_static(b"x"),
            )
            .await
            .expect("put");
        assert_eq!(blobs.purge_staging().await.expect("purge"), 3);
        assert!(!part.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join(STAGING_PREFIX))
            .expect("staging dir")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_age_sweep_removes_abandoned_parts_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::local(dir.path()).expect("local store");
        let abandoned = killed_staging_write(&blobs, dir.path(), "abandoned").await;
        let fresh = dir.path().join(STAGING_PREFIX).join("fresh#1");
        std::fs::write(&fresh, b"x").expect("part");
        assert_eq!(
            blobs
                .purge_staging_older_than(Duration::from_secs(600))
                .await
                .expect("sweep"),
            0
        );
        assert!(abandoned.exists() && fresh.exists());
        // The killed write's part, last written an hour ago.
        std::fs::File::options()
            .write(true)
            .open(&abandoned)
            .expect("open part")
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .expect("set mtime");
        assert_eq!(
            blobs
                .purge_staging_older_than(Duration::from_secs(600))
                .await
                .expect("sweep"),
            1
        );
        assert!(!abandoned.exists());
        assert!(fresh.exists());
    }

    #[test]
    fn part_names() {
        assert!(is_part_name("0b6f#1"));
        // The local store lists this one as an object.
        assert!(!is_part_name("a#b#12"));
        assert!(!is_part_name("upload-1"));
        assert!(!is_part_name("x#"));
        assert!(!is_part_name("x#1a"));
    }

    #[tokio::test]
    async fn only_old_staging_is_swept() {
        let blobs = BlobStore::memory();
        let key = BlobStore::staging_key("fresh").expect("key");
        blobs
            .put(&key, Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert_eq!(
            blobs
                .purge_staging_older_than(Duration::from_secs(600))
                .await
                .expect("sweep"),
            0
        );
        assert!(blobs.head(&key).await.expect("head").is_some());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            blobs
                .purge_staging_older_than(Duration::from_secs(0))
                .await
                .expect("sweep"),
            1
        );
        assert!(blobs.head(&key).await.expect("head").is_none());
    }

    /// Whole objects and ranges stream the same bytes from a local directory (read in large
    /// chunks) and from memory (the store's own stream).
    #[tokio::test]
    async fn get_results_stream_their_bytes_and_ranges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..700_000u32).map(|n| (n % 251) as u8).collect();
        for blobs in [
            BlobStore::local(dir.path()).expect("local"),
            BlobStore::memory(),
        ] {
            let key = BlobStore::package_key("ab/cd/file.whl").expect("key");
            blobs
                .put(&key, Bytes::from(content.clone()))
                .await
                .expect("put");
            for (range, expected) in [
                (None, &content[..]),
                (Some(GetRange::Bounded(5..300_005)), &content[5..300_005]),
                (
                    Some(GetRange::Bounded(699_999..700_000)),
                    &content[699_999..],
                ),
            ] {
                let result = blobs.get(&key, range).await.expect("get").expect("found");
                let chunks: Vec<Bytes> = BlobStore::into_stream(result)
                    .try_collect()
                    .await
                    .expect("stream");
                assert_eq!(chunks.concat(), expected);
            }
        }
    }

    #[tokio::test]
    async fn aborted_write_leaves_nothing() {
        let blobs = BlobStore::memory();
        let key = BlobStore::staging_key("upload-2").expect("key");
        let mut write = blobs.start_write(key.clone());
        write
            .write(Bytes::from_static(b"partial"))
            .await
            .expect("write");
        write.abort().await.expect("abort");
        assert!(blobs.head(&key).await.expect("head").is_none());
    }

    #[tokio::test]
    async fn copying_one_object_twice_leaves_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::local(dir.path()).expect("local store");
        let staged = BlobStore::staging_key("upload-3").expect("key");
        blobs
            .put(&staged, Bytes::from_static(b"wheel bytes"))
            .await
            .expect("put");
        let key = BlobStore::package_key("ab/cd/ef01/demo-1.0-py3-none-any.whl").expect("key");
        blobs.copy(&staged, &key).await.expect("copy");
        blobs.copy(&staged, &key).await.expect("copy again");
        let parent = dir.path().join("packages/ab/cd/ef01");
        let names: Vec<_> = std::fs::read_dir(parent)
            .expect("read dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["demo-1.0-py3-none-any.whl"]);
        let stored = blobs.get(&key, None).await.expect("get").expect("exists");
        assert_eq!(
            stored.bytes().await.expect("bytes").as_ref(),
            b"wheel bytes"
        );
    }

    #[test]
    fn store_urls() {
        let options = S3Options::default();
        assert!(BlobStore::from_url("memory://", &options).is_ok());
        assert!(BlobStore::from_url("file://relative/dir", &options).is_err());
        assert!(BlobStore::from_url("ftp://host/x", &options).is_err());
        assert!(BlobStore::from_url("s3://", &options).is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().display());
        assert!(BlobStore::from_url(&url, &options).is_ok());
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            region: Some("us-east-1".to_owned()),
            allow_http: true,
            path_style: true,
        };
        assert!(BlobStore::from_url("s3://bucket/some/prefix", &s3).is_ok());
    }

    #[test]
    fn package_keys_follow_pypi_layout() {
        let key = BlobStore::package_key("ab/cd/ef01/demo-1.0-py3-none-any.whl").expect("key");
        assert_eq!(
            key.as_ref(),
            "packages/ab/cd/ef01/demo-1.0-py3-none-any.whl"
        );
        let key = BlobStore::metadata_key("ab/cd/ef01/demo-1.0-py3-none-any.whl").expect("key");
        assert_eq!(
            key.as_ref(),
            "packages/ab/cd/ef01/demo-1.0-py3-none-any.whl.metadata"
        );
    }
}
