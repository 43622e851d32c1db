//! Hostile peers against the keyword directory, with a real list server and a real
//! supernode, and attackers that are QUIC endpoints of their own:
//! - a stranger (never listed) opens a directory session: refused;
//! - a forged membership entry (registering at the supernode's own address, so the list
//!   server's dial-back meets another node): never listed, never a member, refused too;
//! - a listed member publishes words the supernode does not own: told so, nothing kept;
//! - the same member floods publishes claiming hundreds of thousands of keywords: past its
//!   budget the owner refuses, what it keeps stays under the per-publisher cap, its memory
//!   stays bounded, and honest searches through it still work.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use superpeer_bootstrap_list::{RegistrationStatus, keep_registered};
use superpeer_common::wire::{
    Hello, HelloReply, Intent, KeywordCount, Load, Role, SupernodeToSupernode,
};
use superpeer_common::{Endpoint, Identity, NodeId, PeerAddr, Session, TransportLimits};
use superpeer_integration::harness::{Cluster, Proc, listed, search, wait_for};
use superpeer_supernode::directory::MemberSet;
use tokio::sync::watch;

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 54;
/// Members besides the supernode: enough that it owns only some words.
const FAKE_MEMBERS: usize = 4;

fn bind(host: u8) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    let addr: SocketAddr = format!("127.0.{SUBNET}.{host}:0").parse().unwrap();
    Endpoint::bind(identity, addr, TransportLimits::default()).unwrap()
}

/// Keeps `endpoint` registered with the list server at `advertise`, answering its
/// dial-back; returns the registration's status.
fn register(
    endpoint: &Endpoint,
    server: PeerAddr,
    advertise: SocketAddr,
) -> (watch::Receiver<RegistrationStatus>, watch::Sender<bool>) {
    let load = Load {
        leaves: 0,
        capacity: 500,
        neighbors: 0,
    };
    let (_load_tx, load_rx) = watch::channel(load);
    std::mem::forget(_load_tx);
    let (status_tx, status) = watch::channel(RegistrationStatus::Connecting);
    let (stop, stop_rx) = watch::channel(false);
    let answering = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = answering.incoming().await {
            tokio::spawn(async move {
                let Ok(conn) = superpeer_common::accept(incoming, Duration::from_secs(5)).await
                else {
                    return;
                };
                if let Ok((mut session, hello)) = conn.accept_session().await {
                    if hello.intent == Intent::Probe {
                        let _ =
                            superpeer_common::answer_probe(&mut session, Role::Supernode, || None)
                                .await;
                    }
                }
            });
        }
    });
    tokio::spawn(keep_registered(
        endpoint.clone(),
        server,
        advertise,
        load_rx,
        status_tx,
        stop_rx,
    ));
    (status, stop)
}

/// Opens a directory session to `target`; the session, or the refusal's reason.
async fn directory_session(endpoint: &Endpoint, target: PeerAddr) -> Result<Session, String> {
    let me = endpoint.local_addr().unwrap();
    let conn = endpoint.connect(&target).await.map_err(|e| e.to_string())?;
    let hello = Hello::new(Role::Supernode, Intent::Directory, Some(me));
    match conn.open_session(&hello).await {
        Ok((session, HelloReply::Welcome { .. })) => {
            std::mem::forget(conn);
            Ok(session)
        }
        Ok((_, HelloReply::Refused { reason, .. })) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends a publish and reads the owner's answer: (accepted, not_owner, capped).
async fn publish(session: &mut Session, keywords: Vec<KeywordCount>) -> Option<(u32, u32, u32)> {
    session
        .writer
        .send(&SupernodeToSupernode::DirPublish { keywords })
        .await
        .ok()?;
    loop {
        let msg = tokio::time::timeout(
            Duration::from_secs(5),
            session.reader.recv::<SupernodeToSupernode>(),
        )
        .await
        .ok()?
        .ok()??;
        if let SupernodeToSupernode::DirPublished {
            accepted,
            not_owner,
            capped,
        } = msg
        {
            return Some((accepted, not_owner, capped));
        }
    }
}

fn rss_kib(proc: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn strangers_forgers_and_floods_get_nothing_from_the_directory() {
    let mut cluster = Cluster::new(EXE, SUBNET).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let share = cluster.folder("share").unwrap();
    std::fs::write(share.join("honest song.mp3"), b"honest").unwrap();
    let share = share.to_string_lossy().into_owned();
    let supernode = cluster
        .supernode("sn", &list, &["--share", &share])
        .unwrap();
    let target = supernode.pinned;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();

    // Members: fake supernodes that register properly (their dial-back answers).
    let members: Vec<(Endpoint, watch::Sender<bool>)> = (0..FAKE_MEMBERS)
        .map(|i| {
            let endpoint = bind(100 + i as u8);
            let advertise = endpoint.local_addr().unwrap();
            let (_status, stop) = register(&endpoint, list.pinned, advertise);
            (endpoint, stop)
        })
        .collect();
    // The forger registers at the supernode's own address: the dial-back meets the
    // supernode, whose id is not the forger's.
    let forger = bind(120);
    let (_forger_status, _forger_stop) = register(&forger, list.pinned, target.addr);
    wait_for("every honest member known", Duration::from_secs(30), || {
        let status = supernode.status()?;
        let known = status.directory.map_or(0, |d| d.members);
        Ok((known == FAKE_MEMBERS + 1).then_some(()))
    })
    .unwrap();
    let listed_ids: Vec<NodeId> = listed(&cluster, &list)
        .unwrap()
        .into_iter()
        .map(|l| l.node_id)
        .collect();
    assert!(
        !listed_ids.contains(&forger.node_id()),
        "the forger was listed"
    );

    // The stranger and the forger: refused at the door.
    let stranger = bind(121);
    let refused = runtime.block_on(directory_session(&stranger, target));
    assert!(refused.is_err(), "a stranger got a directory session");
    let refused = runtime.block_on(directory_session(&forger, target));
    assert!(refused.is_err(), "the forger got a directory session");

    // A member publishes words the supernode does not own: none kept.
    let view = MemberSet::new(
        members
            .iter()
            .map(|(e, _)| (e.node_id(), e.local_addr().unwrap()))
            .chain([(target.node_id.unwrap(), target.addr)]),
    );
    let me = target.node_id.unwrap();
    let foreign: Vec<KeywordCount> = (0..5_000)
        .map(|i| format!("foreign{i}"))
        .filter(|w| !view.owns(w, &me, 1))
        .take(500)
        .map(|keyword| KeywordCount { keyword, count: 1 })
        .collect();
    assert_eq!(foreign.len(), 500);
    let mut session = runtime
        .block_on(directory_session(&members[0].0, target))
        .unwrap();
    let own_pairs = supernode.status().unwrap().directory.unwrap().owned_pairs;
    let answer = runtime.block_on(publish(&mut session, foreign)).unwrap();
    assert_eq!(answer, (0, 500, 0), "words it does not own");
    let pairs = supernode.status().unwrap().directory.unwrap().owned_pairs;
    assert_eq!(pairs, own_pairs, "kept words it does not own");

    // The flood: 300,000 owned keywords in 300 publishes, back to back.
    let rss_before = rss_kib(&supernode);
    let owned: Vec<String> = (0..2_000_000)
        .map(|i| format!("flood{i}"))
        .filter(|w| view.owns(w, &me, 0))
        .take(300_000)
        .collect();
    let (mut accepted, mut capped, mut answers) = (0u64, 0u64, 0u64);
    for chunk in owned.chunks(1_000) {
        let keywords = chunk
            .iter()
            .map(|k| KeywordCount {
                keyword: k.clone(),
                count: 7,
            })
            .collect();
        match runtime.block_on(publish(&mut session, keywords)) {
            Some((a, _, c)) => {
                accepted += u64::from(a);
                capped += u64::from(c);
                answers += 1;
            }
            // Closed for flooding: also an acceptable end.
            None => break,
        }
    }
    let directory = supernode.status().unwrap().directory.unwrap();
    let rss_after = rss_kib(&supernode);
    println!(
        "flood: {answers} answers, {accepted} accepted, {capped} capped; owner holds {} pairs; \
         RSS {rss_before} -> {rss_after} KiB",
        directory.owned_pairs
    );
    assert!(accepted <= 100_000, "accepted {accepted}");
    // The flooder's cap, plus the supernode's own words.
    let cap = 50_000 + directory.published_keywords;
    assert!(directory.owned_pairs <= cap, "{directory:?}");
    assert!(
        rss_after < rss_before + 100 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );

    // Honest work goes on.
    let list_addr = list.pinned.to_string();
    let leaf = cluster
        .leaf("leaf", &["--list-server", &list_addr, "--no-election"])
        .unwrap();
    wait_for("an honest search", Duration::from_secs(30), || {
        let found = search(&leaf, &["honest"], 10)?;
        Ok(found
            .iter()
            .any(|r| r.name == "honest song.mp3")
            .then_some(()))
    })
    .unwrap();
    drop(members);
}
