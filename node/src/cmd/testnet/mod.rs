//! `superpeer testnet`: a whole network on this machine, narrated as it happens.
//!
//! Real `superpeer` processes on 127.77.x.y addresses (ports picked free by the system),
//! each with its own state dir and log under one temporary folder:
//! 1. a list server, then N supernodes with room for fewer leaves than are coming (so the
//!    network runs short, as it does when users arrive faster than supernodes);
//! 2. M leaves sharing generated files; as they join, which supernode each chose and at
//!    what RTT, and the leaf that promotes itself when the supernodes run short;
//! 3. a search and where its hits came from, then a verified download of one of them;
//! 4. a supernode killed with SIGKILL and its leaves failing over;
//! 5. a summary. With `--keep` it stays up and prints how to reach each daemon.

mod files;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use superpeer_common::ContentId;

use crate::cli::TestnetArgs;
use crate::control::{GetEventJson, GetRequest, SearchRequest, SearchResultJson};
use crate::procs::{self, Proc};
use crate::runtime;

/// Longest wait for any one step of the demo.
const STEP_TIMEOUT: Duration = Duration::from_secs(45);

/// How often statuses are read while waiting.
const POLL: Duration = Duration::from_millis(250);

pub fn run(args: TestnetArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = std::env::temp_dir().join(format!("superpeer-testnet-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut net = Testnet::new(root.clone());
    let outcome = demo(&mut net, &args, started);
    if args.keep && outcome.is_ok() {
        keep(&net)?;
    }
    net.stop_all();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome
}

/// The running daemons, and names for people.
struct Testnet {
    root: PathBuf,
    /// 127.77.B.x: B from our pid, so two testnets on one machine keep apart.
    block: u32,
    list: Option<Proc>,
    supernodes: Vec<Proc>,
    leaves: Vec<Proc>,
    labels: HashMap<String, String>,
}

impl Testnet {
    fn new(root: PathBuf) -> Testnet {
        Testnet {
            root,
            block: std::process::id() % 250 + 1,
            list: None,
            supernodes: Vec::new(),
            leaves: Vec::new(),
            labels: HashMap::new(),
        }
    }

    fn ip(&self, host: usize) -> String {
        format!("127.77.{}.{host}", self.block)
    }

    fn start(&mut self, label: &str, args: Vec<String>) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("cannot find the superpeer executable")?;
        let proc = Proc::start(&exe, label, &self.root.join(label), &args)?;
        if let Some(id) = proc.pinned.node_id {
            self.labels.insert(id.to_string(), label.to_string());
        }
        Ok(proc)
    }

    /// The label of a node id, or its short form.
    fn label(&self, node_id: &str) -> String {
        self.labels
            .get(node_id)
            .cloned()
            .unwrap_or_else(|| node_id.get(..8).unwrap_or(node_id).to_string())
    }

    fn stop_all(&mut self) {
        // Leaves and supernodes together (leaves told to move by a stopping supernode have
        // nowhere to go anyway), then the list server.
        procs::stop_all(self.leaves.iter_mut().chain(self.supernodes.iter_mut()));
        procs::stop_all(self.list.iter_mut());
    }
}

fn demo(net: &mut Testnet, args: &TestnetArgs, started: Instant) -> anyhow::Result<()> {
    let (n, m) = (args.supernodes, args.leaves);
    // Room for fewer leaves than are coming: someone will have to step up.
    let room = (m.saturating_sub(1) / n).max(1);
    println!(
        "superpeer testnet: a list server, {n} supernodes (room for {room} leaves each) and {m} \
         leaves on {}, state and logs in {}",
        net.ip(0),
        net.root.display()
    );
    println!();
    let list_args = strings(&["list-server", "--listen", &format!("{}:0", net.ip(1))])
        .into_iter()
        .chain(strings(&["--heartbeat-ms", "500", "--expiry-ms", "3000"]))
        .collect();
    let list = net.start("list", list_args)?;
    println!("list server  {}", list.pinned);
    let list_addr = list.pinned.to_string();
    net.list = Some(list);
    for i in 1..=n {
        let args = strings(&[
            "supernode",
            "--listen",
            &format!("{}:0", net.ip(10 + i)),
            "--list-server",
            &list_addr,
            "--max-leaves",
            &room.to_string(),
        ]);
        let sn = net.start(&format!("sn-{i}"), args)?;
        println!("sn-{i}         {} (room for {room} leaves)", sn.pinned.addr);
        net.supernodes.push(sn);
    }
    let mesh_started = Instant::now();
    wait("the supernodes to link to each other", || {
        let mut linked = true;
        for sn in &net.supernodes {
            linked &= sn.status()?.neighbors == Some(n - 1);
        }
        Ok(linked.then_some(()))
    })?;
    println!(
        "mesh formed: every supernode linked to the other {} ({:.1} s)",
        n - 1,
        mesh_started.elapsed().as_secs_f64()
    );
    println!();

    for j in 1..=m {
        let label = format!("leaf-{j}");
        let share = net.root.join(&label).join("share");
        std::fs::create_dir_all(&share)?;
        for file in files::shares_of(j) {
            files::write(&share, file)?;
        }
        let args = strings(&[
            "leaf",
            "--listen",
            &format!("{}:0", net.ip(100 + j)),
            "--list-server",
            &list_addr,
            "--share",
            &share.display().to_string(),
            "--downloads",
            &net.root
                .join(&label)
                .join("downloads")
                .display()
                .to_string(),
            "--promote-after",
            "3",
        ]);
        let leaf = net.start(&label, args)?;
        net.leaves.push(leaf);
    }
    let promoted = watch_joins(net)?;
    println!();

    let (hit, searcher) = search(net)?;
    println!();
    download(net, &hit, searcher)?;
    println!();
    let failover = kill_a_supernode(net)?;
    println!();

    println!("summary");
    println!(
        "  {} supernodes at the start, {} elected by the leaves when the network ran short",
        n,
        promoted.len()
    );
    println!(
        "  {m} leaves placed; search found {} sources of {:?}; download verified",
        hit.sources, hit.name
    );
    if let Some(seconds) = failover {
        println!(
            "  after a supernode was killed, its leaves were attached again within {seconds:.1} s"
        );
    }
    println!(
        "  the whole demo took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Narrates joins and promotions until every leaf is placed; returns who was promoted.
fn watch_joins(net: &Testnet) -> anyhow::Result<Vec<String>> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut promoted = Vec::new();
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let mut placed = 0;
        for leaf in &net.leaves {
            let s = leaf.status()?;
            let now = if s.role == "supernode" {
                "supernode".to_string()
            } else {
                s.supernode
                    .as_ref()
                    .map(|sn| format!("{} {:.2}", sn.node_id, sn.rtt_ms))
                    .unwrap_or_default()
            };
            if !now.is_empty() {
                placed += 1;
            }
            if seen.get(&leaf.label) == Some(&now) || now.is_empty() {
                continue;
            }
            match (&s.supernode, s.role.as_str()) {
                (_, "supernode") => {
                    println!(
                        "{} promoted itself to supernode: the supernodes were full, and it has \
                         been up a while and has room",
                        leaf.label
                    );
                    promoted.push(leaf.label.clone());
                }
                (Some(sn), _) if !seen.contains_key(&leaf.label) => println!(
                    "{} chose {} (RTT {:.2} ms, the fastest with room)",
                    leaf.label,
                    net.label(&sn.node_id),
                    sn.rtt_ms
                ),
                (Some(sn), _) => {
                    let was = seen.get(&leaf.label).cloned().unwrap_or_default();
                    if was.split(' ').next() != Some(sn.node_id.as_str()) {
                        println!("{} moved to {}", leaf.label, net.label(&sn.node_id));
                    }
                }
                _ => {}
            }
            seen.insert(leaf.label.clone(), now);
        }
        if placed == net.leaves.len() {
            println!("every leaf is placed");
            return Ok(promoted);
        }
        if Instant::now() > deadline {
            bail!(
                "only {placed} of {} leaves placed after {STEP_TIMEOUT:?}",
                net.leaves.len()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Searches from the last leaf for the popular file; returns the best hit and who searched.
fn search(net: &Testnet) -> anyhow::Result<(SearchResultJson, usize)> {
    let searcher = net.leaves.len() - 1;
    let leaf = net.leaves.get(searcher).context("no leaves")?;
    let words: Vec<String> = superpeer_common::keywords(&files::name(files::POPULAR))
        .into_iter()
        .take(3)
        .collect();
    println!("{} searches for {:?}", leaf.label, words.join(" "));
    let request = SearchRequest {
        keywords: words,
        want: 20,
    };
    let mut best: Option<SearchResultJson> = None;
    let started = Instant::now();
    wait("search results", || {
        let mut hits = Vec::new();
        leaf.control()?.search(&request, |hit| hits.push(hit))?;
        for hit in &hits {
            let holders: Vec<String> = hit.holders.iter().map(|h| net.label(&h.node_id)).collect();
            if best.as_ref().is_none_or(|b| b.sources < hit.sources) {
                println!(
                    "  hit: {:?} ({} bytes) from {}",
                    hit.name,
                    hit.size,
                    holders.join(", ")
                );
                best = Some(hit.clone());
            }
        }
        Ok(best.clone())
    })
    .map(|hit| {
        println!(
            "  answered in {:.0} ms through the supernodes",
            started.elapsed().as_secs_f64() * 1000.0
        );
        (hit, searcher)
    })
}

/// Downloads `hit` to the searching leaf and checks the file's BLAKE3 itself.
fn download(net: &Testnet, hit: &SearchResultJson, searcher: usize) -> anyhow::Result<()> {
    let leaf = net.leaves.get(searcher).context("no leaves")?;
    println!("{} downloads {:?}", leaf.label, hit.name);
    let request = GetRequest {
        content_id: hit.content_id.clone(),
        out: None,
    };
    let mut path = None;
    let mut failure = None;
    leaf.control()?.get(&request, |event| match event {
        GetEventJson::Started { holders, .. } => println!(
            "  from {holders} holder{} at once, every piece checked against the content id",
            if holders == 1 { "" } else { "s" }
        ),
        GetEventJson::HolderDropped { node_id, reason } => println!(
            "  {} dropped: {reason}",
            net.label(node_id.as_deref().unwrap_or("?"))
        ),
        GetEventJson::Finished {
            path: done,
            sources,
            seconds,
            ..
        } => {
            let from: Vec<String> = sources
                .iter()
                .map(|s| format!("{} {} bytes", net.label(&s.node_id), s.bytes))
                .collect();
            println!("  done in {seconds:.2} s: {}", from.join(", "));
            path = Some(PathBuf::from(done));
        }
        GetEventJson::Failed { error } => failure = Some(error),
        _ => {}
    })?;
    if let Some(error) = failure {
        bail!("the download failed: {error}");
    }
    let path = path.context("the download ended without a result")?;
    let actual = ContentId::of_file(&path)?;
    if actual.to_string() != hit.content_id {
        bail!(
            "the downloaded file hashes to {actual}, not {}",
            hit.content_id
        );
    }
    println!(
        "  verified: BLAKE3 of {} is the content id {}",
        path.display(),
        hit.content_id
    );
    Ok(())
}

/// SIGKILLs the original supernode with the most leaves and times its leaves' failover.
fn kill_a_supernode(net: &mut Testnet) -> anyhow::Result<Option<f64>> {
    let mut busiest: Option<(usize, usize)> = None;
    for (i, sn) in net.supernodes.iter().enumerate() {
        let leaves = sn.status()?.leaves.unwrap_or(0);
        if leaves > 0 && busiest.is_none_or(|(_, most)| leaves > most) {
            busiest = Some((i, leaves));
        }
    }
    let Some((victim, _)) = busiest else {
        println!("no supernode has leaves to fail over; skipping the failover");
        return Ok(None);
    };
    let victim_id = net
        .supernodes
        .get(victim)
        .and_then(|sn| sn.pinned.node_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    let mut orphans = Vec::new();
    for (i, leaf) in net.leaves.iter().enumerate() {
        if leaf
            .status()?
            .supernode
            .is_some_and(|sn| sn.node_id == victim_id)
        {
            orphans.push(i);
        }
    }
    let names: Vec<&str> = orphans
        .iter()
        .filter_map(|&i| net.leaves.get(i).map(|l| l.label.as_str()))
        .collect();
    let sn = net
        .supernodes
        .get_mut(victim)
        .context("no such supernode")?;
    println!(
        "killing {} (pid {}) with SIGKILL; its leaves: {}",
        sn.label,
        sn.pid(),
        names.join(", ")
    );
    sn.kill();
    let killed = Instant::now();
    let mut pending = orphans;
    let mut slowest = 0.0;
    let deadline = killed + STEP_TIMEOUT;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            let Some(leaf) = net.leaves.get(i) else {
                continue;
            };
            let s = leaf.status()?;
            let placed_elsewhere = s.role == "supernode"
                || s.supernode
                    .as_ref()
                    .is_some_and(|sn| sn.node_id != victim_id);
            if placed_elsewhere {
                slowest = killed.elapsed().as_secs_f64();
                let to = match &s.supernode {
                    Some(sn) => net.label(&sn.node_id),
                    None => "being a supernode itself".into(),
                };
                println!("  {} failed over to {to} after {slowest:.1} s", leaf.label);
            } else {
                still.push(i);
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() > deadline {
                bail!("leaves still not attached again after {STEP_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(Some(slowest))
}

/// Stays up until Ctrl-C, after saying how to reach each daemon.
fn keep(net: &Testnet) -> anyhow::Result<()> {
    println!();
    println!("the testnet keeps running; Ctrl-C stops it. Try:");
    for proc in net.supernodes.iter().chain(net.leaves.iter()) {
        println!(
            "  superpeer status --state-dir {}    # {}",
            proc.state_dir.display(),
            proc.label
        );
    }
    if let Some(leaf) = net.leaves.first() {
        println!(
            "  superpeer search --state-dir {} waterloo",
            leaf.state_dir.display()
        );
        println!(
            "  superpeer get --state-dir {} CONTENT_ID",
            leaf.state_dir.display()
        );
    }
    if let Some(list) = &net.list {
        println!("  superpeer supernodes --list-server {}", list.pinned);
    }
    runtime::tokio()?.block_on(runtime::shutdown_signal());
    Ok(())
}

/// Polls `check` until it returns `Some`, for at most [`STEP_TIMEOUT`].
fn wait<T>(what: &str, mut check: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {STEP_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
