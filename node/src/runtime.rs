//! Process plumbing shared by the commands: logging, the tokio runtime, shutdown signals,
//! and the default state dir.

use std::path::PathBuf;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Logs to stderr; `RUST_LOG` picks the level (default: info for superpeer, warn otherwise).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,superpeer=info,superpeer_common=info,superpeer_bootstrap_list=info,superpeer_supernode=info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A multi-threaded tokio runtime.
pub fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `--state-dir`, or the platform data dir (with `sub` appended, so roles that run side by
/// side by default keep apart).
pub fn state_dir(given: Option<PathBuf>, sub: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let dirs = directories::ProjectDirs::from("", "", "superpeer")
        .context("no home directory to keep state in; pass --state-dir")?;
    let base = dirs.data_dir().to_path_buf();
    Ok(match sub {
        Some(sub) => base.join(sub),
        None => base,
    })
}
