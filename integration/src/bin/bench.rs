//! `cargo run --release -p superpeer-integration --bin bench`: the figures of a real
//! network on this machine (see `superpeer_integration::bench`). Prints a table and writes
//! JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use superpeer_integration::bench::{self, BenchConfig};

/// Measures a real superpeer network over loopback.
#[derive(Parser)]
struct Args {
    /// Supernodes.
    #[arg(long, default_value_t = 3)]
    supernodes: usize,
    /// Leaves (placed round-robin on the supernodes).
    #[arg(long, default_value_t = 9)]
    leaves: usize,
    /// Files each leaf shares.
    #[arg(long, default_value_t = 1000)]
    files_per_leaf: usize,
    /// Searches of each kind (local hit, one-hop hit, miss).
    #[arg(long, default_value_t = 20)]
    searches: usize,
    /// Size of the downloaded files, in MB.
    #[arg(long, default_value_t = 64)]
    file_mb: usize,
    /// Run the network's daemons from this `superpeer` executable instead of this one (to
    /// measure another build with the same harness, in the same run).
    #[arg(long, value_name = "PATH")]
    daemon_exe: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench.json")]
    json: PathBuf,
}

fn main() -> ExitCode {
    // The network's daemons are this very executable started with a `superpeer` command,
    // so `cargo run --bin bench` needs no other binary built first.
    if std::env::args()
        .nth(1)
        .is_some_and(|a| superpeer::is_command(&a))
    {
        return superpeer::main_entry();
    }
    let args = Args::parse();
    let run = || -> anyhow::Result<()> {
        let config = BenchConfig {
            supernodes: args.supernodes,
            leaves: args.leaves,
            files_per_leaf: args.files_per_leaf,
            searches: args.searches,
            file_mb: args.file_mb,
            exe: match &args.daemon_exe {
                Some(exe) => exe.clone(),
                None => std::env::current_exe()?,
            },
        };
        let report = bench::run(&config)?;
        print!("{}", report.table(&config));
        if let Some(dir) = args.json.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::json!({ "config": config, "report": report });
        std::fs::write(&args.json, serde_json::to_vec_pretty(&json)?)?;
        println!("\nJSON written to {}", args.json.display());
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
