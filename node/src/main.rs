//! `superpeer`: one program for every role of the network (leaf, supernode, list server)
//! and the client commands that talk to the network or to a running daemon.
//!
//! The binary stays thin: clap parses flags (`cli`), each command turns them into the
//! settings of a role crate and runs it (`cmd/`). Errors become one clear line on stderr and
//! a non-zero exit status.

mod cli;
mod cmd;
mod config_file;
mod control;
mod leaf;
mod names;
mod runtime;
mod share;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

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
