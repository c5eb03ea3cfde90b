//! `wharf admin …`: users, API tokens, projects and yanks, against the same index a running
//! `wharf serve` uses (SQLite in WAL mode lets both work at once).

#![allow(clippy::print_stdout)] // The admin CLI's output is its stdout.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use wharf_bus::{PublicEvent, UploadBus};
use wharf_core::name;
use wharf_core::version::Version;
use wharf_index::{Index, IndexError, Releases, YankChange};
use wharf_verifier::{TokenRequest, mint_user_token};

use crate::IndexArgs;
use crate::args::TokenKeyArgs;
use crate::units::parse_duration;

/// Flags of `wharf admin`.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    index: IndexArgs,
    /// Also publish each change as a public event on this NATS server (the scaled mode's
    /// `wharf.events.>` stream); without it changes are recorded in the index only.
    #[arg(long, env = "WHARF_NATS_URL")]
    nats_url: Option<String>,
    /// Subject and stream prefix on NATS.
    #[arg(long, env = "WHARF_NATS_PREFIX", default_value = "wharf")]
    nats_prefix: String,
    #[command(flatten)]
    nats_security: crate::trust::NatsSecurityArgs,
    #[command(flatten)]
    token_key: TokenKeyArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the token key that seals API tokens' root keys (docs/security.md, "How to
    /// rotate keys").
    #[command(subcommand)]
    TokenKey(TokenKeyCommand),
    /// Inspect projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage the OIDC issuers trusted for trusted publishing.
    #[command(subcommand)]
    Issuer(crate::admin_oidc::IssuerCommand),
    /// Manage trusted publishers.
    #[command(subcommand)]
    Publisher(crate::admin_oidc::PublisherCommand),
    /// Yank a release (PEP 592): installers skip it unless pinned exactly.
    Yank {
        /// Project name.
        project: String,
        /// Release version.
        version: String,
        /// Why the release is yanked (shown to installers).
        #[arg(long, env = "WHARF_YANK_REASON")]
        reason: Option<String>,
    },
    /// Undo a yank.
    Unyank {
        /// Project name.
        project: String,
        /// Release version.
        version: String,
    },
    /// Check the index against the store: every file row has its object (and `.metadata`)
    /// with the recorded size, SHA-256 and BLAKE2b-256, and every stored object has a row.
    /// Lists each problem and exits non-zero if there is any.
    Check {
        #[command(flatten)]
        store: crate::args::StoreArgs,
    },
    /// Back up the embedded registry into DIR (a new directory) while `wharf serve` runs:
    /// a consistent snapshot of the SQLite index, every stored file it references (each
    /// checked against its row) and the token key file. Written to a temporary sibling and
    /// renamed at the end, so a killed backup never looks complete.
    Backup {
        /// The directory to create.
        dir: std::path::PathBuf,
        #[command(flatten)]
        store: crate::args::StoreArgs,
    },
    /// Restore a backup made by `wharf admin backup` into --data-dir, which must be empty
    /// (or --force) and not in use by a running `wharf serve`; checks the result as
    /// `wharf admin check` does.
    Restore {
        /// The backup directory.
        dir: std::path::PathBuf,
        /// Replace the data directory's index, files and token key.
        #[arg(long, env = "WHARF_RESTORE_FORCE")]
        force: bool,
    },
    /// Create an Ed25519 key pair for upload grants: `upload-grant.key` (private, mode 0600,
    /// for the verifier's --upload-grant-key-file) and `upload-grant.pub` (for the workers'
    /// --upload-grant-public-key-file) in DIR; prints the key id. Needs no database.
    UploadGrantKey {
        /// Directory to write the two files to (created if missing; existing files are
        /// never overwritten).
        #[arg(long, env = "WHARF_UPLOAD_GRANT_KEY_DIR")]
        out: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        /// The user name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (only the token, on stdout; it is shown once).
    Create {
        /// The user the token acts for.
        #[arg(long, env = "WHARF_TOKEN_USER")]
        user: String,
        /// Restrict the token to a project (repeatable); default: all the user's projects.
        #[arg(long = "project", env = "WHARF_TOKEN_PROJECTS", value_delimiter = ',')]
        projects: Vec<String>,
        /// Lifetime, e.g. `90d` or `12h`; default: no expiry.
        #[arg(long, env = "WHARF_TOKEN_EXPIRES", value_parser = parse_duration)]
        expires: Option<std::time::Duration>,
        /// A note on what the token is for.
        #[arg(long, env = "WHARF_TOKEN_DESCRIPTION", default_value = "")]
        description: String,
        /// The macaroon location written into the token.
        #[arg(long, env = "WHARF_TOKEN_LOCATION", default_value = "wharf")]
        location: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token id (from `token list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenKeyCommand {
    /// Create the key file with one new key, unless it exists (then it is left alone).
    Create,
    /// Add a new token key as the key file's first (sealing) key, keeping the old ones for
    /// opening, and re-seal every token's root key under it; every token keeps working.
    Rotate {
        /// Only add the new key to the file; re-seal later with `reseal`, once every
        /// verifier reads the new file (e.g. a Kubernetes Secret).
        #[arg(long, env = "WHARF_TOKEN_KEY_NO_RESEAL")]
        no_reseal: bool,
    },
    /// Re-seal every token's root key under the key file's first key.
    Reseal,
    /// Re-seal every token's root key under the first key, then remove the other keys from
    /// the key file.
    Retire,
    /// List the configured key ids and how many tokens each seals (never the keys).
    List,
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// List projects.
    List,
    /// Create a project owned by USER, waiving the rules a first upload must pass (stdlib
    /// module names, look-alike names), e.g. for a vetted copy of a public package; the
    /// name must still be valid and not taken. Recorded in the audit trail.
    Create {
        /// The project name (PEP 508).
        name: String,
        /// The user who becomes the project's Owner.
        #[arg(long, env = "WHARF_PROJECT_OWNER")]
        owner: String,
    },
}

fn format_time(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|time| time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "-".to_owned())
}

/// Where an admin change is recorded: an audit row in the index, and a public event on the
/// bus when one is configured.
pub(crate) struct AdminEvents {
    index: Arc<dyn Index>,
    bus: Option<Arc<dyn UploadBus>>,
}

impl AdminEvents {
    /// Records `kind` (e.g. `release.yanked`) with its details.
    pub(crate) async fn record(&self, kind: &str, detail: serde_json::Value) -> anyhow::Result<()> {
        let detail = detail.to_string();
        let now = jiff::Timestamp::now().as_microsecond();
        self.index
            .record_audit(kind, &detail, now)
            .await
            .context("failed to record the change")?;
        if let Some(bus) = &self.bus {
            let event = PublicEvent {
                subject: format!("wharf.events.{kind}"),
                payload: detail.into_bytes().into(),
            };
            bus.publish_event(event)
                .await
                .context("failed to publish the change event")?;
        }
        Ok(())
    }
}

/// The admin commands' token key file: `--token-key-file`, or beside an SQLite index in the
/// data directory (as `wharf serve` uses it).
fn default_token_key_file(index: &IndexArgs) -> Option<std::path::PathBuf> {
    let sqlite = index
        .database_url
        .as_deref()
        .is_none_or(|url| url.starts_with("sqlite:"));
    sqlite.then(|| crate::args::default_token_key_file(&index.data_dir))
}

/// The admin commands' token keys (the default file is created if missing, as `serve` does).
fn token_keys(
    index: &IndexArgs,
    token_key: &TokenKeyArgs,
) -> Result<wharf_verifier::TokenKeys, crate::ConfigError> {
    token_key.load(default_token_key_file(index))
}

/// `wharf admin token-key …`.
async fn run_token_key(
    index_args: &IndexArgs,
    token_key: &TokenKeyArgs,
    index: &dyn Index,
    command: TokenKeyCommand,
) -> anyhow::Result<()> {
    let (path, _) = token_key.path(default_token_key_file(index_args))?;
    let token_keys = || token_keys(index_args, token_key);
    let reseal = |keys: wharf_verifier::TokenKeys| async move {
        let resealed = wharf_verifier::reseal_root_keys(index, &keys)
            .await
            .context("failed to re-seal the tokens' root keys")?;
        println!(
            "re-sealed {resealed} token(s) under token key {}",
            keys.sealing_key_id()
        );
        anyhow::Ok(())
    };
    match command {
        TokenKeyCommand::Create => {
            let (keys, created) = wharf_verifier::TokenKeys::from_file_or_create(&path)?;
            let verb = if created {
                "created"
            } else {
                "kept the existing"
            };
            println!(
                "{verb} token key file {} (sealing key {})",
                path.display(),
                keys.sealing_key_id()
            );
        }
        TokenKeyCommand::Rotate { no_reseal } => {
            let id = wharf_verifier::add_key_to_file(&path)?;
            println!("added token key {id} to {}", path.display());
            if !no_reseal {
                reseal(token_keys()?).await?;
            }
        }
        TokenKeyCommand::Reseal => reseal(token_keys()?).await?,
        TokenKeyCommand::Retire => {
            reseal(token_keys()?).await?;
            let removed = wharf_verifier::keep_only_sealing_key(&path)?;
            println!(
                "removed token key(s) [{}] from {}",
                removed.join(", "),
                path.display()
            );
        }
        TokenKeyCommand::List => {
            let keys = token_keys()?;
            let rows = index.list_root_keys().await?;
            println!("{:<12}  {:>8}  role", "key id", "tokens");
            for (position, id) in keys.key_ids().iter().enumerate() {
                let count = rows
                    .iter()
                    .filter(|row| row.root_key_id.as_deref() == Some(id.as_str()))
                    .count();
                let role = if position == 0 {
                    "seals and opens"
                } else {
                    "opens"
                };
                println!("{id:<12}  {count:>8}  {role}");
            }
            let clear = rows.iter().filter(|row| row.root_key_id.is_none()).count();
            if clear > 0 {
                println!("{:<12}  {clear:>8}  not sealed yet", "(clear)");
            }
        }
    }
    Ok(())
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::UploadGrantKey { out } = &args.command {
        let key_id = crate::trust::write_upload_grant_key_pair(out)?;
        println!("{key_id}");
        return Ok(());
    }
    match &args.command {
        AdminCommand::Backup { dir, store } => {
            let blobs = wharf_app::open_store(&store.settings(&args.index.data_dir))?;
            let (key_file, _) = args.token_key.path(default_token_key_file(&args.index))?;
            return crate::admin_backup::backup(&args.index, &blobs, &key_file, dir).await;
        }
        AdminCommand::Restore { dir, force } => {
            return crate::admin_backup::restore(&args.index, dir, *force).await;
        }
        _ => {}
    }
    let index = args.index.open().await?;
    let bus: Option<Arc<dyn UploadBus>> = match &args.nats_url {
        Some(url) => {
            let config = wharf_bus_nats::NatsConfig {
                url: url.clone(),
                subject_prefix: args.nats_prefix.clone(),
                security: args.nats_security.settings(),
                ..wharf_bus_nats::NatsConfig::default()
            };
            let bus = wharf_bus_nats::NatsBus::connect(config)
                .await
                .context("failed to connect to NATS")?;
            Some(Arc::new(bus))
        }
        None => None,
    };
    let events = AdminEvents {
        index: Arc::clone(&index),
        bus,
    };
    let now = jiff::Timestamp::now();
    match args.command {
        AdminCommand::TokenKey(command) => {
            run_token_key(&args.index, &args.token_key, index.as_ref(), command).await?;
        }
        AdminCommand::User(UserCommand::Create { name }) => {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                anyhow::bail!("a user name must be non-empty and contain no spaces");
            }
            match index.create_user(&name, now.as_microsecond()).await {
                Ok(user) => println!("{}", user.id),
                Err(IndexError::Conflict(message)) => anyhow::bail!("{message}"),
                Err(error) => return Err(error).context("failed to create the user"),
            }
        }
        AdminCommand::Token(TokenCommand::Create {
            user,
            projects,
            expires,
            description,
            location,
        }) => {
            let expires_at = expires.map(|lifetime| {
                now.as_second()
                    .saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX))
            });
            let request = TokenRequest {
                user_name: user,
                projects,
                expires_at,
                description,
                location,
            };
            let keys = token_keys(&args.index, &args.token_key)?;
            let (_id, token) = mint_user_token(index.as_ref(), &keys, &request, now.as_second())
                .await
                .context("failed to create the token")?;
            println!("{token}");
        }
        AdminCommand::Token(TokenCommand::List) => {
            println!(
                "{:<36}  {:<16}  {:<20}  {:<20}  {:<20}  description",
                "id", "user", "created", "expires", "last used"
            );
            for token in index.list_tokens().await? {
                println!(
                    "{:<36}  {:<16}  {:<20}  {:<20}  {:<20}  {}",
                    token.id,
                    token.user_name.as_deref().unwrap_or("-"),
                    format_time(token.created_at),
                    token.expires_at.map_or_else(
                        || "never".to_owned(),
                        |seconds| format_time(seconds.saturating_mul(1_000_000))
                    ),
                    token
                        .last_used_at
                        .map_or_else(|| "never".to_owned(), format_time),
                    token.description,
                );
            }
        }
        AdminCommand::Token(TokenCommand::Revoke { id }) => {
            if !index.delete_token(&id).await? {
                anyhow::bail!("no token with id {id}");
            }
            println!("revoked {id}");
        }
        AdminCommand::Project(ProjectCommand::List) => {
            println!(
                "{:<32}  {:<10}  {:>12}  {:>8}",
                "name", "status", "size", "serial"
            );
            for project in index.list_projects().await? {
                println!(
                    "{:<32}  {:<10}  {:>12}  {:>8}",
                    project.name, project.status, project.total_size, project.last_serial
                );
            }
        }
        AdminCommand::Project(ProjectCommand::Create { name, owner }) => {
            create_project(index.as_ref(), &events, &name, &owner, now).await?;
        }
        AdminCommand::Issuer(command) => {
            crate::admin_oidc::run_issuer(index.as_ref(), &events, command).await?;
        }
        AdminCommand::Publisher(command) => {
            crate::admin_oidc::run_publisher(index.as_ref(), &events, command).await?;
        }
        AdminCommand::Yank {
            project,
            version,
            reason,
        } => {
            let reason = reason.unwrap_or_default();
            change_yank(
                index.as_ref(),
                &project,
                &version,
                Some(reason.clone()),
                now,
            )
            .await?;
            events
                .record(
                    "release.yanked",
                    serde_json::json!({ "project": project, "version": version, "reason": reason }),
                )
                .await?;
            println!("yanked {project} {version}");
        }
        AdminCommand::Unyank { project, version } => {
            change_yank(index.as_ref(), &project, &version, None, now).await?;
            events
                .record(
                    "release.unyanked",
                    serde_json::json!({ "project": project, "version": version }),
                )
                .await?;
            println!("unyanked {project} {version}");
        }
        AdminCommand::Check { store } => {
            let blobs = wharf_app::open_store(&store.settings(&args.index.data_dir))?;
            crate::admin_check::run(index.as_ref(), &blobs).await?;
        }
        AdminCommand::UploadGrantKey { .. }
        | AdminCommand::Backup { .. }
        | AdminCommand::Restore { .. } => unreachable!("handled before the index opens"),
    }
    Ok(())
}

async fn change_yank(
    index: &dyn Releases,
    project: &str,
    version: &str,
    reason: Option<String>,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    let parsed = Version::parse(version)
        .map_err(|error| anyhow::anyhow!("invalid version '{version}': {error}"))?;
    let normalized = name::normalize(project);
    let canonical = parsed.canonical();
    let change = YankChange {
        normalized_name: &normalized,
        canonical_version: &canonical,
        yank_reason: reason.as_deref(),
        submitted_by: "admin",
    };
    if !index
        .set_release_yanked(&change, now.as_microsecond())
        .await?
    {
        anyhow::bail!("no release {version} of project {project}");
    }
    Ok(())
}

/// `admin project create`: refuses an invalid or taken name, creates the project with
/// `owner` as its Owner, and audits which new-name rules the operator waived.
async fn create_project(
    index: &dyn Index,
    events: &AdminEvents,
    project_name: &str,
    owner: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    if !name::is_valid_project_name(project_name) {
        anyhow::bail!(
            "The name '{project_name}' is invalid: a project name is ASCII letters, digits, \
             '.', '_' and '-', starting and ending with a letter or digit (PEP 508)."
        );
    }
    let Some(user) = index.find_user_by_name(owner).await? else {
        anyhow::bail!("no user named {owner} (create it with `wharf admin user create`)");
    };
    let target = wharf_index::ProjectTarget {
        name: project_name.to_owned(),
        normalized_name: name::normalize(project_name),
        ultranormalized_name: name::ultranormalize(project_name),
        create_with_owner: Some(user.id.clone()),
    };
    let mut waived = Vec::new();
    if let Err(refusal) = name::check_new_project_name(project_name, &[]) {
        waived.push(refusal.message);
    }
    let lookalikes: Vec<String> = index
        .find_projects_by_ultranormalized(&target.ultranormalized_name)
        .await?
        .into_iter()
        .filter(|project| project.normalized_name != target.normalized_name)
        .map(|project| project.name)
        .collect();
    if !lookalikes.is_empty() {
        waived.push(name::too_similar_rejection(project_name).message);
    }
    let Some(project_id) = index
        .create_project_by_operator(&target, &user.id, &user.name, now.as_microsecond())
        .await
        .context("failed to create the project")?
    else {
        anyhow::bail!("{}", name::existing_project_rejection(project_name).message);
    };
    events
        .record(
            "project.created_by_operator",
            serde_json::json!({
                "project": project_name,
                "project_id": project_id,
                "owner": user.name,
                "waived": waived,
                "lookalikes": lookalikes,
            }),
        )
        .await?;
    for rule in &waived {
        println!("waived: {rule}");
    }
    println!("created {project_name} (owner {})", user.name);
    Ok(())
}
