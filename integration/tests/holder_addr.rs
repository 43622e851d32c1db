//! A forged holder address (issue 14, finding 3): a leaf advertises a victim's address
//! (`--advertise`), a UDP socket this test binds and counts packets at. Before the fix the
//! supernode published that claim as the leaf's holder address, so every downloader of the
//! leaf's files sent its QUIC Initials to the victim. Now the supernode publishes the
//! address it observed (the connection's source), and an advertised one only after a
//! pinned dial-back reached the same node there: the victim hears nothing from
//! downloaders, and the download completes from the leaf's real address.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use superpeer::control::GetEventJson;
use superpeer_common::ContentId;
use superpeer_integration::harness::{Cluster, attached, get, search, wait_for};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const FILE_NAME: &str = "misdirected harbour chart.txt";
const FILE_WORD: &str = "harbour";
/// The victim's address: not a node, only a socket that counts what reaches it.
const VICTIM_IP: &str = "127.0.48.250";

#[test]
fn a_leaf_cannot_point_downloaders_at_a_victim_address() {
    let victim = Victim::bind(VICTIM_IP);
    let mut cluster = Cluster::new(EXE, 48).unwrap();
    let list = cluster.list_server("list", &[]).unwrap();
    let supernode = cluster.supernode("sn", &list, &[]).unwrap();
    let sn = supernode.pinned.to_string();
    let share = cluster.folder("liar/share").unwrap();
    let bytes: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(share.join(FILE_NAME), &bytes).unwrap();
    let content_id = ContentId::of_bytes(&bytes).to_string();
    let victim_addr = victim.addr.to_string();
    let liar = cluster
        .leaf(
            "liar",
            &[
                "--peer",
                &sn,
                "--share",
                share.to_str().unwrap(),
                "--advertise",
                &victim_addr,
                "--no-election",
            ],
        )
        .unwrap();
    attached(&liar, Duration::from_secs(30)).unwrap();
    let liar_addr = liar
        .listening
        .expect("the liar's bound address")
        .to_string();
    let downloader = cluster
        .leaf("downloader", &["--peer", &sn, "--no-election"])
        .unwrap();
    attached(&downloader, Duration::from_secs(30)).unwrap();
    let downloader_ip: IpAddr = downloader.listening.unwrap().ip();
    let supernode_ip: IpAddr = supernode.listening.unwrap().ip();

    let hit = wait_for(
        "the liar's file to be found",
        Duration::from_secs(20),
        || {
            let hits = search(&downloader, &[FILE_WORD], 10)?;
            Ok(hits.into_iter().find(|h| h.content_id == content_id))
        },
    )
    .unwrap();
    let events = get(&downloader, &content_id, None);
    let finished = events.as_ref().is_ok_and(|events| {
        events
            .iter()
            .any(|e| matches!(e, GetEventJson::Finished { .. }))
    });
    let heard = victim.stop();
    println!(
        "holders in the hit: {:?}; the victim heard {heard:?} (downloader {downloader_ip}, \
         supernode {supernode_ip})",
        hit.holders
    );
    assert_eq!(
        heard.get(&downloader_ip),
        None,
        "the downloader sent packets to the victim"
    );
    let addrs: Vec<&str> = hit.holders.iter().map(|h| h.addr.as_str()).collect();
    assert_eq!(addrs, [liar_addr.as_str()], "holder addresses in the hit");
    assert!(finished, "the download did not finish: {events:?}");
    // What the supernode itself sent is the dial-back that disproved the claim: a few
    // Initials, nothing like a downloader's traffic.
    let from_supernode = heard.get(&supernode_ip).copied().unwrap_or(0);
    assert!(
        from_supernode <= 10,
        "the supernode sent {from_supernode} packets to the victim"
    );
}

/// A UDP socket that answers nothing and counts the datagrams it gets, by source IP.
struct Victim {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Victim {
    fn bind(ip: &str) -> Victim {
        let socket = UdpSocket::bind(format!("{ip}:0")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    *c.lock().unwrap().entry(from.ip()).or_insert(0) += 1;
                }
            }
        });
        Victim {
            addr,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening; what it heard, by source IP.
    fn stop(mut self) -> HashMap<IpAddr, usize> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.counts.lock().unwrap().clone()
    }
}
