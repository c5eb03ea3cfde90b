//! The upload load generator: the legacy upload protocol exactly as twine speaks it
//! (`POST` multipart/form-data to `…/legacy/` with Basic auth), the file streamed from disk,
//! over N concurrent connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use wharf_e2e::dist::Dist;

use crate::corpus::{CorpusFile, Manifest};
use crate::load::{self, Summary};

/// Bytes per read of a file being uploaded.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The upload URL (`http://host:port/legacy/`, or the peer's `/`).
    #[arg(long)]
    url: String,
    /// Corpus manifest (from `wharf-bench corpus`).
    #[arg(long)]
    manifest: PathBuf,
    /// Concurrent uploaders (connections).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Basic auth user name (`__token__` for an API token).
    #[arg(long, default_value = "__token__")]
    username: String,
    /// Basic auth password or API token; from the environment so it is never on a command line.
    #[arg(long, env = "WHARF_BENCH_PASSWORD", hide_env_values = true)]
    password: String,
    /// Per-request timeout.
    #[arg(long, default_value = "600", value_name = "SECONDS")]
    timeout: u64,
}

/// What `upload` reports: the load summary and the throughput it makes.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    summary: Summary,
    /// Bytes of the files accepted (answered 200).
    bytes: u64,
    files_per_s: f64,
    mb_per_s: f64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let files = Arc::new(Manifest::read(&args.manifest)?.files);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let auth: Arc<str> = wharf_e2e::dist::basic_auth(&args.username, &args.password).into();
    let url: Arc<str> = args.url.into();
    let count = files.len();
    // Bytes of the files the server accepted: a refused upload moves no file.
    let accepted_bytes = Arc::new(AtomicU64::new(0));
    let accepted = Arc::clone(&accepted_bytes);
    let summary = load::drive(count, args.concurrency, move |index| {
        let (client, url, auth, files, accepted) = (
            client.clone(),
            Arc::clone(&url),
            Arc::clone(&auth),
            Arc::clone(&files),
            Arc::clone(&accepted),
        );
        async move {
            let file = &files[index];
            upload(&client, &url, &auth, file)
                .await
                .map_err(|error| format!("{}: {error:#}", file.filename))?;
            accepted.fetch_add(file.size, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    let bytes = accepted_bytes.load(Ordering::Relaxed);
    let report = Report {
        bytes,
        files_per_s: summary.ok as f64 / summary.wall_s,
        mb_per_s: bytes as f64 / 1e6 / summary.wall_s,
        summary,
    };
    Ok(serde_json::to_value(report)?)
}

/// Uploads one file; an answer other than 200 is an error carrying the status and body start.
async fn upload(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    file: &CorpusFile,
) -> anyhow::Result<()> {
    let dist = Dist {
        name: file.name.clone(),
        version: file.version.clone(),
        filename: file.filename.clone(),
        filetype: if file.filetype == "sdist" {
            "sdist"
        } else {
            "bdist_wheel"
        },
        pyversion: if file.filetype == "sdist" {
            "source"
        } else {
            "py3"
        },
        bytes: Vec::new(),
        metadata: String::new(),
    };
    let form = dist.form_with(&file.sha256, &file.blake2_256);
    let (head, tail) = form.around_file();
    let length = head.len() as u64 + file.size + tail.len() as u64;
    let content = tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::open(&file.path)
            .await
            .with_context(|| format!("open {}", file.path.display()))?,
        READ_CHUNK,
    );
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(content)
        .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
    let response = client
        .post(url)
        .header(reqwest::header::AUTHORIZATION, auth)
        .header(reqwest::header::CONTENT_TYPE, form.content_type())
        .header(reqwest::header::CONTENT_LENGTH, length)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "HTTP {status}: {}",
        text.chars().take(200).collect::<String>()
    );
    Ok(())
}
