//! `latency-proxy`: a UDP proxy that adds delay, jitter and loss in front of a node.
//!
//! ```text
//! latency-proxy --listen 127.0.51.10:0 --target 127.0.50.10:4000 --delay-ms 40 --loss 1
//! superpeer supernode --listen 127.0.50.10:4000 --advertise <the printed address> ...
//! ```
//! It prints `listening on: ADDR` and runs until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use superpeer_integration::proxy::{Link, Proxy, ProxyConfig};

/// A UDP proxy adding delay, jitter and loss in each direction (for QUIC too: each client
/// gets its own upstream socket).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// UDP address clients send to (port 0 picks a free one; the real address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// UDP address of the node behind the proxy.
    #[arg(long, value_name = "ADDR")]
    target: SocketAddr,
    /// One-way delay added in each direction, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    delay_ms: u64,
    /// Extra one-way delay, uniform in [0, N] ms per datagram (delays, never reorders).
    #[arg(long, value_name = "N", default_value_t = 0)]
    jitter_ms: u64,
    /// Share of datagrams lost in each direction, in percent (0-100).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    loss: f64,
    /// Delay towards the client instead of --delay-ms, in milliseconds.
    #[arg(long, value_name = "N")]
    return_delay_ms: Option<u64>,
    /// Seed of the loss and jitter draws [default: from the clock].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

impl Args {
    /// The validated settings.
    fn config(&self) -> anyhow::Result<ProxyConfig> {
        if !(0.0..=100.0).contains(&self.loss) {
            bail!(
                "--loss must be a percentage from 0 to 100, not {}",
                self.loss
            );
        }
        let link = |delay_ms| Link {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            loss: self.loss / 100.0,
        };
        let seed = match self.seed {
            Some(seed) => seed,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default(),
        };
        Ok(ProxyConfig {
            to_target: link(self.delay_ms),
            to_client: link(self.return_delay_ms.unwrap_or(self.delay_ms)),
            seed,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let proxy = Proxy::start(args.listen, args.target, config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on: {}", proxy.addr());
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    Ok(())
}
