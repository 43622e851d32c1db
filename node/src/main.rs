//! `superpeer`: one program for every role of the network. See the library (`lib.rs`).
//! Errors become one clear line on stderr and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;
use superpeer::{cli, cmd, runtime};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    runtime::init_logging();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("superpeer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
