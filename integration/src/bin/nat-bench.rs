//! `nat-bench`: NAT traversal measured in the namespace network
//! (`superpeer_integration::netns`), with real `superpeer` daemons driven by the CLI run
//! in their namespaces. As root: `cargo run --release -p superpeer-integration --bin
//! nat-bench` (namespaces and nftables; `conntrack` from conntrack-tools to close the NATs
//! again between punch attempts). Prints a markdown table, or JSON with `--json`.
//!
//! 1. Transfers. One lab: a list server, two supernodes and two public leaves on
//!    198.18.0.0/24, two homes with endpoint-independent NATs (EIM) and one with a
//!    symmetric NAT. Each way of reaching a source downloads a `--file-mb` file
//!    `--repeats` times, a new file each time:
//!    - baseline: a public leaf from a public leaf (direct, no NAT on the way);
//!    - direct: an EIM-NATed leaf from a public one;
//!    - reverse: a public leaf from an EIM-NATed one;
//!    - punched: an EIM-NATed leaf from another;
//!    - relayed: an EIM-NATed leaf from the symmetric-NATed one at the default relay caps
//!      (a `--relay-mb` file, under the 64 MiB byte cap), then in a second lab whose
//!      supernodes have the caps raised, a `--file-mb` file: the relay's own ceiling.
//!
//!    Time to first byte: from starting `superpeer get --json` to its `started` event,
//!    which the daemon sends once the first verified piece is in (the last piece, which
//!    proves the size): connection setup however it is made, plus one piece. It includes
//!    starting the CLI through `ip netns exec` (measured apart: `cli_ms`). Throughput: the
//!    file's size over the time from `started` to `finished`. Medians of the repeats;
//!    ratios against the baseline of the same run.
//! 2. Punch success. A lab per pairing of NAT kinds (holder x downloader) with a list
//!    server, two supernodes and a home for each leaf. The holder shares `--attempts` small
//!    files (two pieces: a download of one piece does not say how its holder was reached);
//!    the downloader fetches each once. For each attempt: how its source was reached
//!    (`punched`, or `relayed` once the punch window passed) and the time to connect (to
//!    `started`, as above, so it includes the 76 KB last piece). Before each attempt
//!    the two routers' conntrack entries towards each other are deleted, so every attempt
//!    meets closed NATs. EIM x EIM runs alone; the three pairings with a symmetric NAT run
//!    at once (their time is mostly the punch window's wait).
//!
//! Every download is checked against its content id. Ctrl-C or SIGTERM deletes this run's
//! namespaces and folders before exiting; after a SIGKILL, the namespaces `sp{pid}-...`
//! are deleted by the next `Lab::new` (any NAT test or bench run).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use superpeer::control::{GetEventJson, StatusJson};
use superpeer::transfer::PIECE;
use superpeer_common::ContentId;
use superpeer_integration::harness::wait_for;
use superpeer_integration::netns::{Home, Lab, Nat};
use superpeer_integration::netns_nodes::Node;

/// Every daemon listens on this port of its host's address.
const PORT: u16 = 7600;
/// Bound on each step of building a network (listing, attaching, publishing).
const SETUP_LIMIT: Duration = Duration::from_secs(90);
/// Bound on one download (a 32 MB file at the relay's default 2 MiB/s takes ~16 s).
const GET_LIMIT: Duration = Duration::from_secs(300);
/// Least time between two punch attempts' starts: a supernode grants one asker 2
/// rendezvous requests a second (burst 10).
const ATTEMPT_SPACING: Duration = Duration::from_millis(600);
/// Relay caps for the "caps raised" lab: a rate, byte cap and lifetime no transfer here
/// reaches.
const RAISED_CAPS: [&str; 6] = [
    "--relay-rate",
    "100000000000",
    "--relay-max-bytes",
    "1000000000000",
    "--relay-max-seconds",
    "3600",
];
const MB: u64 = 1_000_000;
/// Failed attempts' errors kept in the report per pairing.
const MAX_ERRORS: usize = 5;

/// NAT traversal in the namespace network: transfers by way of reaching, punch success.
#[derive(Parser)]
struct Args {
    /// Size of the throughput downloads, in MB (10^6 bytes).
    #[arg(long, default_value_t = 64)]
    file_mb: u64,
    /// Size of the downloads relayed at the default caps, in MB (under the 64 MiB cap).
    #[arg(long, default_value_t = 32)]
    relay_mb: u64,
    /// Downloads of each kind of transfer (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Punch attempts per pairing of NAT kinds.
    #[arg(long, default_value_t = 50)]
    attempts: usize,
    /// Size of each punch attempt's file, in bytes. A piece is 512 KiB; the default makes a
    /// full piece and a 76 KB last one (the first verified), because a download of one
    /// piece does not report how its holder was reached.
    #[arg(long, default_value_t = 600_000)]
    small_bytes: u64,
    /// Leave the NATs' conntrack entries between punch attempts (a punch then finds the
    /// holes the previous attempt made still open).
    #[arg(long)]
    keep_nat_state: bool,
    /// Which part to run.
    #[arg(long, value_enum, default_value_t = Part::All)]
    only: Part,
    /// Run the daemons from this `superpeer` executable [default: this one].
    #[arg(long, value_name = "PATH")]
    exe: Option<PathBuf>,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    All,
    Transfers,
    Punch,
}

fn main() -> ExitCode {
    // The daemons are this very executable started with a `superpeer` command, as in
    // `bench`: `cargo run --bin nat-bench` needs no other binary built first.
    if std::env::args()
        .nth(1)
        .is_some_and(|a| superpeer::is_command(&a))
    {
        return superpeer::main_entry();
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    Lab::available().map_err(|why| anyhow!("{why}"))?;
    tear_down_on_signal();
    let exe = match &args.exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe()?,
    };
    let began = Instant::now();
    let reset = !args.keep_nat_state && conntrack_available();
    if !args.keep_nat_state && !reset && args.only != Part::Transfers {
        eprintln!(
            "nat-bench: no `conntrack` on PATH: NATs stay open between punch attempts \
             (install conntrack-tools for attempts that each meet closed NATs)"
        );
    }
    let mut report = Report {
        machine: Machine::here(),
        cli_ms: 0.0,
        nat_state_reset: reset,
        transfers: Vec::new(),
        punch: Vec::new(),
        seconds: 0.0,
    };
    if args.only != Part::Punch {
        let (transfers, cli_ms) = transfers(args, &exe)?;
        report.transfers = transfers;
        report.cli_ms = cli_ms;
    }
    if args.only != Part::Transfers {
        report.punch = punch(args, &exe, reset)?;
    }
    report.seconds = began.elapsed().as_secs_f64();
    let table = report.table(args);
    if args.json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The transfers.

/// One way of reaching a source, measured.
struct Case {
    name: &'static str,
    what: &'static str,
    holder: &'static str,
    downloader: &'static str,
    bytes: u64,
}

fn transfers(args: &Args, exe: &Path) -> anyhow::Result<(Vec<Transfer>, f64)> {
    let eim = Place::Behind(Nat::EndpointIndependent);
    let (big, relay) = (args.file_mb * MB, args.relay_mb * MB);
    let mut out = Vec::new();
    let cli_ms;
    {
        let net = Net::build(
            exe,
            "xfer",
            &[],
            &[
                ("pub1", Place::Public),
                ("pub2", Place::Public),
                ("a", eim),
                ("b", eim),
                ("c", Place::Behind(Nat::Symmetric)),
            ],
        )?;
        cli_ms = net.leaf("pub2")?.cli_ms()?;
        let cases = [
            ("baseline", "public from public", "pub1", "pub2", big),
            ("direct", "NATed (EIM) from public", "pub1", "a", big),
            ("reverse", "public from NATed (EIM)", "a", "pub1", big),
            ("punched", "NATed (EIM) from NATed (EIM)", "b", "a", big),
            ("relayed", "NATed (EIM) from symmetric NAT", "c", "a", relay),
        ];
        for (name, what, holder, downloader, bytes) in cases {
            let case = Case {
                name,
                what,
                holder,
                downloader,
                bytes,
            };
            out.push(measure(&net, &case, args.repeats)?);
        }
    }
    let net = Net::build(
        exe,
        "relay",
        &RAISED_CAPS,
        &[("a", eim), ("c", Place::Behind(Nat::Symmetric))],
    )?;
    let case = Case {
        name: "relayed, caps raised",
        what: "NATed (EIM) from symmetric NAT",
        holder: "c",
        downloader: "a",
        bytes: big,
    };
    out.push(measure(&net, &case, args.repeats)?);
    let baseline = out
        .first()
        .map(|b| (b.ttfb_ms, b.mb_per_s))
        .unwrap_or_default();
    for transfer in &mut out {
        transfer.ttfb_vs_baseline = ratio(transfer.ttfb_ms, baseline.0);
        transfer.throughput_vs_baseline = ratio(transfer.mb_per_s, baseline.1);
    }
    Ok((out, cli_ms))
}

/// `repeats` downloads of new files of `case.bytes` from its holder to its downloader.
fn measure(net: &Net, case: &Case, repeats: usize) -> anyhow::Result<Transfer> {
    let holder = net.leaf(case.holder)?;
    let downloader = net.leaf(case.downloader)?;
    eprintln!(
        "nat-bench: {} ({}): {repeats} x {} MB",
        case.name,
        case.what,
        case.bytes / MB
    );
    let slug = case.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let files = (0..repeats)
        .map(|i| holder.add_file(&format!("{slug} {i}.bin"), case.bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    holder.wait_published()?;
    let mut runs = Vec::new();
    for content_id in &files {
        downloader.find(content_id, &holder.node_id)?;
        let got = downloader
            .timed_get(content_id)
            .with_context(|| format!("{}: download of {content_id}", case.name))?;
        let streaming = got.total.saturating_sub(got.ttfb).as_secs_f64();
        runs.push(Run {
            reached: got.reached,
            ttfb_ms: millis(got.ttfb),
            mb_per_s: case.bytes as f64 / MB as f64 / streaming.max(1e-9),
            seconds: got.total.as_secs_f64(),
        });
    }
    let ttfb_ms = median(runs.iter().map(|r| r.ttfb_ms).collect());
    let mb_per_s = median(runs.iter().map(|r| r.mb_per_s).collect());
    Ok(Transfer {
        case: case.name,
        what: case.what,
        file_bytes: case.bytes,
        ttfb_ms,
        mb_per_s,
        ttfb_vs_baseline: 0.0,
        throughput_vs_baseline: 0.0,
        runs,
    })
}

// ---------------------------------------------------------------------------------------
// Punch success.

fn punch(args: &Args, exe: &Path, reset: bool) -> anyhow::Result<Vec<Pairing>> {
    use Nat::{EndpointIndependent as Eim, Symmetric as Sym};
    // Alone: its attempts take milliseconds, so their timing should not share the CPU.
    let mut out = vec![pairing(args, exe, reset, Eim, Eim)?];
    let rest = std::thread::scope(|scope| {
        let runs: Vec<_> = [(Eim, Sym), (Sym, Eim), (Sym, Sym)]
            .into_iter()
            .map(|(holder, downloader)| {
                scope.spawn(move || pairing(args, exe, reset, holder, downloader))
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|_| Err(anyhow!("a pairing's thread panicked")))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    out.extend(rest);
    Ok(out)
}

/// `args.attempts` small downloads from a holder behind `holder` by a leaf behind
/// `downloader`, each of a file not fetched before, with the NATs closed before each.
fn pairing(
    args: &Args,
    exe: &Path,
    reset: bool,
    holder_nat: Nat,
    downloader_nat: Nat,
) -> anyhow::Result<Pairing> {
    let tag = format!("p-{}-{}", nat_tag(holder_nat), nat_tag(downloader_nat));
    let name = format!("{} x {}", nat_name(holder_nat), nat_name(downloader_nat));
    let net = Net::build(
        exe,
        &tag,
        &[],
        &[
            ("h", Place::Behind(holder_nat)),
            ("d", Place::Behind(downloader_nat)),
        ],
    )
    .with_context(|| format!("the {name} lab"))?;
    let (holder, downloader) = (net.leaf("h")?, net.leaf("d")?);
    let files = (0..args.attempts)
        .map(|i| holder.add_file(&format!("attempt {i}.bin"), args.small_bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    holder.wait_published()?;
    eprintln!("nat-bench: punching {name}: {} attempts", files.len());
    let drops_before = holder.drops()? + downloader.drops()?;
    let mut attempts = Vec::new();
    let mut last_start: Option<Instant> = None;
    for content_id in &files {
        downloader.find(content_id, &holder.node_id)?;
        if reset {
            holder.forget(downloader.wan);
            downloader.forget(holder.wan);
        }
        if let Some(wait) = last_start.map(|at| ATTEMPT_SPACING.saturating_sub(at.elapsed())) {
            std::thread::sleep(wait);
        }
        last_start = Some(Instant::now());
        attempts.push(match downloader.timed_get(content_id) {
            Ok(got) => Attempt {
                reached: Some(got.reached),
                connect_ms: Some(millis(got.ttfb)),
                error: None,
            },
            Err(e) => Attempt {
                reached: None,
                connect_ms: None,
                error: Some(format!("{e:#}")),
            },
        });
    }
    let drops = holder.drops()? + downloader.drops()? - drops_before;
    Ok(Pairing::of(
        nat_name(holder_nat),
        nat_name(downloader_nat),
        attempts,
        drops,
    ))
}

// ---------------------------------------------------------------------------------------
// A lab with daemons.

/// Where a leaf lives.
#[derive(Clone, Copy)]
enum Place {
    Public,
    Behind(Nat),
}

/// A list server, two supernodes and leaves in a [`Lab`]. Fields drop in order: the
/// daemons, then the lab (its namespaces), then the folder.
struct Net {
    leaves: Vec<Leaf>,
    _supernodes: Vec<Node>,
    _list: Node,
    _lab: Lab,
    _root: Root,
}

/// A leaf daemon and where the internet sees it.
struct Leaf {
    label: String,
    node: Node,
    node_id: String,
    exe: PathBuf,
    /// Its home, if it is behind a router.
    home: Option<Home>,
    /// Its own address if public, else its router's.
    wan: Ipv4Addr,
    /// Where new files are written before they are moved into the share.
    staging: PathBuf,
    files: AtomicU64,
}

impl Net {
    /// The lab `tag` with a list server, two supernodes (with `sn_args`) and `leaves`, all
    /// attached, each seen as what its place makes it.
    fn build(
        exe: &Path,
        tag: &str,
        sn_args: &[&str],
        leaves: &[(&str, Place)],
    ) -> anyhow::Result<Net> {
        let lab = Lab::new(tag)?;
        let root = Root::new()?;
        let list_host = lab.public_host("list")?;
        let sn_hosts = [lab.public_host("sn1")?, lab.public_host("sn2")?];
        let mut hosts = Vec::new();
        for (label, place) in leaves {
            hosts.push(match place {
                Place::Public => {
                    let host = lab.public_host(label)?;
                    let wan = host.ip();
                    (*label, *place, host, None, wan)
                }
                Place::Behind(nat) => {
                    let home = lab.home(&format!("home-{label}"), *nat)?;
                    let host = home.host(label)?;
                    let wan = home.wan_ip();
                    (*label, *place, host, Some(home), wan)
                }
            });
        }
        let dir = root.path();
        let list = Node::start(
            exe,
            &list_host,
            dir,
            "list",
            &["list-server", "--listen", &listen(list_host.ip())],
        )?;
        let list_addr = list.proc.pinned.to_string();
        let mut supernodes = Vec::new();
        for (i, host) in sn_hosts.iter().enumerate() {
            let addr = listen(host.ip());
            let mut sn = vec!["supernode", "--listen", &addr, "--list-server", &list_addr];
            sn.extend_from_slice(sn_args);
            supernodes.push(Node::start(exe, host, dir, &format!("sn{}", i + 1), &sn)?);
        }
        // Leaves start once both supernodes are listed, so each probes both (two views of
        // its mapping).
        wait_for("both supernodes to be listed", SETUP_LIMIT, || {
            let out = list_host
                .command(&exe.to_string_lossy())
                .args(["supernodes", "--json", "--list-server", &list_addr])
                .output()?;
            let listed = String::from_utf8_lossy(&out.stdout).lines().count();
            Ok((listed >= 2).then_some(()))
        })?;
        let mut started = Vec::new();
        for (label, place, host, home, wan) in hosts {
            let share = dir.join(label).join("share");
            let staging = dir.join(label).join("staging");
            std::fs::create_dir_all(&share)?;
            std::fs::create_dir_all(&staging)?;
            let share_arg = share.to_string_lossy().into_owned();
            let node = Node::start(
                exe,
                &host,
                dir,
                label,
                &[
                    "leaf",
                    "--listen",
                    &listen(host.ip()),
                    "--list-server",
                    &list_addr,
                    "--share",
                    &share_arg,
                    "--no-election",
                ],
            )?;
            started.push((label, place, node, home, wan, staging));
        }
        let mut ready = Vec::new();
        for (label, place, node, home, wan, staging) in started {
            let (kind, mapping) = match place {
                Place::Public => ("public", None),
                Place::Behind(Nat::EndpointIndependent) => ("nat", Some("endpoint-independent")),
                Place::Behind(Nat::Symmetric) => ("nat", Some("endpoint-dependent")),
            };
            let status = wait_status(&node, &format!("{label} to be {kind} {mapping:?}"), |s| {
                s.supernode.is_some()
                    && s.reachability.kind == kind
                    && s.reachability.mapping.as_deref() == mapping
            })?;
            ready.push(Leaf {
                label: label.to_string(),
                node,
                node_id: status.node_id,
                exe: exe.to_path_buf(),
                home,
                wan,
                staging,
                files: AtomicU64::new(0),
            });
        }
        Ok(Net {
            leaves: ready,
            _supernodes: supernodes,
            _list: list,
            _lab: lab,
            _root: root,
        })
    }

    fn leaf(&self, label: &str) -> anyhow::Result<&Leaf> {
        self.leaves
            .iter()
            .find(|l| l.label == label)
            .ok_or_else(|| anyhow!("no leaf {label}"))
    }
}

impl Leaf {
    /// Writes a new file of `len` pseudo-random bytes beside the share and moves it in (the
    /// folder watch never sees it half written); its content id.
    fn add_file(&self, name: &str, len: u64) -> anyhow::Result<String> {
        static SEED: AtomicU64 = AtomicU64::new(1);
        let bytes = pseudo_random(len, SEED.fetch_add(1, Ordering::Relaxed));
        let staged = self.staging.join(name);
        std::fs::write(&staged, &bytes)?;
        std::fs::rename(&staged, self.node.share.join(name))?;
        self.files.fetch_add(1, Ordering::Relaxed);
        Ok(ContentId::of_bytes(&bytes).to_string())
    }

    /// Waits until every file added is shared and indexed by its supernode.
    fn wait_published(&self) -> anyhow::Result<()> {
        let files = self.files.load(Ordering::Relaxed) as usize;
        let what = format!("{}'s {files} files to be indexed", self.label);
        wait_status(&self.node, &what, |s| {
            s.shared_files == files
                && s.publication
                    .as_ref()
                    .is_some_and(|p| p.pending == 0 && p.indexed == files)
        })
        .map(drop)
    }

    /// Searches until a result names `holder` for `content_id` (the daemon remembers it,
    /// so the `get` that follows dials at once instead of searching).
    fn find(&self, content_id: &str, holder: &str) -> anyhow::Result<()> {
        let what = format!("{} to find {content_id}", self.label);
        wait_for(&what, SETUP_LIMIT, || {
            let found = self.node.search(content_id)?.into_iter().any(|hit| {
                hit.content_id == content_id && hit.holders.iter().any(|h| h.node_id == holder)
            });
            Ok(found.then_some(()))
        })
    }

    /// `superpeer get --json` in the leaf's namespace, timed from its start: when the
    /// `started` event came (the first verified piece is in) and when `finished` did. The
    /// file is checked against its content id, then deleted.
    fn timed_get(&self, content_id: &str) -> anyhow::Result<Got> {
        let began = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node.ns])
            .arg(&self.exe)
            .args(["get", "--json", content_id, "--state-dir"])
            .arg(&self.node.proc.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `superpeer get`")?;
        let stdout = child.stdout.take().context("no stdout from get")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        let mut ttfb = None;
        let ended = loop {
            let left = GET_LIMIT.saturating_sub(began.elapsed());
            let Ok((at, line)) = lines.recv_timeout(left) else {
                break Err(anyhow!("no result within {GET_LIMIT:?}"));
            };
            match serde_json::from_str::<GetEventJson>(&line) {
                Ok(GetEventJson::Started { .. }) => {
                    ttfb.get_or_insert(at.duration_since(began));
                }
                Ok(GetEventJson::Finished { path, sources, .. }) => {
                    break Ok((at.duration_since(began), path, sources));
                }
                Ok(GetEventJson::Failed { error }) => break Err(anyhow!("failed: {error}")),
                _ => {}
            }
        };
        let _ = child.kill();
        let output = child.wait_with_output()?;
        let (total, path, sources) = ended.with_context(|| {
            format!("stderr: {}", String::from_utf8_lossy(&output.stderr).trim())
        })?;
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
        if ContentId::of_bytes(&bytes).to_string() != content_id {
            bail!("{path} does not match its content id {content_id}");
        }
        std::fs::remove_file(&path)?;
        let reached: Vec<String> = sources
            .into_iter()
            .map(|s| s.reached.unwrap_or_else(|| "unknown".into()))
            .collect();
        Ok(Got {
            ttfb: ttfb.context("no started event")?,
            total,
            reached: reached.join("+"),
        })
    }

    /// Deletes the conntrack entries of flows this leaf's router opened towards `peer`:
    /// the next attempt meets a closed NAT again. Flows to the supernodes stay.
    fn forget(&self, peer: Ipv4Addr) {
        if let Some(home) = &self.home {
            let _ = home
                .router()
                .command("conntrack")
                .args(["-D", "-d", &peer.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Datagrams of flows it never opened that its router dropped so far (0 if public).
    fn drops(&self) -> anyhow::Result<u64> {
        match &self.home {
            Some(home) => Ok(home.unsolicited_drops()?),
            None => Ok(0),
        }
    }

    /// Median wall time of `superpeer status` run as `get` is (through `ip netns exec`):
    /// the part of a time to first byte that is only the CLI starting.
    fn cli_ms(&self) -> anyhow::Result<f64> {
        let mut samples = Vec::new();
        for _ in 0..9 {
            let began = Instant::now();
            let out = self.node.cli(&["status", "--json"])?;
            if !out.status.success() {
                bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            samples.push(millis(began.elapsed()));
        }
        Ok(median(samples))
    }
}

/// What one timed download gave.
struct Got {
    /// To the `started` event.
    ttfb: Duration,
    /// To the `finished` event.
    total: Duration,
    /// How its sources were reached.
    reached: String,
}

fn wait_status(
    node: &Node,
    what: &str,
    ok: impl Fn(&StatusJson) -> bool,
) -> anyhow::Result<StatusJson> {
    wait_for(what, SETUP_LIMIT, || {
        let status = node.status()?;
        Ok(ok(&status).then_some(status))
    })
}

fn listen(ip: Ipv4Addr) -> String {
    format!("{ip}:{PORT}")
}

/// `len` bytes of splitmix64 from `seed`: every file its own content.
fn pseudo_random(len: u64, seed: u64) -> Vec<u8> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len.saturating_add(8));
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn conntrack_available() -> bool {
    Command::new("conntrack")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn nat_tag(nat: Nat) -> &'static str {
    match nat {
        Nat::EndpointIndependent => "eim",
        Nat::Symmetric => "sym",
    }
}

fn nat_name(nat: Nat) -> &'static str {
    match nat {
        Nat::EndpointIndependent => "EIM",
        Nat::Symmetric => "symmetric",
    }
}

// ---------------------------------------------------------------------------------------
// Tearing down on a signal.

/// This run's folders, for the signal handler to delete.
static ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary folder for one network, registered in [`ROOTS`] while it lives.
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> anyhow::Result<Root> {
        let dir = tempfile::Builder::new().prefix("nat-bench-").tempdir()?;
        lock_roots().push(dir.path().to_path_buf());
        Ok(Root(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        lock_roots().retain(|p| p != self.0.path());
    }
}

fn lock_roots() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    ROOTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// On SIGINT or SIGTERM: kill what runs in this run's namespaces (`sp{pid}-...`), delete
/// them and this run's folders, and exit. The labs' own drops would not run: the threads
/// that own them are busy in blocking calls.
fn tear_down_on_signal() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let code = runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return None;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Some(130),
                _ = term.recv() => Some(143),
            }
        });
        let Some(code) = code else { return };
        eprintln!("nat-bench: stopping; deleting this run's namespaces");
        delete_own_namespaces();
        for root in lock_roots().iter() {
            let _ = std::fs::remove_dir_all(root);
        }
        std::process::exit(code);
    });
}

fn delete_own_namespaces() {
    let prefix = format!("sp{}-", std::process::id());
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let list = String::from_utf8_lossy(&list.stdout);
    for ns in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|ns| ns.starts_with(&prefix))
    {
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", ns]).output() {
            let pids = String::from_utf8_lossy(&pids.stdout);
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if !pids.is_empty() {
                let _ = Command::new("kill").arg("-KILL").args(&pids).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", ns]).status();
    }
}

// ---------------------------------------------------------------------------------------
// The report.

#[derive(Serialize)]
struct Report {
    machine: Machine,
    /// Median wall time of a CLI command through `ip netns exec` (`status`): included in
    /// every time to first byte.
    cli_ms: f64,
    /// Whether conntrack entries between the two homes were deleted before each attempt.
    nat_state_reset: bool,
    transfers: Vec<Transfer>,
    punch: Vec<Pairing>,
    /// The whole run.
    seconds: f64,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
}

impl Machine {
    fn here() -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// One way of reaching a source: medians of its runs, and ratios to the baseline's.
#[derive(Serialize)]
struct Transfer {
    case: &'static str,
    what: &'static str,
    file_bytes: u64,
    ttfb_ms: f64,
    mb_per_s: f64,
    ttfb_vs_baseline: f64,
    throughput_vs_baseline: f64,
    runs: Vec<Run>,
}

#[derive(Serialize)]
struct Run {
    reached: String,
    ttfb_ms: f64,
    mb_per_s: f64,
    seconds: f64,
}

/// Punch attempts for one pairing of NAT kinds.
#[derive(Serialize)]
struct Pairing {
    holder: &'static str,
    downloader: &'static str,
    attempts: usize,
    punched: usize,
    relayed: usize,
    /// Reached some other way (direct or reverse: not expected between two NATed leaves).
    other: usize,
    failed: usize,
    /// Datagrams the two routers dropped as unsolicited during the attempts: the punches'
    /// first packets meeting a closed NAT (none after the first attempt if NATs stayed open).
    router_drops: u64,
    punched_connect_ms: Option<Spread>,
    relayed_connect_ms: Option<Spread>,
    /// The first few failures' errors.
    errors: Vec<String>,
    detail: Vec<Attempt>,
}

#[derive(Serialize)]
struct Attempt {
    reached: Option<String>,
    connect_ms: Option<f64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Spread {
    p50: f64,
    p90: f64,
    max: f64,
}

impl Spread {
    fn of(mut samples: Vec<f64>) -> Option<Spread> {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied()
        };
        Some(Spread {
            p50: at(0.5)?,
            p90: at(0.9)?,
            max: at(1.0)?,
        })
    }
}

impl Pairing {
    fn of(
        holder: &'static str,
        downloader: &'static str,
        detail: Vec<Attempt>,
        router_drops: u64,
    ) -> Pairing {
        let reached = |how: &'static str| {
            detail
                .iter()
                .filter(move |a| a.reached.as_deref() == Some(how))
        };
        let connect = |how| Spread::of(reached(how).filter_map(|a| a.connect_ms).collect());
        let failed = detail.iter().filter(|a| a.error.is_some()).count();
        let (punched, relayed) = (reached("punched").count(), reached("relayed").count());
        Pairing {
            holder,
            downloader,
            attempts: detail.len(),
            punched,
            relayed,
            other: detail.len() - punched - relayed - failed,
            failed,
            router_drops,
            punched_connect_ms: connect("punched"),
            relayed_connect_ms: connect("relayed"),
            errors: detail
                .iter()
                .filter_map(|a| a.error.clone())
                .take(MAX_ERRORS)
                .collect(),
            detail,
        }
    }
}

impl Report {
    /// The markdown tables.
    fn table(&self, args: &Args) -> String {
        let mut out = format!(
            "nat-bench: {} CPUs, Linux {}, {:.0} s in all\n",
            self.machine.cpus, self.machine.kernel, self.seconds
        );
        if !self.transfers.is_empty() {
            out += &format!(
                "\nTransfers ({} runs each, medians; time to first byte = `get` start to its \
                 `started` event, including {:.1} ms of CLI start; throughput = size / \
                 (`finished` - `started`))\n\n",
                args.repeats, self.cli_ms
            );
            out += "| transfer | downloader from holder | reached | file | time to first byte \
                    | vs baseline | throughput | vs baseline |\n";
            out += "|---|---|---|---:|---:|---:|---:|---:|\n";
            for t in &self.transfers {
                out += &format!(
                    "| {} | {} | {} | {} MB | {:.1} ms | {:.2}x | {:.1} MB/s | {:.0}% |\n",
                    t.case,
                    t.what,
                    reached_summary(&t.runs),
                    t.file_bytes / MB,
                    t.ttfb_ms,
                    t.ttfb_vs_baseline,
                    t.mb_per_s,
                    t.throughput_vs_baseline * 100.0
                );
            }
        }
        if !self.punch.is_empty() {
            out += &format!(
                "\nPunch attempts ({} B files; time to connect = `get` start to `started`, the \
                 first verified piece ({} B) included; NATs closed before each attempt: {})\n\n",
                args.small_bytes,
                last_piece(args.small_bytes),
                if self.nat_state_reset { "yes" } else { "no" }
            );
            out += "| holder x downloader | attempts | punched | relayed | other | failed \
                    | connect, punched (p50 / p90 / max) | connect, relayed (p50 / p90 / max) \
                    | router drops |\n";
            out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
            for p in &self.punch {
                out += &format!(
                    "| {} x {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    p.holder,
                    p.downloader,
                    p.attempts,
                    p.punched,
                    p.relayed,
                    p.other,
                    p.failed,
                    spread(p.punched_connect_ms.as_ref()),
                    spread(p.relayed_connect_ms.as_ref()),
                    p.router_drops
                );
            }
            for p in self.punch.iter().filter(|p| !p.errors.is_empty()) {
                out += &format!(
                    "\n{} x {} failures: {}\n",
                    p.holder,
                    p.downloader,
                    p.errors.join("; ")
                );
            }
        }
        out
    }
}

/// The way every run was reached, or each run's if they differ.
fn reached_summary(runs: &[Run]) -> String {
    let mut kinds: Vec<&str> = runs.iter().map(|r| r.reached.as_str()).collect();
    kinds.dedup();
    kinds.join(" / ")
}

fn spread(s: Option<&Spread>) -> String {
    s.map_or_else(
        || "-".into(),
        |s| format!("{:.0} / {:.0} / {:.0} ms", s.p50, s.p90, s.max),
    )
}

/// Bytes of the last piece of a file of `size` bytes: the first one a download verifies.
fn last_piece(size: u64) -> u64 {
    match size % PIECE {
        0 => size.min(PIECE),
        tail => tail,
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        value / baseline
    } else {
        0.0
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
