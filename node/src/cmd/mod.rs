//! One file per command.

mod daemon;
mod get;
mod leaf;
mod list_server;
mod promote;
mod search;
mod status;
mod supernode;
mod supernodes;
mod testnet;
mod ui;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::ListServer(args) => list_server::run(args),
        Command::Supernodes(args) => supernodes::run(args),
        Command::Supernode(args) => supernode::run(args),
        Command::Leaf(args) => leaf::run(args),
        Command::Search(args) => search::run(args),
        Command::Get(args) => get::run(args),
        Command::Status(args) => status::run(args),
        Command::Promote(args) => promote::run(args),
        Command::Testnet(args) => testnet::run(args),
        Command::Ui(args) => ui::run(args),
    }
}
