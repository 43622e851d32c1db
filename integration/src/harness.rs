//! The multi-process harness: real `superpeer` daemons on distinct 127.0.x.y addresses, each
//! with its own state dir under one temporary folder, driven through their control APIs
//! and the CLI.
//!
//! - [`Cluster`] hands out addresses and state dirs and starts daemons. Each daemon is a
//!   [`Proc`], owned by the test: dropping it (also when a test fails and unwinds) kills
//!   it, so no process outlives its test. The state folder goes with the `Cluster`.
//! - Readiness and every other condition is awaited with [`wait_for`], which polls with a
//!   bound and fails with the condition's name: no test sleeps a fixed time and hopes.
//! - The helpers ([`attached`], [`search`], [`get`], [`listed`]) are what a user does with
//!   the CLI, through the same control API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use superpeer::control::{GetEventJson, GetRequest, SearchRequest, SearchResultJson, StatusJson};
use superpeer_common::NodeId;

pub use superpeer::procs::{Proc, stop_all};

/// How often [`wait_for`] checks.
const POLL: Duration = Duration::from_millis(200);

/// A set of daemons on the addresses `127.0.{subnet}.{1..=254}`.
pub struct Cluster {
    exe: PathBuf,
    root: tempfile::TempDir,
    subnet: u8,
    next_host: u8,
}

impl Cluster {
    /// A cluster running the `superpeer` binary `exe` on `127.0.{subnet}.x`. Give each test
    /// its own subnet: tests run in parallel.
    pub fn new(exe: impl Into<PathBuf>, subnet: u8) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            exe: exe.into(),
            root: tempfile::tempdir().context("cannot create the cluster's folder")?,
            subnet,
            next_host: 1,
        })
    }

    /// The next free address of the subnet, as a host (no port).
    pub fn next_ip(&mut self) -> anyhow::Result<String> {
        let host = self.next_host;
        if host == 255 {
            bail!("the cluster's subnet is out of addresses");
        }
        self.next_host += 1;
        Ok(format!("127.0.{}.{host}", self.subnet))
    }

    /// Where the cluster keeps its files (state dirs, generated shares, downloads).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A folder of the cluster's, created.
    pub fn folder(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    /// Starts `superpeer ARGS` as `label`, with its state dir in the cluster's folder.
    pub fn start(&mut self, label: &str, args: &[String]) -> anyhow::Result<Proc> {
        let state_dir = self.root.path().join(label).join("state");
        Proc::start(&self.exe, label, &state_dir, args)
    }

    /// A list server on the next address, with `extra` flags.
    pub fn list_server(&mut self, label: &str, extra: &[&str]) -> anyhow::Result<Proc> {
        let listen = format!("{}:0", self.next_ip()?);
        let mut args = strings(&["list-server", "--listen", &listen]);
        args.extend(strings(extra));
        self.start(label, &args)
    }

    /// A supernode on the next address, registered with `list`, with `extra` flags.
    pub fn supernode(&mut self, label: &str, list: &Proc, extra: &[&str]) -> anyhow::Result<Proc> {
        let listen = format!("{}:0", self.next_ip()?);
        let list = list.pinned.to_string();
        let mut args = strings(&["supernode", "--listen", &listen, "--list-server", &list]);
        args.extend(strings(extra));
        self.start(label, &args)
    }

    /// A leaf on the next address with `extra` flags (its sources of supernodes, its share).
    pub fn leaf(&mut self, label: &str, extra: &[&str]) -> anyhow::Result<Proc> {
        let listen = format!("{}:0", self.next_ip()?);
        let mut args = strings(&["leaf", "--listen", &listen]);
        args.extend(strings(extra));
        self.start(label, &args)
    }

    /// Runs `superpeer ARGS` to completion (a CLI command), bounded by `limit`.
    pub fn cli(&self, args: &[&str], limit: Duration) -> anyhow::Result<CliOutput> {
        let mut child = Command::new(&self.exe)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run the CLI")?;
        let deadline = Instant::now() + limit;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("superpeer {args:?} took longer than {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output()?;
        Ok(CliOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// What a CLI command printed.
#[derive(Debug)]
pub struct CliOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Polls `check` every 200 ms until it gives `Some`, for at most `limit`; the error names
/// `what`. A check that fails (a daemon restarting, say) counts as "not yet".
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {limit:?} waiting for {what} (last error: {e:#})")
                }
                None => bail!("timed out after {limit:?} waiting for {what}"),
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until the leaf `proc` is attached to a supernode; returns its status.
pub fn attached(proc: &Proc, limit: Duration) -> anyhow::Result<StatusJson> {
    wait_for(&format!("{} to attach", proc.label), limit, || {
        let status = proc.status()?;
        Ok(status.supernode.is_some().then_some(status))
    })
}

/// Waits (each step up to `limit`) until `supernodes` index `entries` files in all and every
/// one holds the others' current summaries of them: from then on, a query goes everywhere
/// it can match.
pub fn wait_settled(supernodes: &[Proc], entries: usize, limit: Duration) -> anyhow::Result<()> {
    wait_for("every share indexed", limit, || {
        let mut indexed = 0;
        for sn in supernodes {
            indexed += sn.status()?.indexed.unwrap_or(0);
        }
        Ok((indexed == entries).then_some(()))
    })?;
    wait_for("every summary current everywhere", limit, || {
        Ok(summaries_settled(supernodes)?.then_some(()))
    })
}

/// Like [`wait_settled`], for supernodes that are not all linked to each other: `supernodes`
/// index `entries` files in all, and each holds its neighbours' latest summaries (a
/// supernode holds none of a supernode it is not linked to).
pub fn wait_settled_links(
    supernodes: &[Proc],
    entries: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    wait_for("every share indexed", limit, || {
        let mut indexed = 0;
        for sn in supernodes {
            indexed += sn.status()?.indexed.unwrap_or(0);
        }
        Ok((indexed == entries).then_some(()))
    })?;
    wait_for("every summary current at every neighbour", limit, || {
        let mut views = Vec::with_capacity(supernodes.len());
        for sn in supernodes {
            let status = sn.status()?;
            let summaries = status
                .summaries
                .with_context(|| format!("{} reports no summaries", sn.label))?;
            views.push((status.node_id, summaries));
        }
        let settled = views.iter().all(|(id, ours)| {
            !ours.pending
                && views.iter().all(|(_, theirs)| {
                    theirs
                        .neighbors
                        .get(id)
                        .is_none_or(|held| *held == Some(ours.generation))
                })
        });
        Ok(settled.then_some(()))
    })
}

/// Whether every one of `supernodes` holds every other's latest keyword summary, and none has
/// an index change still to send.
fn summaries_settled(supernodes: &[Proc]) -> anyhow::Result<bool> {
    let mut views = Vec::with_capacity(supernodes.len());
    for sn in supernodes {
        let status = sn.status()?;
        let summaries = status
            .summaries
            .with_context(|| format!("{} reports no summaries", sn.label))?;
        views.push((status.node_id, summaries));
    }
    Ok(views.iter().all(|(id, ours)| {
        !ours.pending
            && views
                .iter()
                .filter(|(other, _)| other != id)
                .all(|(_, theirs)| theirs.neighbors.get(id) == Some(&Some(ours.generation)))
    }))
}

/// The node id a daemon's status names, parsed.
pub fn node_id(proc: &Proc) -> anyhow::Result<NodeId> {
    proc.pinned.node_id.context("a daemon without a node id")
}

/// Searches from `proc` for `words`; every result line, in order.
pub fn search(proc: &Proc, words: &[&str], want: u32) -> anyhow::Result<Vec<SearchResultJson>> {
    let request = SearchRequest {
        keywords: words.iter().map(|w| w.to_string()).collect(),
        want,
    };
    let mut results = Vec::new();
    proc.control()?.search(&request, |r| results.push(r))?;
    Ok(results)
}

/// Downloads `content_id` through `proc` (to `out`, or its downloads folder); every event.
pub fn get(proc: &Proc, content_id: &str, out: Option<&Path>) -> anyhow::Result<Vec<GetEventJson>> {
    let request = GetRequest {
        content_id: content_id.to_string(),
        out: out.map(Path::to_path_buf),
    };
    let mut events = Vec::new();
    proc.control()?.get(&request, |e| events.push(e))?;
    Ok(events)
}

/// One supernode as `superpeer supernodes --json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub node_id: NodeId,
    pub addr: std::net::SocketAddr,
    pub leaves: u32,
    pub capacity: u32,
    pub stale: bool,
}

/// What the list server `list` hands out now.
pub fn listed(cluster: &Cluster, list: &Proc) -> anyhow::Result<Vec<Listed>> {
    let out = cluster.cli(
        &[
            "supernodes",
            "--list-server",
            &list.pinned.to_string(),
            "--json",
        ],
        Duration::from_secs(15),
    )?;
    if !out.ok {
        bail!("supernodes failed: {}", out.stderr.trim());
    }
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).context("a supernodes line that is not valid"))
        .collect()
}

/// `&str`s as owned arguments.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
