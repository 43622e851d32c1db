//! `superpeer`: one program for every role of the network (leaf, supernode, list server)
//! and the client commands that talk to the network or to a running daemon.
//!
//! The binary (`main.rs`) stays thin: clap parses flags (`cli`), each command turns them
//! into the settings of a role and runs it (`cmd/`). The library exposes the parts that
//! integration tests, benchmarks and the simulator drive directly: the leaf's state
//! machines, the transfer engine, the control client.

pub mod cli;
pub mod cmd;
mod config_file;
pub use config_file::{ConfigFile, parse as parse_config};
pub mod control;
pub mod downloads;
pub mod leaf;
pub mod metrics;
pub mod names;
pub mod nat;
pub mod procs;
pub mod runtime;
pub mod share;
pub mod transfer;

/// Whether `name` is one of `superpeer`'s commands (`leaf`, `supernode`, ...): lets another
/// binary (the benchmark) run as `superpeer` when started with one.
pub fn is_command(name: &str) -> bool {
    use clap::CommandFactory;
    cli::Cli::command().find_subcommand(name).is_some()
}

/// The `superpeer` command line: parses the arguments, runs the command, and turns an error
/// into one clear line on stderr and a non-zero exit status. `main.rs` is only this, and
/// the test harness's own copy of the binary (`integration/`) too.
pub fn main_entry() -> std::process::ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    runtime::init_logging();
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("superpeer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
