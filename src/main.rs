//! `integrations`: the operator CLI over the encrypted, scoped store.
//!
//! Thin: it parses flags, starts a runtime and runs the command ([`cli`]),
//! whose work is in the `integrations` library and the common crates.
//! Secrets never travel in argv; configs come from stdin or a file.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    store::logging::init();
    let cli = Cli::parse();
    // The API serves on every core; a one-shot command needs one thread.
    let mut runtime = if matches!(cli.command, Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
