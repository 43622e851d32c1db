//! A supernode that welcomes a leaf and then never reads: the leaf's publish fills the
//! stream's flow-control window and its writes block, yet the leaf answers `status`,
//! finishes a search, and stops on SIGTERM. The supernode is built here, in the test, on
//! real QUIC.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use superpeer_common::wire::{HelloReply, Intent, LeafLimits, Load, Role, SupernodeToLeaf};
use superpeer_common::{
    Connection, Endpoint, PeerAddr, Session, TransportLimits, accept, answer_probe,
};

use crate::leaf::leaf;
use crate::support::*;

/// Answers probes as a supernode with room, welcomes every leaf, sends it the limits
/// (so it publishes at once), and never reads a byte of its stream.
struct StuckSupernode {
    endpoint: Endpoint,
    /// Every welcomed session, held open and unread.
    held: Arc<Mutex<Vec<(Connection, Session)>>>,
}

impl StuckSupernode {
    fn start(ip: &str) -> StuckSupernode {
        let endpoint = bind(ip);
        let held = Arc::new(Mutex::new(Vec::new()));
        let (server, keep) = (endpoint.clone(), held.clone());
        tokio::spawn(async move {
            while let Some(incoming) = server.incoming().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let Ok(conn) = accept(incoming, Duration::from_secs(5)).await else {
                        return;
                    };
                    let Ok((mut session, hello)) = conn.accept_session().await else {
                        return;
                    };
                    match hello.intent {
                        Intent::Probe => {
                            let load = Load {
                                leaves: 0,
                                capacity: 500,
                                neighbors: 0,
                            };
                            let _ =
                                answer_probe(&mut session, Role::Supernode, || Some(load)).await;
                        }
                        Intent::Attach => {
                            // As a real supernode does: the full window once admitted.
                            conn.admit(TransportLimits::default().receive_window);
                            let welcome = HelloReply::Welcome {
                                role: Role::Supernode,
                            };
                            let limits = SupernodeToLeaf::Limits(LeafLimits {
                                query_interval_ms: 200,
                                query_burst: 20,
                                max_entries: 100_000,
                            });
                            if session.reply(&welcome).await.is_err()
                                || session.writer.send(&limits).await.is_err()
                            {
                                return;
                            }
                            keep.lock().unwrap().push((conn, session));
                        }
                        _ => {}
                    }
                });
            }
        });
        StuckSupernode { endpoint, held }
    }

    fn pinned(&self) -> PeerAddr {
        PeerAddr::pinned(self.endpoint.node_id(), self.endpoint.local_addr().unwrap())
    }

    fn sessions(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// UDP bytes the latest welcomed leaf connection has sent us, if it is still open.
    fn latest_received(&self) -> Option<u64> {
        let held = self.held.lock().unwrap();
        let (conn, _) = held.last()?;
        conn.quinn()
            .close_reason()
            .is_none()
            .then(|| conn.quinn().stats().udp_rx.bytes)
    }

    /// Waits until the leaf of `state` is attached here and its publish has filled the
    /// stream window (about 1 MiB arrived on the open session, and nothing more can).
    async fn wait_stalled(&self, state: &Path) {
        let id = self.endpoint.node_id().to_string();
        wait_for(
            "the leaf attached here with a full window",
            Duration::from_secs(30),
            || async {
                let s = status_within(state, STATUS_LIMIT).await.unwrap();
                let full = self.latest_received().is_some_and(|b| b >= 1_000_000);
                (s["supernode"]["node_id"] == id.as_str() && full).then_some(())
            },
        )
        .await;
    }
}

/// How long `status` may take, stalled supernode or not.
const STATUS_LIMIT: Duration = Duration::from_secs(2);

/// `superpeer status --json` bounded by `limit`: its JSON, or why not.
async fn status_within(
    state: &std::path::Path,
    limit: Duration,
) -> Result<serde_json::Value, String> {
    let run = tokio::process::Command::new(BIN)
        .args(["status", "--json", "--state-dir", state.to_str().unwrap()])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supernode_that_never_reads_does_not_freeze_the_leaf() {
    let stuck = StuckSupernode::start("127.0.35.2");
    // A publish well past the 1 MiB stream window: 6,000 files with ~230-byte names is
    // about 1.5 MB of entries (3 frames of 2,000).
    let share = tempfile::tempdir().unwrap();
    let padding = "x".repeat(200);
    for i in 0..6000 {
        std::fs::write(
            share.path().join(format!("stuck {padding} {i:05}.txt")),
            i.to_string(),
        )
        .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let daemon = leaf(
        "127.0.35.20",
        state.path(),
        &[
            "--peer",
            &stuck.pinned().to_string(),
            "--share",
            share.path().to_str().unwrap(),
            "--no-election",
        ],
    );
    stuck.wait_stalled(state.path()).await;
    let s = status_within(state.path(), STATUS_LIMIT).await.unwrap();
    assert_eq!(s["shared_files"], 6000, "{s}");
    assert_eq!(s["publication"]["indexed"], 0, "{s}");

    // For 15 s (past the leaf's 5 s write timeout, twice), status answers within 2 s.
    let blocked = Instant::now();
    let mut polls = 0;
    let mut slowest = Duration::ZERO;
    while blocked.elapsed() < Duration::from_secs(15) {
        let asked = Instant::now();
        if let Err(e) = status_within(state.path(), STATUS_LIMIT).await {
            panic!("status {:?} into the stall: {e}", blocked.elapsed());
        }
        slowest = slowest.max(asked.elapsed());
        polls += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "status answered {polls} times, the slowest in {slowest:?}; {} sessions welcomed",
        stuck.sessions()
    );
    // A search ends (refused, or empty at its deadline) instead of hanging.
    let searched = Instant::now();
    let run = tokio::process::Command::new(BIN)
        .args([
            "search",
            "--state-dir",
            state.path().to_str().unwrap(),
            "anything",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("search still running after 20 s")
        .unwrap();
    println!(
        "search ended after {:?}: {:?}, stdout {:?}, stderr {:?}",
        searched.elapsed(),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );

    // SIGTERM, sent while a write is blocked, stops it within 10 s (`terminate` asserts
    // the bound).
    stuck.wait_stalled(state.path()).await;
    let stopping = Instant::now();
    let exit = daemon.terminate();
    println!("stopped {:?} after SIGTERM: {exit:?}", stopping.elapsed());
    assert!(exit.success(), "{exit:?}");
}
