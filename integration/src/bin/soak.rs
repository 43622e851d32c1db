//! `cargo run --release -p superpeer-integration --bin soak -- --minutes 30`: a long run of a
//! real network on loopback (a list server, 3 supernodes, 30 leaves) with churn, searches
//! and verified downloads, sampling every daemon's resident memory and open descriptors.
//! What it shows: after warm-up neither grows, and no verified download fails. Not part of
//! the test suite (it takes half an hour); its figures are in BENCHMARKS.md.
//!
//! - A third of the leaves churn: one of them is killed (SIGKILL or SIGTERM, in turn) every
//!   `--churn-secs` and started again on the same address and state. The other leaves, the
//!   supernodes and the list server run throughout: their samples are the ones compared.
//! - A leaf searches every second for a word of another leaf's files; every
//!   `--download-secs` a leaf downloads another's file, checks its bytes against the
//!   content id, and deletes it (so the same file can come again).
#![allow(
    clippy::indexing_slicing,
    reason = "indices come from vectors this binary built itself, with lengths it chose"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use superpeer::control::GetEventJson;
use superpeer_common::ContentId;
use superpeer_integration::harness::{Cluster, Proc, attached, get, search};

/// One sample: (seconds since start, RSS in KiB, open descriptors).
type Sample = (u64, u64, u64);

/// A long run with churn; samples memory and descriptors.
#[derive(Parser)]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    #[arg(long, default_value_t = 3)]
    supernodes: usize,
    #[arg(long, default_value_t = 30)]
    leaves: usize,
    /// Files each leaf shares.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Minutes of warm-up before growth is measured.
    #[arg(long, default_value_t = 5)]
    warmup_minutes: u64,
    /// How often every daemon is sampled.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// How often a churning leaf is killed and started again.
    #[arg(long, default_value_t = 20)]
    churn_secs: u64,
    /// How often a leaf downloads another's file.
    #[arg(long, default_value_t = 5)]
    download_secs: u64,
    /// Loopback subnet (127.0.N.x).
    #[arg(long, default_value_t = 99)]
    subnet: u8,
    /// Run the daemons from this `superpeer` executable instead of this one.
    #[arg(long, value_name = "PATH")]
    daemon_exe: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/soak.json")]
    json: PathBuf,
}

/// One daemon's samples: (seconds since start, RSS in KiB, open descriptors).
#[derive(Default, Serialize)]
struct Series {
    role: &'static str,
    /// Runs throughout (its samples are compared); churning leaves do not.
    steady: bool,
    samples: Vec<Sample>,
}

#[derive(Default, Serialize)]
struct Counts {
    searches: u64,
    searches_with_results: u64,
    search_errors: u64,
    downloads_done: u64,
    downloads_failed: u64,
    downloads_corrupt: u64,
    restarts: u64,
}

struct Daemon {
    proc: Proc,
    role: &'static str,
    steady: bool,
    /// Its files: (content id, a word only its files have).
    files: Vec<(String, String)>,
}

fn main() -> ExitCode {
    if std::env::args()
        .nth(1)
        .is_some_and(|a| superpeer::is_command(&a))
    {
        return superpeer::main_entry();
    }
    let args = Args::parse();
    match run(&args) {
        Ok(healthy) if healthy => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let exe = match &args.daemon_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe()?,
    };
    let mut cluster = Cluster::new(&exe, args.subnet)?;
    let mut rng = StdRng::seed_from_u64(1);
    let list = cluster.list_server("list", &[])?;
    let mut daemons = vec![Daemon {
        proc: list,
        role: "list-server",
        steady: true,
        files: Vec::new(),
    }];
    let list_addr = daemons[0].proc.pinned;
    for i in 0..args.supernodes {
        let list = &daemons[0].proc;
        let sn = cluster.supernode(&format!("sn{i}"), list, &[])?;
        daemons.push(Daemon {
            proc: sn,
            role: "supernode",
            steady: true,
            files: Vec::new(),
        });
    }
    for i in 0..args.leaves {
        let label = format!("leaf{i}");
        let share = cluster.folder(&format!("{label}/share"))?;
        let files = (0..args.files)
            .map(|f| {
                let word = format!("soakword{i}x{f}");
                let len = rng.random_range(50_000..600_000);
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                std::fs::write(share.join(format!("{word} common track.bin")), &bytes)?;
                Ok((ContentId::of_bytes(&bytes).to_string(), word))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let list = list_addr.to_string();
        let share = share.display().to_string();
        let flags = ["--list-server", &list, "--share", &share, "--no-election"];
        let proc = cluster.leaf(&label, &flags)?;
        daemons.push(Daemon {
            proc,
            role: "leaf",
            // Every third leaf churns.
            steady: i % 3 != 0,
            files,
        });
    }
    for d in daemons.iter().filter(|d| d.role == "leaf") {
        attached(&d.proc, Duration::from_secs(60))?;
    }
    println!(
        "network up: 1 list server, {} supernodes, {} leaves",
        args.supernodes, args.leaves
    );

    let start = Instant::now();
    let end = start + Duration::from_secs(args.minutes * 60);
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut counts = Counts::default();
    let (mut next_sample, mut next_churn, mut next_download) = (start, start, start);
    let mut churn_turn = 0u64;
    let leaves: Vec<usize> = (0..daemons.len())
        .filter(|&i| daemons[i].role == "leaf")
        .collect();
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            next_sample += Duration::from_secs(args.sample_secs);
            let at = now.duration_since(start).as_secs();
            for d in &daemons {
                let entry = series.entry(d.proc.label.clone()).or_default();
                entry.role = d.role;
                entry.steady = d.steady;
                if let Some((rss, fds)) = sample(d.proc.pid()) {
                    entry.samples.push((at, rss, fds));
                }
            }
            println!("{:>5} s  {}", at, summary(&series));
        }
        if now >= next_churn {
            next_churn += Duration::from_secs(args.churn_secs);
            let churning: Vec<usize> = leaves
                .iter()
                .copied()
                .filter(|&i| !daemons[i].steady)
                .collect();
            if let Some(&i) = churning.get(rng.random_range(0..churning.len().max(1))) {
                let d = &mut daemons[i];
                if churn_turn % 2 == 0 {
                    d.proc.kill();
                } else {
                    d.proc.terminate();
                    std::thread::sleep(Duration::from_millis(500));
                }
                churn_turn += 1;
                match d.proc.restart() {
                    Ok(()) => counts.restarts += 1,
                    Err(e) => eprintln!("restart of {} failed: {e:#}", d.proc.label),
                }
            }
        }
        if now >= next_download {
            next_download += Duration::from_secs(args.download_secs);
            download_one(&daemons, &leaves, &mut rng, &mut counts);
        }
        // A search a second, for a word of a steady leaf's file.
        let asker = &daemons[leaves[rng.random_range(0..leaves.len())]];
        let holder = &daemons[leaves[rng.random_range(0..leaves.len())]];
        if let Some((_, word)) = holder
            .files
            .get(rng.random_range(0..holder.files.len().max(1)))
        {
            counts.searches += 1;
            match search(&asker.proc, &[word], 10) {
                Ok(hits) if !hits.is_empty() => counts.searches_with_results += 1,
                Ok(_) => {}
                Err(_) => counts.search_errors += 1,
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let warmup = args.warmup_minutes * 60;
    let report = growth(&series, warmup);
    println!("\n{report}");
    println!(
        "searches {} ({} with results, {} errors while a leaf restarted); downloads {} verified, {} failed, {} corrupt; {} restarts",
        counts.searches,
        counts.searches_with_results,
        counts.search_errors,
        counts.downloads_done,
        counts.downloads_failed,
        counts.downloads_corrupt,
        counts.restarts
    );
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::json!({ "counts": counts, "series": series });
    std::fs::write(&args.json, serde_json::to_vec_pretty(&json)?)?;
    println!("JSON written to {}", args.json.display());
    Ok(counts.downloads_corrupt == 0)
}

/// A steady leaf downloads a file of another steady leaf, checks it and deletes it.
fn download_one(daemons: &[Daemon], leaves: &[usize], rng: &mut StdRng, counts: &mut Counts) {
    let steady: Vec<usize> = leaves
        .iter()
        .copied()
        .filter(|&i| daemons[i].steady)
        .collect();
    if steady.len() < 2 {
        return;
    }
    let a = steady[rng.random_range(0..steady.len())];
    let b = steady[rng.random_range(0..steady.len())];
    if a == b {
        return;
    }
    let (by, from) = (&daemons[a], &daemons[b]);
    let Some((content_id, _)) = from.files.get(rng.random_range(0..from.files.len())) else {
        return;
    };
    let events = get(&by.proc, content_id, None);
    let finished = events.ok().and_then(|events| {
        events.into_iter().find_map(|e| match e {
            GetEventJson::Finished { path, .. } => Some(path),
            _ => None,
        })
    });
    match finished {
        Some(path) => {
            let ok = std::fs::read(&path)
                .map(|bytes| ContentId::of_bytes(&bytes).to_string() == *content_id)
                .unwrap_or(false);
            if ok {
                counts.downloads_done += 1;
            } else {
                counts.downloads_corrupt += 1;
            }
            let _ = std::fs::remove_file(Path::new(&path));
        }
        None => counts.downloads_failed += 1,
    }
}

/// A process's resident memory (KiB) and open descriptors.
fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// The latest sample per role: median and largest RSS and descriptors.
fn summary(series: &BTreeMap<String, Series>) -> String {
    let mut by_role: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for s in series.values() {
        if let Some(&(_, rss, fds)) = s.samples.last() {
            by_role.entry(s.role).or_default().push((rss, fds));
        }
    }
    by_role
        .iter()
        .map(|(role, v)| {
            let max_rss = v.iter().map(|x| x.0).max().unwrap_or(0);
            let max_fds = v.iter().map(|x| x.1).max().unwrap_or(0);
            format!("{role}: RSS max {} MiB, fds max {max_fds}", max_rss / 1024)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per role, for the daemons that ran throughout: RSS and descriptors at the end of warm-up
/// and at the end (largest over the role), and the largest growth of one daemon.
fn growth(series: &BTreeMap<String, Series>, warmup: u64) -> String {
    let mut rows = vec![
        "| role | daemons | RSS after warm-up (max) | RSS at end (max) | largest growth of one | fds after warm-up (max) | fds at end (max) |".to_string(),
        "|---|---:|---:|---:|---:|---:|---:|".to_string(),
    ];
    let mut roles: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for s in series.values().filter(|s| s.steady) {
        roles.entry(s.role).or_default().push(s);
    }
    for (role, list) in roles {
        let at_warmup = |s: &Series| s.samples.iter().find(|x| x.0 >= warmup).copied();
        let last = |s: &Series| s.samples.last().copied();
        let max = |f: &dyn Fn(&Series) -> Option<Sample>, pick: fn(Sample) -> u64| {
            list.iter()
                .filter_map(|s| f(s))
                .map(pick)
                .max()
                .unwrap_or(0)
        };
        let growth = list
            .iter()
            .filter_map(|s| Some(last(s)?.1 as i64 - at_warmup(s)?.1 as i64))
            .max()
            .unwrap_or(0);
        rows.push(format!(
            "| {role} | {} | {} MiB | {} MiB | {:+} KiB | {} | {} |",
            list.len(),
            max(&at_warmup, |x| x.1) / 1024,
            max(&last, |x| x.1) / 1024,
            growth,
            max(&at_warmup, |x| x.2),
            max(&last, |x| x.2),
        ));
    }
    rows.join("\n")
}
