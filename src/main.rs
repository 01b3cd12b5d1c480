use std::process::ExitCode;

use clap::Parser;

use certwright::cli::{Cli, Command};
use certwright::cmd;

fn main() -> ExitCode {
    let cli = Cli::parse();
    certwright::install_crypto_provider();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("certwright: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crds { output } => cmd::run::print_crds(output),
        Command::Version { output } => cmd::run::print_version(output),
        Command::Solver(args) => cmd::solver::run(args),
        Command::Controller(args) => cmd::controller::run(*args),
        Command::Check(args) => cmd::run::check(args),
        Command::Status(args) => cmd::run::status(args),
        Command::Renew(args) => cmd::run::renew(args),
        Command::Inspect(args) => cmd::run::inspect(args),
    }
}
