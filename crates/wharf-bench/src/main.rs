//! `wharf-bench`: the corpus generator and the load generators `make bench` runs
//! (see `scripts/bench.sh`). Every subcommand prints its result as one JSON object.
// A CLI whose job is printing its measurements.
#![allow(clippy::print_stdout)]

mod corpus;
mod load;
mod mint;
mod upload;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "wharf-bench", about = "Benchmark tools for make bench")]
enum Command {
    /// Generate (or reuse) the deterministic corpus of wheels and sdists.
    Corpus(corpus::Args),
    /// Upload a corpus manifest's files with the legacy upload protocol, as twine does.
    Upload(upload::Args),
    /// Exchange OIDC tokens from a test issuer for upload tokens (`/_/oidc/mint-token`).
    Mint(mint::Args),
}

fn main() -> anyhow::Result<()> {
    let report = match Command::parse() {
        Command::Corpus(args) => corpus::run(&args)?,
        Command::Upload(args) => runtime()?.block_on(upload::run(args))?,
        Command::Mint(args) => mint::run(&args, &runtime()?)?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
