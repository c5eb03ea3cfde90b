//! The mint-token load generator: OIDC tokens from the end-to-end tests' GitHub-style issuer
//! (served by this process) exchanged at `/_/oidc/mint-token` for upload tokens.
//!
//! Every token has its own `jti`, so the registry's replay guard sees each one once. The
//! tokens are signed before the clock starts: RSA signing is the issuer's cost, not the
//! registry's.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use wharf_e2e::oidc_issuer::{GitHubIdentity, TestIssuer};

use crate::load::{self, Summary};

/// The audience a registry with default settings expects.
const AUDIENCE: &str = "wharf";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Registry base URL (`http://host:port`).
    #[arg(long)]
    url: String,
    /// The `wharf` binary, for `wharf admin issuer add` / `publisher add`; it finds the index
    /// from the environment (WHARF_DATA_DIR or WHARF_DATABASE_URL).
    #[arg(long)]
    wharf_bin: PathBuf,
    /// An existing project the trusted publisher is added to.
    #[arg(long)]
    project: String,
    /// Exchanges to make (each with a fresh token).
    #[arg(long, default_value_t = 6000)]
    requests: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// What `mint` reports.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    summary: Summary,
    exchanges_per_s: f64,
}

pub(crate) fn run(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<serde_json::Value> {
    let identity = GitHubIdentity::new("wharf-bench", "bench-repo", "release.yml");
    let issuer = TestIssuer::start(identity.clone());
    // A fresh name per run: issuers of earlier runs stay registered, harmlessly.
    let issuer_name = format!("bench-{}", issuer.url().rsplit(':').next().unwrap_or("0"));
    admin(&args.wharf_bin, &issuer.admin_add_args(&issuer_name))?;
    admin(
        &args.wharf_bin,
        &identity.publisher_add_args(&issuer_name, &args.project),
    )?;
    // One exchange first: the registry fetches the issuer's keys on its first token.
    let mut tokens = sign_tokens(&issuer, args.requests + 1);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let endpoint: Arc<str> = format!("{}/_/oidc/mint-token", args.url.trim_end_matches('/')).into();
    let warm_up = tokens.pop().context("no token signed")?;
    runtime
        .block_on(exchange(&client, &endpoint, warm_up))
        .context("the warm-up exchange failed")?;
    let tokens = Arc::new(tokens);
    let summary = runtime.block_on(load::drive(tokens.len(), args.concurrency, move |index| {
        let (client, endpoint, tokens) =
            (client.clone(), Arc::clone(&endpoint), Arc::clone(&tokens));
        async move {
            exchange(&client, &endpoint, tokens[index].clone())
                .await
                .map_err(|error| format!("{error:#}"))
        }
    }))?;
    let report = Report {
        exchanges_per_s: summary.ok as f64 / summary.wall_s,
        summary,
    };
    Ok(serde_json::to_value(report)?)
}

/// `count` tokens for the registry's audience, each with its own `jti`, signed on every core.
fn sign_tokens(issuer: &TestIssuer, count: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let share = count / threads + usize::from(thread < count % threads);
                scope.spawn(move || {
                    (0..share)
                        .map(|_| issuer.token(AUDIENCE))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    })
}

/// One exchange; anything but a 200 with a `token` is an error.
async fn exchange(client: &reqwest::Client, endpoint: &str, jwt: String) -> anyhow::Result<()> {
    let response = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "token": jwt }).to_string())
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    let minted = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|value| value["token"].is_string());
    anyhow::ensure!(
        status == reqwest::StatusCode::OK && minted,
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    Ok(())
}

/// Runs `wharf admin <args>` (index from the environment).
fn admin(wharf_bin: &PathBuf, args: &[String]) -> anyhow::Result<()> {
    let output = Command::new(wharf_bin)
        .arg("admin")
        .args(args)
        .output()
        .with_context(|| format!("run {}", wharf_bin.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "wharf admin {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
