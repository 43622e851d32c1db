//! RTT choice with real processes: five supernodes, each behind a latency proxy (one-way
//! delays 80, 40, 5, 60 and 20 ms, advertised through `--advertise`), two leaves each.
//! Leaves started one at a time attach to the nearest supernode that has room: the first two
//! to the 5 ms one, the next two to the 20 ms one, the fifth to the 40 ms one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superpeer::control::StatusJson;
use superpeer::procs::Proc;
use superpeer_common::wire::{CloseCode, Role};
use superpeer_common::{Endpoint, Identity, NodeId, TransportLimits};
use superpeer_integration::proxy::{Link, Proxy, ProxyConfig};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
/// One-way delay of each supernode's proxy, in milliseconds.
const DELAYS_MS: [u64; 5] = [80, 40, 5, 60, 20];
const MAX_LEAVES: usize = 2;
/// The supernodes (by index into `DELAYS_MS`) the leaves must choose, in order.
const EXPECTED: [usize; 5] = [2, 2, 4, 4, 1];

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UDP port free on `ip` just now (the daemon binds it a moment later; a start that loses
/// the race is retried).
fn free_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Supernode {
    proc: Proc,
    proxy: Proxy,
    delay: Duration,
}

/// Starts supernode `i` on 127.0.50.(10+i) behind a proxy on 127.0.51.(10+i).
fn start_supernode(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    list: &str,
    i: usize,
    delay_ms: u64,
) -> Supernode {
    let delay = Duration::from_millis(delay_ms);
    let (ip, proxy_ip) = (
        format!("127.0.50.{}", 10 + i),
        format!("127.0.51.{}", 10 + i),
    );
    let mut last_error = None;
    for _attempt in 0..5 {
        let listen: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().unwrap();
        let config = ProxyConfig::symmetric(Link::delay(delay), i as u64);
        let proxy = rt
            .block_on(Proxy::start(
                format!("{proxy_ip}:0").parse().unwrap(),
                listen,
                config,
            ))
            .unwrap();
        let args: Vec<String> = [
            "supernode",
            "--listen",
            &listen.to_string(),
            "--advertise",
            &proxy.addr().to_string(),
            "--list-server",
            list,
            "--max-leaves",
            &MAX_LEAVES.to_string(),
        ]
        .map(String::from)
        .to_vec();
        match Proc::start(
            Path::new(EXE),
            &format!("sn-{i}"),
            &root.join(format!("sn-{i}")),
            &args,
        ) {
            Ok(proc) => {
                assert_eq!(
                    proc.pinned.addr,
                    proxy.addr(),
                    "it must advertise its proxy"
                );
                return Supernode { proc, proxy, delay };
            }
            Err(e) => last_error = Some(e),
        }
    }
    panic!("sn-{i} would not start: {last_error:?}");
}

/// The addresses the list server hands out.
fn listed(list: &str) -> Vec<SocketAddr> {
    let out = Command::new(EXE)
        .args(["supernodes", "--list-server", list, "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| v["addr"].as_str()?.parse().ok())
        .collect()
}

/// The RTT a leaf would measure to each supernode: a probe through its proxy, all at once.
fn probe_all(rt: &tokio::runtime::Runtime, supernodes: &[Supernode]) -> Vec<Duration> {
    rt.block_on(async {
        let me = Arc::new(Identity::generate().unwrap());
        let first = supernodes[0].proxy.addr();
        let endpoint = Endpoint::client(me, first, TransportLimits::default()).unwrap();
        let probes: Vec<_> = supernodes
            .iter()
            .map(|sn| {
                let (endpoint, target) = (endpoint.clone(), sn.proc.pinned);
                tokio::spawn(async move {
                    let conn = endpoint.connect(&target).await.unwrap();
                    let probed = superpeer_common::probe(&conn, Role::Leaf, 5).await.unwrap();
                    conn.close(CloseCode::Normal, "probed");
                    probed.rtt
                })
            })
            .collect();
        let mut rtts = Vec::new();
        for probe in probes {
            rtts.push(probe.await.unwrap());
        }
        rtts
    })
}

#[test]
fn leaves_attach_to_the_nearest_supernode_with_room() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let list_args = [
        "list-server",
        "--listen",
        "127.0.50.1:0",
        "--heartbeat-ms",
        "500",
    ]
    .map(String::from);
    let list_proc = Proc::start(
        Path::new(EXE),
        "list",
        &root.path().join("list"),
        &list_args,
    )
    .unwrap();
    let list = list_proc.pinned.to_string();

    let supernodes: Vec<Supernode> = DELAYS_MS
        .iter()
        .enumerate()
        .map(|(i, &ms)| start_supernode(&rt, root.path(), &list, i, ms))
        .collect();
    let mut wanted: Vec<SocketAddr> = supernodes.iter().map(|s| s.proxy.addr()).collect();
    wanted.sort();
    wait_for(
        "all five supernodes listed",
        Duration::from_secs(20),
        || {
            let mut got = listed(&list);
            got.sort();
            (got == wanted).then_some(())
        },
    );
    println!("{:?}: all five supernodes listed", started.elapsed());

    let probed = probe_all(&rt, &supernodes);
    for (sn, rtt) in supernodes.iter().zip(&probed) {
        println!(
            "{}: one-way delay {:?}, probed RTT {rtt:?}",
            sn.proc.label, sn.delay
        );
        assert!(
            *rtt >= 2 * sn.delay,
            "{}: RTT {rtt:?} below twice its delay",
            sn.proc.label
        );
    }

    let index_of = |id: &str| {
        let id: NodeId = id.parse().unwrap();
        supernodes
            .iter()
            .position(|s| s.proc.pinned.node_id == Some(id))
    };
    let mut leaves = Vec::new();
    for (j, &expected) in EXPECTED.iter().enumerate() {
        let args: Vec<String> = [
            "leaf",
            "--listen",
            &format!("127.0.52.{}:0", 1 + j),
            "--list-server",
            &list,
            "--no-election",
        ]
        .map(String::from)
        .to_vec();
        let label = format!("leaf-{j}");
        let leaf = Proc::start(Path::new(EXE), &label, &root.path().join(&label), &args).unwrap();
        let status: StatusJson = wait_for(
            &format!("{label} attached"),
            Duration::from_secs(20),
            || leaf.status().ok().filter(|s| s.supernode.is_some()),
        );
        let Some(sn) = status.supernode else {
            unreachable!("waited for it")
        };
        let chosen = index_of(&sn.node_id);
        println!(
            "{:?}: {label} attached to {} ({} ms one-way) at {:.1} ms RTT",
            started.elapsed(),
            chosen.map_or("an unknown node".to_string(), |i| format!("sn-{i}")),
            chosen.map_or(0, |i| DELAYS_MS[i]),
            sn.rtt_ms
        );
        assert_eq!(
            chosen,
            Some(expected),
            "{label} should have chosen sn-{expected} ({} ms)",
            DELAYS_MS[expected]
        );
        let floor = 2.0 * DELAYS_MS[expected] as f64;
        assert!(
            sn.rtt_ms >= floor,
            "{label}: RTT {} below {floor} ms",
            sn.rtt_ms
        );
        leaves.push(leaf);
    }

    // The supernodes agree: the two nearest are full, the third has one leaf.
    for (i, want) in [(2, MAX_LEAVES), (4, MAX_LEAVES), (1, 1), (0, 0), (3, 0)] {
        let sn = &supernodes[i];
        let leaves_now = sn.proc.status().unwrap().leaves;
        assert_eq!(
            leaves_now,
            Some(want),
            "{} admitted the wrong leaves",
            sn.proc.label
        );
    }
    println!("{:?}: done", started.elapsed());
}
