//! The command line, as DESIGN.md's contract gives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use superpeer_common::PeerAddr;

/// A superpeer (KaZaA / Gnutella 0.6 ultrapeer style) file-sharing network over QUIC.
#[derive(Debug, Parser)]
#[command(name = "superpeer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a list server: the registry of live, verified supernodes.
    ListServer(ListServerArgs),
    /// Print the supernodes a list server hands out (the list a leaf would get).
    Supernodes(SupernodesArgs),
    /// Run a supernode: admit leaves, index their files, route queries across the overlay.
    Supernode(SupernodeArgs),
    /// Run a leaf: join the fastest supernode, share a folder, search.
    Leaf(LeafArgs),
    /// Search the network through the running daemon; results print as they arrive.
    Search(SearchArgs),
    /// Download a file by content id through the running daemon, verified piece by piece.
    Get(GetArgs),
    /// Show the running daemon's state.
    Status(StatusArgs),
    /// Turn the running leaf into a supernode, without a restart.
    Promote(PromoteArgs),
    /// Open the running daemon's web UI: prints a one-time login URL (and opens it when
    /// there is a desktop).
    Ui(UiArgs),
    /// Run a whole network on this machine and show it at work: joins, an election, a
    /// search, a verified download, a supernode failing.
    Testnet(TestnetArgs),
}

#[derive(Debug, Args)]
pub struct TestnetArgs {
    /// Supernodes to start with.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=20))]
    pub supernodes: usize,
    /// Leaves to start.
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub leaves: usize,
    /// Keep the network running after the demo (Ctrl-C stops it).
    #[arg(long)]
    pub keep: bool,
}

/// What every node daemon takes, leaf or supernode (one struct flattened into both
/// commands, so the two cannot drift apart; `--config` fills the same settings).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// UDP address to listen on (port 0 picks a free one; the real address is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// List server to get supernodes from (a supernode registers with it), as HOST:PORT or
    /// NODEID@HOST:PORT; may be repeated.
    #[arg(long = "list-server", value_name = "ADDR")]
    pub list_servers: Vec<PeerAddr>,
    /// A supernode to consider (a supernode links to it), as NODEID@HOST:PORT (or
    /// HOST:PORT); may be repeated.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<PeerAddr>,
    /// The address others should dial (port forwarding, proxies) [default: --listen].
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<std::net::SocketAddr>,
    /// Share the files of this folder (recursively); changes are published as they happen.
    #[arg(long, value_name = "DIR")]
    pub share: Option<PathBuf>,
    /// Where downloads are written [default: STATE_DIR/downloads].
    #[arg(long, value_name = "DIR")]
    pub downloads: Option<PathBuf>,
    /// Where the identity, caches and the control file live [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Control API address (127.0.0.1 only) [default: 127.0.0.1 on a free port].
    #[arg(long, value_name = "ADDR")]
    pub control: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given; they carry no
    /// secrets, but bind a loopback or private address unless you mean to publish them).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Leaves admitted as a supernode [default: 500].
    #[arg(long, value_name = "N")]
    pub max_leaves: Option<usize>,
    /// As a leaf, supernodes to attach to at once: the lowest-RTT one, and spares that
    /// index this leaf's files too and take over at once if it goes away [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3))]
    pub supernodes: Option<u32>,
    /// Files a supernode indexes per leaf at most (each costs about 270 bytes of memory;
    /// 500 leaves x 10,000 files is 1.35 GB) [default: 10000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_files_per_leaf: Option<u32>,
    /// Connections a supernode holds at once: its leaves, links, probes and transfers. One
    /// source address gets 64 of them (a quarter if that is less) [default: 4096].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,
    /// As a supernode, sessions relayed at once for firewalled leaves that cannot reach
    /// each other otherwise (each node takes part in at most 4) [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub relay_sessions: Option<u32>,
    /// Bytes per second one relayed session may carry [default: 2097152, 2 MiB/s].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub relay_rate: Option<u64>,
    /// Bytes one relayed session may carry in all, before it is cut off [default: 67108864,
    /// 64 MiB].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub relay_max_bytes: Option<u64>,
    /// Seconds one relayed session may last [default: 120].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub relay_max_seconds: Option<u64>,
    /// A TOML file with the same settings as the flags (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LeafArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Never promote this leaf to supernode by itself (`superpeer promote` still works).
    #[arg(long)]
    pub no_election: bool,
    /// Seconds up before this leaf may elect itself supernode when the network is short.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub promote_after: u64,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The running daemon's state dir [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// The running daemon's state dir [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The running daemon's state dir [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// One JSON object per result and line.
    #[arg(long)]
    pub json: bool,
    /// How many results to ask for.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub want: u32,
    /// Words that must all appear in a file's name.
    #[arg(required = true, value_name = "KEYWORD")]
    pub keywords: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The running daemon's state dir [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// One JSON object per progress event and line.
    #[arg(long)]
    pub json: bool,
    /// The content id (64 hex digits, as `search` and `b3sum` print it).
    #[arg(value_name = "CONTENT_ID")]
    pub content_id: String,
    /// Where to put the file [default: the daemon's downloads folder, under the name from
    /// the search result].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The running daemon's state dir [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SupernodeArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Most links to other supernodes [default: 32].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_neighbors: Option<u16>,
    /// Search only through neighbours and relays: publish nothing to the keyword
    /// directory and look nothing up there (it still answers as an owner). For
    /// comparisons; the directory is what lets a search reach every supernode.
    #[arg(long)]
    pub no_directory: bool,
}

#[derive(Debug, Args)]
pub struct ListServerArgs {
    /// UDP address to listen on (port 0 picks a free one; the real address is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Where the identity key and the saved registry live [default: the platform data dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given; they carry no
    /// secrets, but bind a loopback or private address unless you mean to publish them).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// How often supernodes heartbeat, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub heartbeat_ms: u64,
    /// Drop a supernode not heard from for this long, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub expiry_ms: u64,
    /// Supernodes listed per source address at most (more behind one NAT, or on one test
    /// machine, need a higher value).
    #[arg(long, value_name = "N", default_value_t = superpeer_bootstrap_list::DEFAULT_MAX_PER_SOURCE as u32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_per_address: u32,
}

#[derive(Debug, Args)]
pub struct SupernodesArgs {
    /// List server to ask, as HOST:PORT or NODEID@HOST:PORT (pinned); may be repeated.
    #[arg(long = "list-server", value_name = "ADDR", required = true)]
    pub list_servers: Vec<PeerAddr>,
    /// One JSON object per supernode and line.
    #[arg(long)]
    pub json: bool,
    /// Ask for at most this many supernodes.
    #[arg(long, default_value_t = 50)]
    pub max: u16,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_supernode_takes_a_connection_total() {
        let parse = |n: &str| {
            let argv = ["superpeer", "supernode", "--max-connections", n];
            match Cli::try_parse_from(argv).map(|cli| cli.command) {
                Ok(Command::Supernode(args)) => Ok(args.daemon.max_connections),
                Ok(_) => panic!("wrong command"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(parse("256").unwrap(), Some(256));
        assert!(parse("0").is_err());
        assert!(parse("many").is_err());
    }

    #[test]
    fn pinned_list_server_addresses_parse() {
        let id = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let cli = Cli::try_parse_from([
            "superpeer",
            "supernodes",
            "--list-server",
            &format!("{id}@127.0.0.2:4000"),
            "--list-server",
            "127.0.0.3:4000",
            "--json",
        ])
        .unwrap();
        let Command::Supernodes(args) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(args.list_servers.len(), 2);
        assert_eq!(args.list_servers[0].node_id.unwrap().to_string(), id);
        assert!(args.json);
        assert!(
            Cli::try_parse_from(["superpeer", "supernodes", "--list-server", "nonsense"]).is_err()
        );
    }
}
