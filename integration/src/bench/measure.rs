//! The measurements of `bench`, in the order the module docs give.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use superpeer::control::{GetEventJson, SearchRequest};
use superpeer_common::{ContentId, TransportLimits};

use super::baseline;
use super::{BenchConfig, DownloadFigures, Latency, Report, SearchFigures};
use crate::harness::{Cluster, Proc, attached, get, listed, search, wait_for};

/// The per-leaf query budget of a supernode is 5 a second: stay under it.
const SEARCH_PACE: Duration = Duration::from_millis(220);

/// Rounds of the download measurements (best of each).
const DOWNLOAD_ROUNDS: usize = 3;

/// The word only leaf `j`'s files have.
fn leaf_word(j: usize) -> String {
    format!("benchleaf{j}")
}

/// Runs every measurement.
pub fn run(config: &BenchConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(
        config.supernodes >= 2 && config.leaves > config.supernodes,
        "bench needs at least 2 supernodes and more leaves than supernodes"
    );
    let mut report = Report::default();
    let mut cluster = Cluster::new(&config.exe, 70)?;
    let list = cluster.list_server("list", &["--heartbeat-ms", "500"])?;
    let mut supernodes = Vec::new();
    for i in 0..config.supernodes {
        supernodes.push(cluster.supernode(&format!("sn-{i}"), &list, &[])?);
    }
    wait_for(
        "the supernodes listed and linked",
        Duration::from_secs(60),
        || {
            if listed(&cluster, &list)?.len() != supernodes.len() {
                return Ok(None);
            }
            for sn in &supernodes {
                if sn.status()?.neighbors != Some(supernodes.len() - 1) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;

    let (leaves, rss_growth, indexed) =
        join_leaves(&mut cluster, config, &supernodes, &mut report)?;
    report.indexed_files = indexed;
    report.memory_bytes_per_indexed_file = rss_growth as f64 / indexed.max(1) as f64;

    let asker = leaves.first().context("no leaves")?;
    let same = leaves
        .get(config.supernodes)
        .context("no second leaf on sn-0")?;
    let other = leaves.get(1).context("no leaf on sn-1")?;
    report.search_local_hit = searches(config, &supernodes, asker, &leaf_word(config.supernodes))?;
    report.search_one_hop_hit = searches(config, &supernodes, asker, &leaf_word(1))?;
    report.search_miss = searches(config, &supernodes, asker, "nosuchbenchword")?;
    let _ = same;

    downloads(&mut cluster, config, &supernodes, asker, &mut report)?;
    report.failover_s = failover(&mut supernodes, asker, other)?;
    Ok(report)
}

/// Starts the leaves one by one and times each until its supernode indexed all its files.
/// Returns them, the supernodes' memory growth meanwhile, and the files indexed.
fn join_leaves(
    cluster: &mut Cluster,
    config: &BenchConfig,
    supernodes: &[Proc],
    report: &mut Report,
) -> anyhow::Result<(Vec<Proc>, u64, usize)> {
    let rss_before: u64 = supernodes.iter().map(rss_bytes).sum();
    let mut leaves = Vec::new();
    let mut joins = Vec::new();
    let mut total = 0;
    for j in 0..config.leaves {
        let label = format!("leaf-{j}");
        let share = cluster.folder(&format!("{label}/share"))?;
        for i in 0..config.files_per_leaf {
            let name = format!("{} item{i} take {}.dat", leaf_word(j), i % 7);
            std::fs::write(share.join(&name), name.as_bytes())?;
        }
        let home = supernodes
            .get(j % supernodes.len())
            .context("no supernode")?;
        let before = home.status()?.indexed.unwrap_or(0);
        let started = Instant::now();
        let leaf = cluster.leaf(
            &label,
            &[
                "--peer",
                &home.pinned.to_string(),
                "--share",
                &share.display().to_string(),
                "--no-election",
            ],
        )?;
        // Polled every few milliseconds (the harness's 200 ms would round every join up
        // to the next poll).
        let deadline = started + Duration::from_secs(60);
        loop {
            let indexed = home.status().ok().and_then(|s| s.indexed).unwrap_or(0);
            if indexed >= before + config.files_per_leaf {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("timed out waiting for {label}'s files indexed");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        joins.push(started.elapsed().as_secs_f64() * 1000.0);
        total += config.files_per_leaf;
        leaves.push(leaf);
    }
    report.join = Latency::of(joins);
    let rss_after: u64 = supernodes.iter().map(rss_bytes).sum();
    Ok((leaves, rss_after.saturating_sub(rss_before), total))
}

/// `config.searches` searches for `word` (with a file-specific second word, so each is a
/// new query) from `asker`: latency to the first result, or to the end for a miss, and
/// the overlay's query messages per search.
fn searches(
    config: &BenchConfig,
    supernodes: &[Proc],
    asker: &Proc,
    word: &str,
) -> anyhow::Result<SearchFigures> {
    let forwarded = || -> anyhow::Result<u64> {
        let mut sum = 0;
        for sn in supernodes {
            sum += sn.status()?.queries_forwarded.unwrap_or(0);
        }
        Ok(sum)
    };
    let before = forwarded()?;
    let control = asker.control()?;
    let mut latencies = Vec::new();
    for k in 0..config.searches {
        let request = SearchRequest {
            keywords: vec![
                word.to_string(),
                format!("item{}", k % config.files_per_leaf),
            ],
            want: 1,
        };
        let started = Instant::now();
        let mut first = None;
        control.search(&request, |_| {
            first.get_or_insert_with(|| started.elapsed());
        })?;
        let took = first.unwrap_or_else(|| started.elapsed());
        latencies.push(took.as_secs_f64() * 1000.0);
        std::thread::sleep(SEARCH_PACE.saturating_sub(started.elapsed()));
    }
    // Counters are read through status; let the last answers arrive.
    std::thread::sleep(Duration::from_millis(300));
    let sent = forwarded()?.saturating_sub(before);
    Ok(SearchFigures {
        latency: Latency::of(latencies),
        messages_per_query: sent as f64 / config.searches.max(1) as f64,
    })
}

/// Downloads from one holder and from three, with the baselines in the same run.
fn downloads(
    cluster: &mut Cluster,
    config: &BenchConfig,
    supernodes: &[Proc],
    downloader: &Proc,
    report: &mut Report,
) -> anyhow::Result<()> {
    let size = config.file_mb * 1_000_000;
    let (single, shared) = (pseudo_random(size, 1), pseudo_random(size, 2));
    let (single_id, shared_id) = (ContentId::of_bytes(&single), ContentId::of_bytes(&shared));
    let mut holders = Vec::new();
    for h in 0..3 {
        let share = cluster.folder(&format!("holder-{h}/share"))?;
        std::fs::write(share.join("bench shared payload.bin"), &shared)?;
        if h == 0 {
            std::fs::write(share.join("bench single payload.bin"), &single)?;
        }
        let home = supernodes
            .get(h % supernodes.len())
            .context("no supernode")?;
        let holder = cluster.leaf(
            &format!("holder-{h}"),
            &[
                "--peer",
                &home.pinned.to_string(),
                "--share",
                &share.display().to_string(),
                "--no-election",
            ],
        )?;
        attached(&holder, Duration::from_secs(30))?;
        holders.push(holder);
    }
    drop((single, shared));
    wait_for("three holders found", Duration::from_secs(30), || {
        let hits = search(downloader, &["bench", "shared", "payload"], 5)?;
        Ok(hits.iter().any(|h| h.sources == 3).then_some(()))
    })?;
    let runtime = superpeer::runtime::tokio()?;
    let (mut quinn, mut tcp) = (Duration::MAX, Duration::MAX);
    let (mut one, mut three) = (f64::MAX, f64::MAX);
    let mut three_sources = 0;
    for _ in 0..DOWNLOAD_ROUNDS {
        quinn =
            quinn.min(runtime.block_on(baseline::bare_quinn(size, TransportLimits::default()))?);
        tcp = tcp.min(runtime.block_on(baseline::tcp_copy(size))?);
        one = one.min(timed_get(downloader, &single_id)?.0);
        let (seconds, sources) = timed_get(downloader, &shared_id)?;
        if seconds < three {
            three = seconds;
            three_sources = sources;
        }
    }
    let mb = size as f64 / 1e6;
    report.bare_quinn_mb_per_s = mb / quinn.as_secs_f64();
    report.tcp_mb_per_s = mb / tcp.as_secs_f64();
    let figures = |seconds: f64, sources: usize| DownloadFigures {
        mb_per_s: mb / seconds,
        of_bare_quinn: quinn.as_secs_f64() / seconds,
        of_tcp: tcp.as_secs_f64() / seconds,
        sources,
    };
    report.download_one_source = figures(one, 1);
    report.download_three_sources = figures(three, three_sources);
    Ok(())
}

/// Downloads `id` and removes the file; the download's own time and its sources.
fn timed_get(downloader: &Proc, id: &ContentId) -> anyhow::Result<(f64, usize)> {
    let events = get(downloader, &id.to_string(), None)?;
    for event in events {
        match event {
            GetEventJson::Finished {
                path,
                seconds,
                sources,
                ..
            } => {
                std::fs::remove_file(Path::new(&path))?;
                return Ok((seconds, sources.iter().filter(|s| s.bytes > 0).count()));
            }
            GetEventJson::Failed { error } => bail!("download failed: {error}"),
            _ => {}
        }
    }
    bail!("the download ended without a result")
}

/// Kills the home supernode of `victim_leaf` and times until its files are found again by
/// `asker` (on another supernode).
fn failover(supernodes: &mut [Proc], asker: &Proc, victim_leaf: &Proc) -> anyhow::Result<f64> {
    let home = victim_leaf
        .status()?
        .supernode
        .context("the leaf is not attached")?
        .node_id;
    let sn = supernodes
        .iter_mut()
        .find(|s| s.pinned.node_id.is_some_and(|id| id.to_string() == home))
        .context("its supernode is not ours")?;
    let leaf_id = victim_leaf
        .pinned
        .node_id
        .context("no node id")?
        .to_string();
    let word = victim_leaf
        .label
        .strip_prefix("leaf-")
        .and_then(|j| j.parse().ok())
        .map(leaf_word)
        .context("not a bench leaf")?;
    sn.kill();
    let killed = Instant::now();
    wait_for(
        "the leaf's files found again",
        Duration::from_secs(60),
        || {
            let attached_elsewhere = victim_leaf
                .status()?
                .supernode
                .is_some_and(|s| s.node_id != home);
            if !attached_elsewhere {
                return Ok(None);
            }
            let hits = search(asker, &[&word, "item0"], 1)?;
            let found = hits
                .iter()
                .any(|h| h.holders.iter().any(|x| x.node_id == leaf_id));
            Ok(found.then_some(()))
        },
    )?;
    Ok(killed.elapsed().as_secs_f64())
}

/// Resident memory of a daemon, from /proc.
fn rss_bytes(proc: &Proc) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// `len` bytes that do not compress, different for each `seed`.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
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
