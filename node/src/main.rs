//! `superpeer`: one program for every role of the network (leaf, supernode, list server)
//! and the client commands that talk to a running daemon.
//!
//! The binary stays thin: it parses flags into validated settings and hands them to the
//! role crates. Subcommands arrive with the issues that implement them.

use clap::{CommandFactory, Parser};

/// A superpeer (KaZaA / Gnutella 0.6 ultrapeer style) file-sharing network over QUIC.
#[derive(Debug, Parser)]
#[command(name = "superpeer", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Cli::command().print_help()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
