//! Connection slots under siege (issue 14, finding 2): one client address opens probe
//! sessions, says nothing more, and keeps them open with keep-alives, from many ports and
//! identities, up to and past the node's connection limit (a supernode started with
//! `--max-connections 256`, so that a debug build of the besieger fills it in seconds; a
//! leaf's 256). Before the gate, it held every slot and every new connection was refused:
//! no attach, no probe, no download. Now one address gets its share (64 and 16), a probe
//! session is closed 5 s after its welcome, and honest nodes on other addresses probe,
//! attach and download throughout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use superpeer::control::GetEventJson;
use superpeer_common::wire::{Hello, HelloReply, Intent, Role};
use superpeer_common::{ContentId, Endpoint, Identity, PeerAddr, TransportLimits, probe};
use superpeer_integration::harness::{Cluster, Proc, attached, get, search, wait_for};
use tokio::task::JoinSet;

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const FILE_NAME: &str = "besieged lighthouse logbook.txt";
const FILE_WORD: &str = "lighthouse";
/// How long the number of sessions the besieger holds must stay flat before the siege is
/// taken to be at its strongest.
const PLATEAU: Duration = Duration::from_secs(8);

#[test]
fn one_address_holding_idle_probes_does_not_starve_a_supernode() {
    let mut cluster = Cluster::new(EXE, 46).unwrap();
    let list = cluster.list_server("list", &[]).unwrap();
    // The default 4,096 is more idle sessions than a debug build of the besieger keeps
    // alive on a small machine (it stalled near 1,500), so the test takes a smaller total
    // with the same per-address share (64) and Retry threshold.
    let supernode = cluster
        .supernode("sn", &list, &["--max-connections", "256"])
        .unwrap();
    let (sharer, content_id) = sharing_leaf(&mut cluster, &supernode);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Past the supernode's 256 slots: 8 sockets of 40 sessions each.
    let siege = Siege::start(&runtime, supernode.pinned, "127.0.46.200", 8, 40);
    siege.wait_for_resistance();
    // A siege that never held the address's whole share proves nothing.
    assert!(
        siege.peak() >= 64,
        "the besieger held only {}",
        siege.peak()
    );

    // A leaf on another address probes the supernode, attaches and downloads.
    let sn = supernode.pinned.to_string();
    let downloader = cluster
        .leaf("downloader", &["--peer", &sn, "--no-election"])
        .unwrap();
    let attach = attached(&downloader, Duration::from_secs(30));
    let download = match &attach {
        Ok(_) => find_and_get(&downloader, &content_id),
        Err(e) => Err(format!("not attached: {e}")),
    };
    siege.report("supernode");
    attach.unwrap();
    download.unwrap();
    drop(sharer);
}

#[test]
fn one_address_holding_idle_probes_does_not_starve_a_leaf() {
    let mut cluster = Cluster::new(EXE, 47).unwrap();
    let list = cluster.list_server("list", &[]).unwrap();
    let supernode = cluster.supernode("sn", &list, &[]).unwrap();
    let (sharer, content_id) = sharing_leaf(&mut cluster, &supernode);
    let sn = supernode.pinned.to_string();
    let downloader = cluster
        .leaf("downloader", &["--peer", &sn, "--no-election"])
        .unwrap();
    attached(&downloader, Duration::from_secs(30)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Past the leaf's 256 slots: 16 sockets of 20 sessions each.
    let siege = Siege::start(&runtime, sharer.pinned, "127.0.47.200", 16, 20);
    siege.wait_for_resistance();

    // Another address still probes the leaf (a dial-back check does this)...
    let probed = runtime.block_on(async {
        let endpoint = bind("127.0.47.100");
        let conn = endpoint
            .connect(&sharer.pinned)
            .await
            .map_err(|e| e.to_string())?;
        probe(&conn, Role::Supernode, 3)
            .await
            .map_err(|e| e.to_string())
    });
    // ...and a downloader still gets its file.
    let download = find_and_get(&downloader, &content_id);
    siege.report("leaf");
    assert!(
        matches!(probed, Ok(ref p) if p.role == Role::Leaf) && download.is_ok(),
        "probe from another address: {probed:?}; download: {download:?}"
    );
}

/// A leaf on the next address sharing one file, attached to `supernode`; and the file's id.
fn sharing_leaf(cluster: &mut Cluster, supernode: &Proc) -> (Proc, String) {
    let share = cluster.folder("sharer/share").unwrap();
    let bytes: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(share.join(FILE_NAME), &bytes).unwrap();
    let sn = supernode.pinned.to_string();
    let sharer = cluster
        .leaf(
            "sharer",
            &[
                "--peer",
                &sn,
                "--share",
                share.to_str().unwrap(),
                "--no-election",
            ],
        )
        .unwrap();
    attached(&sharer, Duration::from_secs(30)).unwrap();
    (sharer, ContentId::of_bytes(&bytes).to_string())
}

/// Finds the shared file through `downloader` and downloads it; why not, if it fails.
fn find_and_get(downloader: &Proc, content_id: &str) -> Result<(), String> {
    wait_for(
        "the shared file to be found",
        Duration::from_secs(20),
        || {
            let hits = search(downloader, &[FILE_WORD], 10)?;
            Ok(hits
                .iter()
                .any(|h| h.content_id == content_id)
                .then_some(()))
        },
    )
    .map_err(|e| e.to_string())?;
    let events = get(downloader, content_id, None).map_err(|e| e.to_string())?;
    if events
        .iter()
        .any(|e| matches!(e, GetEventJson::Finished { .. }))
    {
        Ok(())
    } else {
        Err(format!("the download did not finish: {events:?}"))
    }
}

fn bind(ip: &str) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::bind(
        identity,
        format!("{ip}:0").parse().unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

/// One client address holding as many idle probe sessions as it can get: `sockets`
/// endpoints (each its own port and identity) on one IP, each keeping up to `per_socket`
/// sessions open and opening a new one whenever the node closes one.
struct Siege {
    counts: Arc<Counts>,
    started: Instant,
    _tasks: JoinSet<()>,
}

#[derive(Default)]
struct Counts {
    /// Probe sessions welcomed and still open now.
    held: AtomicUsize,
    /// The most held at once.
    peak: AtomicUsize,
    /// Attempts that got no welcome (refused, timed out).
    refused: AtomicUsize,
    /// Sessions the node closed after welcoming them.
    closed_by_node: AtomicUsize,
    stop: AtomicBool,
}

impl Siege {
    fn start(
        runtime: &tokio::runtime::Runtime,
        target: PeerAddr,
        ip: &str,
        sockets: usize,
        per_socket: usize,
    ) -> Siege {
        let counts = Arc::new(Counts::default());
        let mut tasks = JoinSet::new();
        let _guard = runtime.enter();
        for _ in 0..sockets {
            let (endpoint, counts) = (bind(ip), counts.clone());
            tasks.spawn(hold_probes(endpoint, target, per_socket, counts));
        }
        Siege {
            counts,
            started: Instant::now(),
            _tasks: tasks,
        }
    }

    /// Waits until the siege is at its strongest: the node pushes back (its slots are full,
    /// or the address is at its cap), so the number held stops growing while attempts are
    /// refused.
    fn wait_for_resistance(&self) {
        let (mut peak, mut since) = (0, Instant::now());
        wait_for(
            "the besieger to hold all it can",
            Duration::from_secs(400),
            || {
                let now = self.counts.peak.load(Ordering::Relaxed);
                if now > peak {
                    (peak, since) = (now, Instant::now());
                }
                let refused = self.counts.refused.load(Ordering::Relaxed);
                Ok((peak > 0 && refused >= 32 && since.elapsed() > PLATEAU).then_some(()))
            },
        )
        .unwrap();
        println!(
            "besieger at its strongest after {:?}: {} sessions held",
            self.started.elapsed(),
            self.counts.held.load(Ordering::Relaxed)
        );
    }

    /// The most sessions held at once.
    fn peak(&self) -> usize {
        self.counts.peak.load(Ordering::Relaxed)
    }

    fn report(&self, node: &str) {
        let c = &self.counts;
        println!(
            "siege of the {node} over {:?}: {} sessions held now, {} at most, {} attempts \
             refused, {} welcomed sessions closed by the node",
            self.started.elapsed(),
            c.held.load(Ordering::Relaxed),
            c.peak.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.closed_by_node.load(Ordering::Relaxed),
        );
    }
}

impl Drop for Siege {
    fn drop(&mut self) {
        self.counts.stop.store(true, Ordering::Relaxed);
    }
}

/// One socket of the siege.
async fn hold_probes(endpoint: Endpoint, target: PeerAddr, most: usize, counts: Arc<Counts>) {
    let mut held: Vec<(quinn::Connection, superpeer_common::Session)> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    while !counts.stop.load(Ordering::Relaxed) {
        let before = held.len();
        held.retain(|(conn, _)| conn.close_reason().is_none());
        let gone = before - held.len();
        counts.held.fetch_sub(gone, Ordering::Relaxed);
        counts.closed_by_node.fetch_add(gone, Ordering::Relaxed);
        if held.len() >= most {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        match open_idle_probe(&endpoint, target).await {
            Some(pair) => {
                held.push(pair);
                let now = counts.held.fetch_add(1, Ordering::Relaxed) + 1;
                counts.peak.fetch_max(now, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
            }
            None => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    counts.held.fetch_sub(held.len(), Ordering::Relaxed);
}

/// A probe session, welcomed, after which the prober says nothing (no ping, no finish).
async fn open_idle_probe(
    endpoint: &Endpoint,
    target: PeerAddr,
) -> Option<(quinn::Connection, superpeer_common::Session)> {
    let opening = async {
        let conn = endpoint.connect(&target).await.ok()?;
        let hello = Hello::new(Role::Leaf, Intent::Probe, None);
        let (session, reply) = conn.open_session(&hello).await.ok()?;
        matches!(reply, HelloReply::Welcome { .. }).then(|| (conn.quinn().clone(), session))
    };
    tokio::time::timeout(Duration::from_secs(8), opening)
        .await
        .ok()
        .flatten()
}
