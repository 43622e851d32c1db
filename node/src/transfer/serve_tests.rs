//! The holder side of a connection carrying many sessions, over real QUIC on 127.0.74.x:
//! a download proves the size and then fetches pieces on one connection (over a reverse
//! connection or a relay a second connection would cost another traversal), and a
//! connection the holder made (a dial-back) serves the sessions the downloader opens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superpeer_common::wire::{Hello, HelloReply, Intent, Role};
use superpeer_common::{
    Connection, ContentId, Endpoint, Identity, PeerAddr, TransportLimits, accept,
};

use super::worker::check_have;
use super::*;
use crate::nat::{Pushes, take_push};

fn endpoint(host: u8) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    let addr = format!("127.0.74.{host}:0").parse().unwrap();
    Endpoint::bind(identity, addr, TransportLimits::default()).unwrap()
}

/// A shared file and what serves it.
fn served(bytes: &[u8]) -> (tempfile::TempDir, ContentId, ServedFiles) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.bin");
    std::fs::write(&path, bytes).unwrap();
    let id = ContentId::of_bytes(bytes);
    let files = ServedFiles::default();
    files.replace(HashMap::from([(id, path)]));
    (dir, id, files)
}

/// A holder on `endpoint` running [`serve_connection`] for every connection.
fn holder(endpoint: Endpoint, files: ServedFiles) {
    let uploads = Arc::new(Uploads::default());
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.incoming().await {
            let (files, uploads) = (files.clone(), uploads.clone());
            tokio::spawn(async move {
                let conn = accept(incoming, Duration::from_secs(5)).await.unwrap();
                let (session, _) = conn.accept_session().await.unwrap();
                serve_connection(conn, session, Role::Leaf, files, uploads).await;
            });
        }
    });
}

/// A transfer session on `conn` that asks `Have` and finishes.
async fn ask_have(conn: &Connection, id: ContentId, size: u64) {
    let hello = Hello::new(Role::Leaf, Intent::Transfer, None);
    let (mut session, reply) = conn.open_session(&hello).await.unwrap();
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    check_have(&mut session, id, size).await.unwrap();
    session.writer.inner_mut().finish().unwrap();
}

#[tokio::test]
async fn one_connection_serves_sessions_one_after_another_then_closes_when_idle() {
    let bytes = vec![7u8; 100_000];
    let (_dir, id, files) = served(&bytes);
    let holder_end = endpoint(1);
    let target = PeerAddr::pinned(holder_end.node_id(), holder_end.local_addr().unwrap());
    holder(holder_end, files);
    let downloader = endpoint(2);
    let conn = downloader.connect(&target).await.unwrap();
    // The size proof's session, then the pieces' session, then one more after a pause
    // longer than a hello may take.
    ask_have(&conn, id, bytes.len() as u64).await;
    ask_have(&conn, id, bytes.len() as u64).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ask_have(&conn, id, bytes.len() as u64).await;
    // Left idle, it is closed by the holder, not kept forever.
    let idle = Instant::now();
    tokio::time::timeout(IDLE_CLOSE + Duration::from_secs(5), conn.closed())
        .await
        .expect("an idle transfer connection is closed");
    assert!(idle.elapsed() >= IDLE_CLOSE - Duration::from_millis(500));
}

#[tokio::test]
async fn a_connection_the_holder_dialled_serves_the_downloaders_sessions() {
    let bytes = vec![9u8; 50_000];
    let (_dir, id, files) = served(&bytes);
    let (holder_end, downloader) = (endpoint(3), endpoint(4));
    let pushes = Pushes::default();
    let mut wait = pushes.expect(holder_end.node_id()).unwrap();
    // The downloader's accept loop hands the reverse connection over.
    {
        let (downloader, pushes) = (downloader.clone(), pushes.clone());
        tokio::spawn(async move {
            while let Some(incoming) = downloader.incoming().await {
                let pushes = pushes.clone();
                tokio::spawn(async move {
                    let conn = accept(incoming, Duration::from_secs(5)).await.unwrap();
                    let (session, hello) = conn.accept_session().await.unwrap();
                    assert_eq!(hello.intent, Intent::Push);
                    take_push(conn, session, Role::Leaf, &pushes, 8 << 20).await;
                });
            }
        });
    }
    // The holder dials back, as its supernode would ask.
    let to = downloader.local_addr().unwrap();
    tokio::spawn(crate::nat::dial_back(
        holder_end.clone(),
        downloader.node_id(),
        to,
        Role::Leaf,
        files,
        Arc::new(Uploads::default()),
    ));
    let conn = tokio::time::timeout(Duration::from_secs(10), &mut wait.arrived)
        .await
        .expect("the reverse connection arrives")
        .unwrap();
    assert_eq!(conn.peer(), holder_end.node_id());
    ask_have(&conn, id, bytes.len() as u64).await;
    ask_have(&conn, id, bytes.len() as u64).await;
    drop(wait);
    assert!(!pushes.awaits(&holder_end.node_id()), "the wait is over");
}

#[tokio::test]
async fn pushes_hand_a_connection_only_to_a_download_waiting_for_that_node() {
    let (a, b, c) = (endpoint(5), endpoint(6), endpoint(7));
    let pushes = Pushes::default();
    let wait_for_b = pushes.expect(b.node_id()).unwrap();
    {
        let a = a.clone();
        tokio::spawn(async move {
            while let Some(incoming) = a.incoming().await {
                let _ = accept(incoming, Duration::from_secs(5)).await;
            }
        });
    }
    let target = PeerAddr::pinned(a.node_id(), a.local_addr().unwrap());
    // A connection from c is nobody's: given back.
    let from_c = c.connect(&target).await.unwrap();
    let given_back = pushes.deliver(from_c).unwrap_err();
    assert_eq!(given_back.peer(), a.node_id());
    let _ = given_back;
    // ...as is one from b once the download stopped waiting.
    drop(wait_for_b);
    let from_b = b.connect(&target).await.unwrap();
    assert!(pushes.deliver(from_b).is_err());
    // Waits are capped.
    let waits: Vec<_> = (0..crate::nat::MAX_WAITING)
        .map(|_| pushes.expect(b.node_id()).unwrap())
        .collect();
    assert!(pushes.expect(c.node_id()).is_none(), "over the cap");
    drop(waits);
    assert!(pushes.expect(c.node_id()).is_some());
}
