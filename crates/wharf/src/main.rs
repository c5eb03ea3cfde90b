//! `wharf`: the one binary of the Wharf registry.
//!
//! `wharf serve` runs everything in one process (embedded mode); `wharf admin …` manages
//! users, tokens and projects against the same data; `wharf migrate` prepares a database.
//! Every flag has a `WHARF_…` environment twin.

mod admin;
mod admin_backup;
mod admin_check;
mod admin_oidc;
mod args;
mod config_file;
mod profile;
mod serve;
mod services;
mod tls;
mod trust;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use wharf_index::Index;

/// Wharf, a PyPI-compatible Python package registry.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry in one process: gateway, verifier and storage worker, with SQLite,
    /// a local directory and an in-process bus.
    // Boxed: the flag structs of the two big commands would make every variant their size.
    Serve(Box<serve::ServeArgs>),
    /// Run a gateway (scaled mode): the public HTTP API, asking a verifier over gRPC and
    /// handing uploads to workers over NATS JetStream.
    Gateway(Box<services::GatewayArgs>),
    /// Run a verifier (scaled mode): the gRPC service that answers every credential question.
    Verifier(services::VerifierArgs),
    /// Run a storage worker (scaled mode): consumes staged uploads from NATS JetStream.
    Worker(services::WorkerArgs),
    /// Create or upgrade the index database, then exit.
    Migrate(MigrateArgs),
    /// Manage users, API tokens and projects.
    Admin(admin::AdminArgs),
}

/// Flags of `wharf migrate`.
#[derive(Debug, Clone, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    config: args::ConfigArgs,
    #[command(flatten)]
    index: IndexArgs,
}

/// Where the index lives.
#[derive(Debug, Clone, Args)]
pub(crate) struct IndexArgs {
    /// Data directory: the SQLite index and the stored files.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub(crate) data_dir: PathBuf,
    /// Index database URL (`postgres://…` or `sqlite://PATH`); defaults to
    /// `<data-dir>/index.sqlite3`.
    #[arg(long, env = "WHARF_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
}

impl IndexArgs {
    /// The index location these flags name.
    pub(crate) fn settings(&self) -> wharf_app::IndexSettings {
        wharf_app::IndexSettings {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }

    /// Opens the index, applying migrations.
    pub(crate) async fn open(&self) -> anyhow::Result<Arc<dyn Index>> {
        wharf_app::open_index(&self.settings()).await
    }
}

/// Exit code for bad configuration (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// A configuration error: reported with exit code 64 before anything listens.
pub(crate) use wharf_app::ConfigError;

fn main() -> ExitCode {
    let argv = match config_file::apply(std::env::args_os().collect(), &Cli::command()) {
        Ok(argv) => argv,
        Err(error) => {
            // Nothing is set up yet, not even logging: say it plainly and stop.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cli = Cli::parse_from(argv);
    let service = match &cli.command {
        Command::Serve(_) => "wharf",
        Command::Gateway(_) => "wharf-gateway",
        Command::Verifier(_) => "wharf-verifier",
        Command::Worker(_) => "wharf-worker",
        Command::Migrate(_) | Command::Admin(_) => "wharf-admin",
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            // No subscriber yet: this is the one message that cannot be a log line.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("wharf: cannot start the async runtime: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // Inside the runtime: the OTLP exporter's gRPC channel lives on it.
        let telemetry = wharf_telemetry::init(service);
        let result = run(cli.command).await;
        if let Err(error) = &result {
            tracing::error!("{error:#}");
        }
        // Last: flush the spans of the shutdown itself.
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    {
        match command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Gateway(args) => services::run_gateway(*args).await,
            Command::Verifier(args) => services::run_verifier(args).await,
            Command::Worker(args) => services::run_worker(args).await,
            Command::Migrate(args) => {
                args.config.announce();
                args.index.open().await?;
                tracing::info!("index database is up to date");
                Ok(())
            }
            Command::Admin(args) => admin::run(args).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_environment_twin() {
        fn check(command: &clap::Command, path: &str) {
            for argument in command.get_arguments() {
                let id = argument.get_id().as_str();
                if argument.is_positional() || id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    argument.get_env().is_some(),
                    "{path} --{id} has no WHARF_ environment variable"
                );
            }
            for subcommand in command.get_subcommands() {
                check(subcommand, &format!("{path} {}", subcommand.get_name()));
            }
        }
        check(&Cli::command(), "wharf");
    }
}
