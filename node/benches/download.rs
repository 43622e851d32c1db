//! Download throughput on loopback, against two baselines measured in the same run:
//!
//! - a bare quinn stream: the same bytes over one stream between two endpoints with the
//!   same [`TransportLimits`] the download uses (the transport's limit);
//! - a plain TCP copy over 127.0.0.1 (the machine's limit);
//! - [`download`] from one holder and from three, each holder running [`serve_connection`]
//!   as a daemon does: a real file on disk, a real partial file, every piece verified, the
//!   file read back and hashed whole, synced and given its final name.
//!
//! `cargo bench -p superpeer --bench download` (64 MiB, 7 rounds; about a minute).
//! `DOWNLOAD_BENCH_MIB` and `DOWNLOAD_BENCH_ROUNDS` change the size and the rounds. Without
//! `--bench` (as `cargo test --all-targets` runs it) it does one small round, as a smoke
//! test.
//!
//! Each round runs every variant once, so a slow moment of a shared machine hurts them
//! alike, and a round during which other processes kept the CPU busy is run again (up to
//! three times as many rounds in all). The report gives each variant's best and median
//! rate, the ratios of the downloads to the baselines (of the best and of the medians), the
//! CPU the whole process used (both ends), and the time from the last piece stored to the
//! finished file. A variant's time runs from before connecting until the last byte arrived
//! (baselines) or `download` returned (downloads).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use superpeer::transfer::{
    DownloadPlan, Progress, ServedFiles, Uploads, download, serve_connection,
};
use superpeer_common::wire::{CloseCode, Intent, Role};
use superpeer_common::{ContentId, Endpoint, Identity, PeerAddr, TransportLimits, accept};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Bytes per write in the baselines: one piece, as a holder sends it.
const WRITE: usize = 512 * 1024;

/// Cores other processes may keep busy during a round that counts.
const MAX_OTHERS: f64 = 0.25;

const TCP: &str = "tcp copy";
const QUINN: &str = "bare quinn stream";
const ONE: &str = "download, 1 source";
const THREE: &str = "download, 3 sources";

/// The transport settings of every QUIC endpoint here, baselines and downloads alike: a
/// leaf's (`leaf_limits` differs from the default only in its timeouts).
fn limits() -> TransportLimits {
    TransportLimits::default()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mib = env_or("DOWNLOAD_BENCH_MIB", if full { 64 } else { 4 });
    let rounds = env_or("DOWNLOAD_BENCH_ROUNDS", if full { 7 } else { 1 });
    let runtime = superpeer::runtime::tokio().unwrap();
    runtime.block_on(bench(mib * 1024 * 1024, rounds.max(1)));
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench(size: usize, rounds: usize) {
    let rig = Rig::new(size).await;
    // Warm up: each holder hashes the file once (its outboard is cached from then on), and
    // the first download is checked byte for byte.
    for holder in &rig.holders {
        let path = rig.download(&[*holder]).await.path;
        assert!(
            std::fs::read(&path).unwrap() == rig.payload[..],
            "bytes differ"
        );
        std::fs::remove_file(path).unwrap();
    }
    let (mut clean, mut busy) = (Vec::new(), Vec::new());
    while clean.len() < rounds && clean.len() + busy.len() < 3 * rounds {
        let round = rig.round().await;
        if round.others <= MAX_OTHERS {
            clean.push(round);
        } else {
            busy.push(round);
        }
    }
    let note = if clean.is_empty() {
        // Better figures from a busy machine, flagged, than none.
        clean = std::mem::take(&mut busy);
        format!("all {} rounds ran beside other busy processes", clean.len())
    } else {
        format!("{} more discarded: other processes were busy", busy.len())
    };
    report(size, &clean, &note);
}

/// One run of each variant.
struct Round {
    samples: HashMap<&'static str, Sample>,
    /// Cores other processes kept busy meanwhile.
    others: f64,
}

/// One timed run of a variant.
#[derive(Clone, Copy)]
struct Sample {
    /// Until the last byte arrived, or `download` returned.
    wall: Duration,
    /// Downloads: from the last piece stored to the return (the rest of the read-back,
    /// the final sync, the rename).
    finish: Duration,
    /// CPU time of the whole process (both ends) meanwhile, where the platform tells.
    cpu: Option<Duration>,
}

fn report(size: usize, rounds: &[Round], note: &str) {
    let rate = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    let column = |name: &str, pick: fn(&Sample) -> Duration| -> Vec<Duration> {
        rounds.iter().map(|r| pick(&r.samples[name])).collect()
    };
    let best = |name: &str| *column(name, |s| s.wall).iter().min().unwrap();
    let middle = |name: &str| median(&column(name, |s| s.wall));
    println!(
        "{} MiB over 127.0.0.1, {} cores, rounds: {} ({note}); MB/s best (median)",
        size >> 20,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds.len()
    );
    for name in [TCP, QUINN, ONE, THREE] {
        // Cores kept busy: CPU time over wall time, the median of the runs.
        let mut cores: Vec<f64> = rounds
            .iter()
            .filter_map(|r| {
                let s = r.samples[name];
                Some(s.cpu?.as_secs_f64() / s.wall.as_secs_f64())
            })
            .collect();
        cores.sort_by(f64::total_cmp);
        let cores = cores
            .get(cores.len() / 2)
            .map_or("?".to_string(), |c| format!("{c:.1}"));
        let mut line = format!(
            "  {name:<20} {:>5.0} ({:>4.0})  cpu {cores:>3} cores",
            rate(best(name)),
            rate(middle(name))
        );
        if name == ONE || name == THREE {
            let share = |baseline: &str, pick: &dyn Fn(&str) -> Duration| {
                100.0 * pick(baseline).as_secs_f64() / pick(name).as_secs_f64()
            };
            line += &format!(
                "  {:>3.0}% ({:>3.0}%) of bare quinn, {:>3.0}% ({:>3.0}%) of tcp; \
                 last piece to done {} ms",
                share(QUINN, &best),
                share(QUINN, &middle),
                share(TCP, &best),
                share(TCP, &middle),
                median(&column(name, |s| s.finish)).as_millis(),
            );
        }
        println!("{line}");
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Everything the rounds reuse: the payload on disk, holders serving it, the downloader's
/// endpoint, the baselines' other ends.
struct Rig {
    payload: Bytes,
    id: ContentId,
    holders: Vec<PeerAddr>,
    downloader: Endpoint,
    dest: TempDir,
    quinn_source: PeerAddr,
    tcp_receiver: TcpListener,
    _shared: TempDir,
}

/// One timed download.
struct Run {
    path: PathBuf,
    /// From the call to its return.
    total: Duration,
    /// From the last piece stored to the return.
    finish: Duration,
}

impl Rig {
    async fn new(size: usize) -> Rig {
        let payload = Bytes::from(pseudo_random(size));
        let shared = tempfile::tempdir().unwrap();
        let path = shared.path().join("payload.bin");
        std::fs::write(&path, &payload).unwrap();
        let id = ContentId::of_bytes(&payload);
        let files = ServedFiles::default();
        files.replace(HashMap::from([(id, path)]));
        Rig {
            id,
            holders: (0..3).map(|_| holder(files.clone())).collect(),
            downloader: endpoint(),
            dest: tempfile::tempdir().unwrap(),
            quinn_source: quinn_source(payload.clone()),
            tcp_receiver: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            payload,
            _shared: shared,
        }
    }

    /// Runs each variant once, and measures what other processes took meanwhile.
    async fn round(&self) -> Round {
        let (machine, started, own) = (machine_busy(), Instant::now(), CpuClock::start());
        let mut samples = HashMap::new();
        let cpu = CpuClock::start();
        let wall = self.tcp_copy().await;
        samples.insert(TCP, cpu.sample(wall, Duration::ZERO));
        let cpu = CpuClock::start();
        let wall = self.bare_quinn().await;
        samples.insert(QUINN, cpu.sample(wall, Duration::ZERO));
        for (name, holders) in [(ONE, &self.holders[..1]), (THREE, &self.holders[..])] {
            let cpu = CpuClock::start();
            let run = self.download(holders).await;
            samples.insert(name, cpu.sample(run.total, run.finish));
            std::fs::remove_file(&run.path).unwrap();
        }
        let own = own.sample(Duration::ZERO, Duration::ZERO).cpu;
        let others = match (machine, machine_busy(), own) {
            (Some(before), Some(after), Some(own)) => {
                let others = after.saturating_sub(before).saturating_sub(own);
                others.as_secs_f64() / started.elapsed().as_secs_f64()
            }
            _ => 0.0,
        };
        Round { samples, others }
    }

    async fn download(&self, holders: &[PeerAddr]) -> Run {
        let plan = DownloadPlan {
            content_id: self.id,
            size: self.payload.len() as u64,
            name: "payload.bin".into(),
            holders: holders.to_vec(),
            via: Vec::new(),
        };
        let (tx, mut rx) = mpsc::channel(64);
        let last_piece = tokio::spawn(async move {
            let mut last = None;
            while let Some(event) = rx.recv().await {
                if let Progress::Piece { .. } = event {
                    last = Some(Instant::now());
                }
            }
            last
        });
        let started = Instant::now();
        let path = download(&self.downloader, plan, self.dest.path(), tx)
            .await
            .unwrap();
        let total = started.elapsed();
        let last_piece = last_piece.await.unwrap().unwrap_or(started);
        Run {
            path,
            total,
            finish: (started + total).saturating_duration_since(last_piece),
        }
    }

    /// The payload over one quinn stream from a listening endpoint to the dialling one, as
    /// a download flows, in quinn's own zero-copy chunks both ways.
    async fn bare_quinn(&self) -> Duration {
        let started = Instant::now();
        let conn = self.downloader.connect(&self.quinn_source).await.unwrap();
        let mut recv = conn.quinn().accept_uni().await.unwrap();
        let mut total = 0;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
            total += chunk.bytes.len();
        }
        let elapsed = started.elapsed();
        assert_eq!(total, self.payload.len());
        conn.close(CloseCode::Normal, "done");
        elapsed
    }

    /// The payload over a TCP connection on 127.0.0.1, read into a reused buffer.
    async fn tcp_copy(&self) -> Duration {
        let addr = self.tcp_receiver.local_addr().unwrap();
        let started = Instant::now();
        let ((), received) = tokio::join!(
            async {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                for chunk in self.payload.chunks(WRITE) {
                    stream.write_all(chunk).await.unwrap();
                }
                stream.shutdown().await.unwrap();
            },
            async {
                let (mut stream, _) = self.tcp_receiver.accept().await.unwrap();
                let mut buf = vec![0; WRITE];
                let mut total = 0;
                loop {
                    match stream.read(&mut buf).await.unwrap() {
                        0 => break total,
                        n => total += n,
                    }
                }
            }
        );
        let elapsed = started.elapsed();
        assert_eq!(received, self.payload.len());
        elapsed
    }
}

fn endpoint() -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::bind(identity, "127.0.0.1:0".parse().unwrap(), limits()).unwrap()
}

fn pinned(to: &Endpoint) -> PeerAddr {
    PeerAddr::pinned(to.node_id(), to.local_addr().unwrap())
}

/// Sends the payload on one stream to each connection, then waits for the other end to
/// close it.
fn quinn_source(payload: Bytes) -> PeerAddr {
    let endpoint = endpoint();
    let addr = pinned(&endpoint);
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.incoming().await {
            let payload = payload.clone();
            tokio::spawn(async move {
                let conn = accept(incoming, Duration::from_secs(5)).await.unwrap();
                let mut send = conn.quinn().open_uni().await.unwrap();
                for start in (0..payload.len()).step_by(WRITE) {
                    let end = (start + WRITE).min(payload.len());
                    send.write_chunk(payload.slice(start..end)).await.unwrap();
                }
                send.finish().unwrap();
                conn.closed().await;
            });
        }
    });
    addr
}

/// A holder as a leaf daemon runs one: accepts connections and serves transfer sessions
/// of `files` with its own upload slots.
fn holder(files: ServedFiles) -> PeerAddr {
    let endpoint = endpoint();
    let addr = pinned(&endpoint);
    let uploads = Arc::new(Uploads::default());
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.incoming().await {
            let (files, uploads) = (files.clone(), uploads.clone());
            tokio::spawn(async move {
                let conn = accept(incoming, Duration::from_secs(5)).await.unwrap();
                let Ok((session, hello)) = conn.accept_session().await else {
                    return;
                };
                assert_eq!(hello.intent, Intent::Transfer);
                serve_connection(conn, session, Role::Leaf, files, uploads).await;
            });
        }
    });
    addr
}

/// Incompressible bytes without a short period (xorshift), quickly.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The process's CPU time (user and system, all threads) from `/proc/self/stat`, in clock
/// ticks of 10 ms: coarse, but runs take a hundred ms or more. `None` elsewhere.
struct CpuClock(Option<Duration>);

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock(process_cpu())
    }

    fn sample(self, wall: Duration, finish: Duration) -> Sample {
        let cpu = match (self.0, process_cpu()) {
            (Some(before), Some(after)) => after.checked_sub(before),
            _ => None,
        };
        Sample { wall, finish, cpu }
    }
}

fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is the first, utime
    // the 12th, stime the 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time all processes of the machine took, from `/proc/stat` (ticks of 10 ms).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(Duration::from_millis(busy * 10))
}
