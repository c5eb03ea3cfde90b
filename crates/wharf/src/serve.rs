//! `wharf serve`: the embedded mode, every service in one process.

use std::net::SocketAddr;

use clap::Args;
use wharf_app::server::shutdown_signal;
use wharf_app::{App, BusSettings, EmbeddedSettings};

use crate::IndexArgs;
use crate::args::{
    ConfigArgs, TlsArgs, TokenKeyArgs, UploadArgs, VerifierPolicyArgs, WorkerPolicyArgs,
};

/// Flags of `wharf serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    profile: crate::profile::ProfileArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    upload: UploadArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    verifier: VerifierPolicyArgs,
    #[command(flatten)]
    worker: WorkerPolicyArgs,
    #[command(flatten)]
    token_key: TokenKeyArgs,
}

/// Runs `wharf serve` until SIGINT or SIGTERM, or until one of its tasks fails.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.config.announce();
    args.profile.announce();
    let profile = args.profile.profile;
    // Every flag is checked before anything is opened or bound.
    let mut settings = EmbeddedSettings {
        http: args.upload.listener(args.listen, args.tls.load()?),
        gateway: args.upload.settings(profile)?,
        verifier: args.verifier.settings(profile)?,
        worker: args.worker.settings()?,
        store: wharf_app::adapters::local_store_in(&args.index.data_dir),
        index: args.index.settings(),
        bus: BusSettings::InProcess,
    };
    // One registry per data directory; `wharf admin restore` refuses a locked one.
    let _lock = crate::admin_backup::lock_data_dir(&args.index.data_dir)?;
    // Last, as it creates the default key file (beside the database) on the first start.
    let default_key_file = crate::args::default_token_key_file(&args.index.data_dir);
    settings.verifier.token_keys = args.token_key.load(Some(default_key_file))?;
    App::embedded(settings).await?.run(shutdown_signal()).await
}
