//! `wharf admin issuer …` and `wharf admin publisher …`: trusted publishing configuration,
//! read by the verifier on every exchange (no restart needed).

#![allow(clippy::print_stdout)] // The admin CLI's output is its stdout.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use wharf_core::name;
use wharf_index::{Index, IssuerRecord, NewPublisher, TrustedPublishing};
use wharf_oidc::{
    ActiveStatePolicy, GenericPolicy, GitHubPolicy, GitLabPolicy, GooglePolicy, IssuerKind,
    PublisherPolicy,
};
use wharf_verifier::publisher_label;

use crate::admin::AdminEvents;
use crate::units::parse_duration;

#[derive(Debug, Subcommand)]
pub(crate) enum IssuerCommand {
    /// Trust OIDC tokens from another issuer (GitHub Enterprise Server, self-managed GitLab,
    /// Forgejo/Gitea Actions, Buildkite, …).
    Add {
        /// A short name to refer to the issuer by.
        #[arg(long, env = "WHARF_ISSUER_NAME")]
        name: String,
        /// Whose claim rules its tokens follow: github, gitlab, google, activestate or generic.
        #[arg(long, env = "WHARF_ISSUER_KIND")]
        kind: IssuerKind,
        /// The issuer URL, exactly as its tokens' `iss` claim.
        #[arg(long, env = "WHARF_ISSUER_URL")]
        url: String,
        /// Allow a plain-HTTP issuer (for tests only).
        #[arg(long, env = "WHARF_ISSUER_ALLOW_HTTP")]
        allow_http: bool,
    },
    /// List the operator-managed issuers (the four built-in ones are always trusted).
    List,
    /// Stop trusting an issuer.
    Remove {
        /// The issuer's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PublisherCommand {
    /// Add a trusted publisher.
    Add {
        #[command(subcommand)]
        kind: Box<PublisherKind>,
    },
    /// List the trusted publishers.
    List,
    /// Remove a trusted publisher (and revoke the tokens minted for it).
    Remove {
        /// The publisher's id.
        id: String,
    },
}

/// What every publisher has, whatever its kind.
#[derive(Debug, Args)]
pub(crate) struct PublisherCommon {
    /// The Wharf project the publisher may upload to.
    #[arg(long = "project", env = "WHARF_PUBLISHER_PROJECT")]
    project: String,
    /// An operator-managed issuer (by name); default: the kind's public issuer.
    #[arg(long, env = "WHARF_PUBLISHER_ISSUER")]
    issuer: Option<String>,
    /// Lifetime of the tokens minted for this publisher (at most the server's maximum).
    #[arg(long, env = "WHARF_PUBLISHER_TOKEN_TTL", value_parser = parse_duration)]
    token_ttl: Option<Duration>,
    /// Register a pending publisher: the project does not exist yet and is created, owned
    /// by --user, on the publisher's first successful exchange.
    #[arg(long, env = "WHARF_PUBLISHER_PENDING", requires = "user")]
    pending: bool,
    /// The user who registers a pending publisher (and will own the project).
    #[arg(long, env = "WHARF_PUBLISHER_USER")]
    user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PublisherKind {
    /// A GitHub Actions workflow.
    Github {
        #[command(flatten)]
        common: PublisherCommon,
        /// Repository owner (user or organization login).
        #[arg(long, env = "WHARF_GITHUB_OWNER")]
        owner: String,
        /// The owner's numeric id; pinned from the first exchange when not given.
        #[arg(long, env = "WHARF_GITHUB_OWNER_ID")]
        owner_id: Option<String>,
        /// Repository name (without the owner).
        #[arg(long, env = "WHARF_GITHUB_REPOSITORY")]
        repository: String,
        /// Workflow file name, e.g. `release.yml`.
        #[arg(long, env = "WHARF_GITHUB_WORKFLOW")]
        workflow: String,
        /// Required GitHub environment.
        #[arg(long, env = "WHARF_GITHUB_ENVIRONMENT")]
        environment: Option<String>,
        /// A reusable workflow's repository (`owner/repo`), when the job runs one.
        #[arg(
            long,
            env = "WHARF_GITHUB_WORKFLOW_REPOSITORY",
            requires = "workflow_path"
        )]
        workflow_repository: Option<String>,
        /// The reusable workflow's path in that repository.
        #[arg(
            long,
            env = "WHARF_GITHUB_WORKFLOW_PATH",
            requires = "workflow_repository"
        )]
        workflow_path: Option<String>,
    },
    /// A GitLab CI/CD pipeline.
    Gitlab {
        #[command(flatten)]
        common: PublisherCommon,
        /// Namespace (group or user path).
        #[arg(long, env = "WHARF_GITLAB_NAMESPACE")]
        namespace: String,
        /// GitLab project name.
        #[arg(long = "gitlab-project", env = "WHARF_GITLAB_PROJECT")]
        gitlab_project: String,
        /// Top-level pipeline file path, e.g. `.gitlab-ci.yml`.
        #[arg(long, env = "WHARF_GITLAB_WORKFLOW_FILEPATH")]
        workflow_filepath: String,
        /// Required environment (case-sensitive).
        #[arg(long, env = "WHARF_GITLAB_ENVIRONMENT")]
        environment: Option<String>,
    },
    /// A Google Cloud service account.
    Google {
        #[command(flatten)]
        common: PublisherCommon,
        /// Service account e-mail.
        #[arg(long, env = "WHARF_GOOGLE_EMAIL")]
        email: String,
        /// The account's subject id, to pin it.
        #[arg(long, env = "WHARF_GOOGLE_SUB")]
        sub: Option<String>,
    },
    /// An ActiveState Platform project.
    Activestate {
        #[command(flatten)]
        common: PublisherCommon,
        /// ActiveState organization.
        #[arg(long, env = "WHARF_ACTIVESTATE_ORGANIZATION")]
        organization: String,
        /// ActiveState project.
        #[arg(long = "activestate-project", env = "WHARF_ACTIVESTATE_PROJECT")]
        activestate_project: String,
        /// The actor's id.
        #[arg(long, env = "WHARF_ACTIVESTATE_ACTOR_ID")]
        actor_id: String,
        /// The actor's name.
        #[arg(long, env = "WHARF_ACTIVESTATE_ACTOR")]
        actor: Option<String>,
    },
    /// Any OIDC issuer, by a declarative claim policy (`sub` required).
    Generic {
        #[command(flatten)]
        common: PublisherCommon,
        /// A claim and its expected value or glob, `name=value` (repeatable).
        #[arg(
            long = "claim",
            env = "WHARF_GENERIC_CLAIMS",
            value_delimiter = ',',
            required = true
        )]
        claims: Vec<String>,
    },
}

fn issuer_kind_of(policy: &PublisherPolicy) -> IssuerKind {
    match policy {
        PublisherPolicy::GitHub(_) => IssuerKind::GitHub,
        PublisherPolicy::GitLab(_) => IssuerKind::GitLab,
        PublisherPolicy::Google(_) => IssuerKind::Google,
        PublisherPolicy::ActiveState(_) => IssuerKind::ActiveState,
        PublisherPolicy::Generic(_) => IssuerKind::Generic,
    }
}

fn build_policy(kind: PublisherKind) -> anyhow::Result<(PublisherCommon, PublisherPolicy)> {
    Ok(match kind {
        PublisherKind::Github {
            common,
            owner,
            owner_id,
            repository,
            workflow,
            environment,
            workflow_repository,
            workflow_path,
        } => {
            if workflow.contains('/')
                || !(workflow.ends_with(".yml") || workflow.ends_with(".yaml"))
            {
                anyhow::bail!(
                    "--workflow must be a file name ending in .yml or .yaml, without '/'"
                );
            }
            let policy = PublisherPolicy::GitHub(GitHubPolicy {
                owner,
                owner_id,
                repository,
                workflow,
                environment: environment.map(|environment| environment.to_lowercase()),
                workflow_repository,
                workflow_path,
            });
            (common, policy)
        }
        PublisherKind::Gitlab {
            common,
            namespace,
            gitlab_project,
            workflow_filepath,
            environment,
        } => {
            let policy = PublisherPolicy::GitLab(GitLabPolicy {
                namespace,
                project: gitlab_project,
                workflow_filepath,
                environment,
            });
            (common, policy)
        }
        PublisherKind::Google { common, email, sub } => {
            (common, PublisherPolicy::Google(GooglePolicy { email, sub }))
        }
        PublisherKind::Activestate {
            common,
            organization,
            activestate_project,
            actor_id,
            actor,
        } => {
            let policy = PublisherPolicy::ActiveState(ActiveStatePolicy {
                organization,
                project: activestate_project,
                actor_id,
                actor,
            });
            (common, policy)
        }
        PublisherKind::Generic { common, claims } => {
            let mut map = BTreeMap::new();
            for claim in claims {
                let (key, value) = claim
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--claim takes name=value, got '{claim}'"))?;
                map.insert(key.trim().to_owned(), value.to_owned());
            }
            if common.issuer.is_none() {
                anyhow::bail!(
                    "a generic publisher needs --issuer (an issuer added with `issuer add`)"
                );
            }
            let policy = GenericPolicy::new(map).map_err(|error| anyhow::anyhow!("{error}"))?;
            (common, PublisherPolicy::Generic(policy))
        }
    })
}

async fn add_publisher(
    index: &dyn Index,
    events: &AdminEvents,
    kind: PublisherKind,
) -> anyhow::Result<()> {
    let (common, policy) = build_policy(kind)?;
    let kind = issuer_kind_of(&policy);
    let issuer_url = match &common.issuer {
        Some(issuer_name) => {
            let issuer = index
                .list_issuers()
                .await?
                .into_iter()
                .find(|issuer| &issuer.name == issuer_name)
                .ok_or_else(|| {
                    anyhow::anyhow!("no issuer named '{issuer_name}' (see `issuer list`)")
                })?;
            if issuer.kind != kind.as_str() {
                anyhow::bail!(
                    "issuer '{issuer_name}' is of kind {}, not {}",
                    issuer.kind,
                    kind.as_str()
                );
            }
            issuer.url
        }
        None => wharf_oidc::builtin_issuers()
            .into_iter()
            .find(|issuer| issuer.kind == kind)
            .map(|issuer| issuer.url)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the {} kind has no public issuer: pass --issuer",
                    kind.as_str()
                )
            })?,
    };

    let normalized = name::normalize(&common.project);
    let existing = index.find_project(&normalized).await?;
    let (project_ids, pending_user_id) = if common.pending {
        if existing.is_some() {
            anyhow::bail!(
                "project '{}' exists already: add an active publisher instead",
                common.project
            );
        }
        name::check_new_project_name(&common.project, &[])
            .map_err(|rejection| anyhow::anyhow!("{}", rejection.message))?;
        let user_name = common.user.as_deref().unwrap_or_default();
        let user = index
            .find_user_by_name(user_name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user named '{user_name}'"))?;
        (Vec::new(), Some(user.id))
    } else {
        let project = existing.ok_or_else(|| {
            anyhow::anyhow!(
                "no project '{}': publish it once first, or register a pending publisher with --pending --user NAME",
                common.project
            )
        })?;
        (vec![project.id], None)
    };

    let policy_json = serde_json::to_string(&policy).context("cannot encode the policy")?;
    let id = uuid::Uuid::new_v4().to_string();
    let label = publisher_label(&policy);
    let now = jiff::Timestamp::now().as_microsecond();
    index
        .insert_publisher(&NewPublisher {
            id: id.clone(),
            kind: kind.as_str().to_owned(),
            issuer_url: issuer_url.clone(),
            policy: policy_json,
            label: label.clone(),
            token_ttl_seconds: common
                .token_ttl
                .map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            pending_project_name: common.pending.then(|| common.project.clone()),
            pending_project_ultranormalized: common
                .pending
                .then(|| name::ultranormalize(&common.project)),
            pending_user_id,
            project_ids,
            created_at: now,
        })
        .await?;
    let detail = serde_json::json!({ "publisher": id, "label": label, "project": common.project, "pending": common.pending });
    events.record("oidc.publisher_added", detail).await?;
    println!("{id}");
    Ok(())
}

pub(crate) async fn run_issuer(
    index: &dyn TrustedPublishing,
    events: &AdminEvents,
    command: IssuerCommand,
) -> anyhow::Result<()> {
    match command {
        IssuerCommand::Add {
            name,
            kind,
            url,
            allow_http,
        } => {
            if !(url.starts_with("https://") || (allow_http && url.starts_with("http://"))) {
                anyhow::bail!("the issuer URL must be https:// (or http:// with --allow-http)");
            }
            if wharf_oidc::builtin_issuers()
                .iter()
                .any(|issuer| issuer.url == url)
            {
                anyhow::bail!("{url} is a built-in issuer already");
            }
            let now = jiff::Timestamp::now().as_microsecond();
            index
                .insert_issuer(&IssuerRecord {
                    name: name.clone(),
                    kind: kind.as_str().to_owned(),
                    url,
                    allow_http,
                    created_at: now,
                })
                .await?;
            let detail = serde_json::json!({ "issuer": name, "kind": kind.as_str() });
            events.record("oidc.issuer_added", detail).await?;
            println!("added issuer {name}");
        }
        IssuerCommand::List => {
            println!("{:<20}  {:<12}  {:<5}  url", "name", "kind", "http");
            for issuer in wharf_oidc::builtin_issuers() {
                println!(
                    "{:<20}  {:<12}  {:<5}  {} (built in)",
                    issuer.name,
                    issuer.kind.as_str(),
                    "no",
                    issuer.url
                );
            }
            for issuer in index.list_issuers().await? {
                println!(
                    "{:<20}  {:<12}  {:<5}  {}",
                    issuer.name,
                    issuer.kind,
                    if issuer.allow_http { "yes" } else { "no" },
                    issuer.url
                );
            }
        }
        IssuerCommand::Remove { name } => {
            if !index.delete_issuer(&name).await? {
                anyhow::bail!("no issuer named '{name}'");
            }
            let detail = serde_json::json!({ "issuer": name });
            events.record("oidc.issuer_removed", detail).await?;
            println!("removed issuer {name}");
        }
    }
    Ok(())
}

pub(crate) async fn run_publisher(
    index: &dyn Index,
    events: &AdminEvents,
    command: PublisherCommand,
) -> anyhow::Result<()> {
    match command {
        PublisherCommand::Add { kind } => add_publisher(index, events, *kind).await?,
        PublisherCommand::List => {
            let projects = index.list_projects().await?;
            let project_name = |id: &str| {
                projects
                    .iter()
                    .find(|project| project.id == id)
                    .map_or_else(|| id.to_owned(), |project| project.name.clone())
            };
            println!(
                "{:<36}  {:<40}  {:<24}  {:<14}  issuer",
                "id", "publisher", "projects", "owner id"
            );
            for publisher in index.list_publishers().await? {
                let projects = match &publisher.pending_project_name {
                    Some(pending) => format!("{pending} (pending)"),
                    None => publisher
                        .project_ids
                        .iter()
                        .map(|id| project_name(id))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                let owner_id = match serde_json::from_str::<PublisherPolicy>(&publisher.policy) {
                    Ok(PublisherPolicy::GitHub(github)) => {
                        github.owner_id.unwrap_or_else(|| "(unpinned)".to_owned())
                    }
                    _ => "-".to_owned(),
                };
                println!(
                    "{:<36}  {:<40}  {:<24}  {:<14}  {}",
                    publisher.id, publisher.label, projects, owner_id, publisher.issuer_url
                );
            }
        }
        PublisherCommand::Remove { id } => {
            if !index.delete_publisher(&id).await? {
                anyhow::bail!("no publisher with id {id}");
            }
            let detail = serde_json::json!({ "publisher": id });
            events.record("oidc.publisher_removed", detail).await?;
            println!("removed publisher {id}");
        }
    }
    Ok(())
}
