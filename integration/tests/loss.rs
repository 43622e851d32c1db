//! Loss: every path of one leaf drops 5% of the datagrams each way (a proxy in front of its
//! supernode and of the holder it downloads from); its search and a 20 MB download still
//! complete, and the file verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use superpeer::control::GetEventJson;
use superpeer_common::{ContentId, PeerAddr};
use superpeer_integration::harness::{Cluster, attached, get, search, strings, wait_for};
use superpeer_integration::proxy::{Link, Proxy, ProxyConfig};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SIZE: usize = 20 * 1024 * 1024;

fn lossy(seed: u64) -> ProxyConfig {
    let link = Link {
        delay: Duration::from_millis(2),
        jitter: Duration::ZERO,
        loss: 0.05,
    };
    ProxyConfig::symmetric(link, seed)
}

/// A UDP port free on `ip` just now.
fn free_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn search_and_a_20_mb_download_survive_5_percent_loss() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::new(EXE, 65).unwrap();
    let list = cluster.list_server("list", &[]).unwrap();
    let sn = cluster.supernode("sn", &list, &[]).unwrap();
    let sn_proxy = rt
        .block_on(Proxy::start(
            "127.0.66.1:0".parse().unwrap(),
            sn.listening.unwrap(),
            lossy(1),
        ))
        .unwrap();

    // The holder listens on a port we know, so its proxy can point at it before it starts.
    let share = cluster.folder("holder/share").unwrap();
    let mut data = Vec::with_capacity(SIZE + 8);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    while data.len() < SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(SIZE);
    std::fs::write(share.join("storm over the harbour.mkv"), &data).unwrap();
    let id = ContentId::of_bytes(&data).to_string();
    let ip = cluster.next_ip().unwrap();
    let listen: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().unwrap();
    let holder_proxy = rt
        .block_on(Proxy::start(
            "127.0.66.2:0".parse().unwrap(),
            listen,
            lossy(2),
        ))
        .unwrap();
    let holder = cluster
        .start(
            "holder",
            &strings(&[
                "leaf",
                "--listen",
                &listen.to_string(),
                "--advertise",
                &holder_proxy.addr().to_string(),
                "--peer",
                &sn.pinned.to_string(),
                "--share",
                share.to_str().unwrap(),
                "--no-election",
            ]),
        )
        .unwrap();
    // The downloader reaches its supernode only through the lossy proxy.
    let through_proxy = PeerAddr::pinned(sn.pinned.node_id.unwrap(), sn_proxy.addr());
    let downloads = cluster.folder("downloader/downloads").unwrap();
    let downloader = cluster
        .leaf(
            "downloader",
            &[
                "--peer",
                &through_proxy.to_string(),
                "--downloads",
                downloads.to_str().unwrap(),
                "--no-election",
            ],
        )
        .unwrap();
    attached(&holder, Duration::from_secs(20)).unwrap();
    attached(&downloader, Duration::from_secs(30)).unwrap();

    let hit = wait_for(
        "the search through the lossy path",
        Duration::from_secs(30),
        || {
            let hits = search(&downloader, &["storm", "harbour"], 10)?;
            Ok(hits.into_iter().find(|h| h.content_id == id))
        },
    )
    .unwrap();
    assert_eq!(hit.holders[0].addr, holder_proxy.addr().to_string());

    let started = Instant::now();
    let events = get(&downloader, &id, None).unwrap();
    let took = started.elapsed();
    let path = events
        .iter()
        .find_map(|e| match e {
            GetEventJson::Finished { path, .. } => Some(PathBuf::from(path)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the download did not finish: {events:?}"));
    assert_eq!(ContentId::of_file(&path).unwrap().to_string(), id);
    println!(
        "20 MB through 5% loss each way in {took:?} ({:.1} MB/s)",
        SIZE as f64 / 1e6 / took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(120));
}
