//! Downloads over real QUIC on 127.0.0.1 from in-process holders: honest ones running
//! [`serve_transfer`], and test-built ones that lie, stall or die.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, DownloaderToHolder, HelloReply, HolderToDownloader, Intent, Role, WireError,
};
use superpeer_common::{
    Connection, ContentId, Endpoint, Identity, NodeId, PeerAddr, Session, TransportLimits, accept,
};
use tempfile::TempDir;
use tokio::sync::mpsc;

use super::session::send_encoded;
use super::verified::{BLOCK, Outboard, encode_range};
use super::*;

fn endpoint() -> Endpoint {
    endpoint_at("127.0.0.1")
}

fn endpoint_at(ip: &str) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::bind(
        identity,
        format!("{ip}:0").parse().unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

/// A loopback address of its own for each holder: a download dials at most
/// `MAX_HOLDERS_PER_IP` holders at one address.
fn holder_ip() -> String {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("127.0.42.{}", 100 + n % 150)
}

fn pinned(to: &Endpoint) -> PeerAddr {
    PeerAddr::pinned(to.node_id(), to.local_addr().unwrap())
}

/// Deterministic bytes without a short period.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// A file in its own folder, as a holder shares it.
struct Shared {
    _dir: TempDir,
    path: PathBuf,
    id: ContentId,
    bytes: Vec<u8>,
}

fn shared(len: usize, seed: u64) -> Shared {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.bin");
    let bytes = data(len, seed);
    std::fs::write(&path, &bytes).unwrap();
    Shared {
        _dir: dir,
        path,
        id: ContentId::of_bytes(&bytes),
        bytes,
    }
}

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// [`serve_transfer`] itself.
    Honest,
    /// Correct answers, each range after a pause.
    Slow(Duration),
    /// Correct `Have`, ranges with one flipped byte.
    Liar,
    /// Serves this many ranges correctly, then ends the stream.
    DieAfter(usize),
}

/// Starts a holder of `files` on its own endpoint; returns its pinned address.
fn holder(files: &[&Shared], behaviour: Behaviour) -> PeerAddr {
    let files: HashMap<ContentId, PathBuf> = files.iter().map(|s| (s.id, s.path.clone())).collect();
    let files = Arc::new(files);
    let endpoint = endpoint_at(&holder_ip());
    let addr = pinned(&endpoint);
    let uploads = Arc::new(Uploads::default());
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.incoming().await {
            let (files, uploads) = (files.clone(), uploads.clone());
            tokio::spawn(async move {
                let conn = accept(incoming, Duration::from_secs(5)).await.unwrap();
                let Ok((mut session, hello)) = conn.accept_session().await else {
                    return;
                };
                assert_eq!(hello.intent, Intent::Transfer);
                session
                    .reply(&HelloReply::Welcome { role: Role::Leaf })
                    .await
                    .unwrap();
                let result = match behaviour {
                    Behaviour::Honest => {
                        serve_transfer(&mut session, |id| files.get(id).cloned(), &uploads).await
                    }
                    other => scripted(&mut session, &files, other).await,
                };
                match result {
                    Ok(()) => {
                        let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
                    }
                    Err(e) => conn.close_for(&e),
                }
            });
        }
        drop(endpoint);
    });
    addr
}

/// A holder built by the test, to misbehave in ways [`serve_transfer`] never would.
async fn scripted(
    session: &mut Session,
    files: &HashMap<ContentId, PathBuf>,
    behaviour: Behaviour,
) -> Result<(), WireError> {
    let mut served = 0;
    while let Some(request) = session.reader.recv::<DownloaderToHolder>().await? {
        match request {
            DownloaderToHolder::Have { content_id } => {
                let size = std::fs::metadata(&files[&content_id]).unwrap().len();
                let answer = HolderToDownloader::Have { content_id, size };
                session.writer.send(&answer).await?;
            }
            DownloaderToHolder::Range {
                content_id,
                start,
                len,
            } => {
                if let Behaviour::DieAfter(n) = behaviour {
                    if served == n {
                        // Everything sent so far reaches the downloader, then the stream ends.
                        let send = session.writer.inner_mut();
                        send.finish().unwrap();
                        let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
                        return Ok(());
                    }
                }
                if let Behaviour::Slow(pause) = behaviour {
                    tokio::time::sleep(pause).await;
                }
                let path = &files[&content_id];
                let outboard = Outboard::of_file(path).unwrap();
                let mut file = std::fs::File::open(path).unwrap();
                let mut encoded = encode_range(&mut file, &outboard, start, len).unwrap();
                if let Behaviour::Liar = behaviour {
                    let middle = encoded.len() / 2;
                    encoded[middle] ^= 0x40;
                }
                let header = HolderToDownloader::RangeFollows {
                    content_id,
                    start,
                    len,
                    encoded_len: encoded.len() as u64,
                };
                session.writer.send(&header).await?;
                send_encoded(session.writer.inner_mut(), encoded).await?;
                served += 1;
            }
        }
    }
    Ok(())
}

struct Outcome {
    result: Result<PathBuf, DownloadError>,
    events: Vec<Progress>,
}

impl Outcome {
    fn path(&self) -> &Path {
        self.result.as_ref().unwrap()
    }

    fn pieces_from(&self) -> HashMap<NodeId, usize> {
        let mut counts = HashMap::new();
        for event in &self.events {
            if let Progress::Piece { from, .. } = event {
                *counts.entry(*from).or_default() += 1;
            }
        }
        counts
    }

    fn pieces(&self) -> usize {
        self.pieces_from().values().sum()
    }

    fn dropped(&self) -> Vec<(Option<NodeId>, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Progress::HolderDropped { node_id, reason } => Some((*node_id, reason.clone())),
                _ => None,
            })
            .collect()
    }
}

async fn fetch(file: &Shared, name: &str, holders: Vec<PeerAddr>, dest: &Path) -> Outcome {
    let plan = DownloadPlan {
        content_id: file.id,
        size: file.bytes.len() as u64,
        name: name.to_string(),
        holders,
        via: Vec::new(),
    };
    fetch_plan(plan, dest).await
}

async fn fetch_plan(plan: DownloadPlan, dest: &Path) -> Outcome {
    let (tx, mut rx) = mpsc::channel(16);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    });
    // Bounded: a download that hangs fails the test instead of stalling it.
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        download(&endpoint(), plan, dest, tx),
    )
    .await
    .expect("the download hung");
    let events = collector.await.unwrap();
    Outcome { result, events }
}

/// The download is complete, in `dest`, equal to the original and hashing to its id, with
/// no partial or state file left beside it.
fn assert_complete(outcome: &Outcome, file: &Shared, dest: &Path) {
    let path = outcome.path();
    assert_eq!(path.parent(), Some(dest));
    assert!(std::fs::read(path).unwrap() == file.bytes, "bytes differ");
    assert_eq!(ContentId::of_file(path).unwrap(), file.id);
    assert!(
        outcome
            .events
            .iter()
            .any(|e| matches!(e, Progress::Started { .. }))
    );
    assert_eq!(
        outcome.events.last(),
        Some(&Progress::Finished {
            path: path.to_path_buf()
        })
    );
    assert_eq!(leftovers(dest), Vec::<String>::new());
}

/// Hidden files in `dest`: partial and state files.
fn leftovers(dest: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn single_source_download_is_exact() {
    let file = shared(6 * PIECE as usize + 123, 1);
    let dest = tempfile::tempdir().unwrap();
    let outcome = fetch(
        &file,
        "song.bin",
        vec![holder(&[&file], Behaviour::Honest)],
        dest.path(),
    )
    .await;
    assert_complete(&outcome, &file, dest.path());
    assert_eq!(outcome.path(), dest.path().join("song.bin"));
    assert_eq!(outcome.pieces(), 7);
}

#[tokio::test]
async fn three_holders_share_the_work() {
    let file = shared(16 * PIECE as usize, 2);
    let dest = tempfile::tempdir().unwrap();
    let holders = (0..3)
        .map(|_| holder(&[&file], Behaviour::Honest))
        .collect();
    let outcome = fetch(&file, "big.bin", holders, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    let from = outcome.pieces_from();
    assert_eq!(outcome.pieces(), 16);
    assert!(from.len() > 1, "one holder served everything: {from:?}");
}

#[tokio::test]
async fn a_lying_holder_is_dropped_and_the_others_finish() {
    let file = shared(8 * PIECE as usize + 5, 3);
    let dest = tempfile::tempdir().unwrap();
    let slow = Behaviour::Slow(Duration::from_millis(20));
    let liar = holder(&[&file], Behaviour::Liar);
    let holders = vec![holder(&[&file], slow), liar, holder(&[&file], slow)];
    let outcome = fetch(&file, "x.bin", holders, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    let dropped = outcome.dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0, liar.node_id);
    assert!(dropped[0].1.contains("verification"), "{}", dropped[0].1);
    assert!(!outcome.pieces_from().contains_key(&liar.node_id.unwrap()));
}

#[tokio::test]
async fn an_interrupted_download_resumes_without_refetching() {
    let file = shared(6 * PIECE as usize + 123, 4);
    let dest = tempfile::tempdir().unwrap();
    let dying = holder(&[&file], Behaviour::DieAfter(2));
    let first = fetch(&file, "r.bin", vec![dying], dest.path()).await;
    assert!(
        matches!(
            first.result,
            Err(DownloadError::NoHolders {
                missing: 4,
                total: 7
            })
        ),
        "{:?}",
        first.result
    );
    // The last piece (the size proof, its own session) and two more.
    assert_eq!(first.pieces(), 3);
    assert_eq!(first.dropped().len(), 1);
    let left = leftovers(dest.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left[0].ends_with(".part") && left[1].ends_with(".part.json"),
        "{left:?}"
    );

    let second = fetch(
        &file,
        "r.bin",
        vec![holder(&[&file], Behaviour::Honest)],
        dest.path(),
    )
    .await;
    assert_complete(&second, &file, dest.path());
    assert_eq!(
        second.events.first(),
        Some(&Progress::Started {
            size: file.bytes.len() as u64,
            done_bytes: 2 * PIECE + 123
        })
    );
    assert_eq!(second.pieces(), 4, "only the missing pieces are fetched");
}

#[tokio::test]
async fn a_partial_file_changed_between_runs_is_never_given_its_name() {
    let file = shared(6 * PIECE as usize, 16);
    let dest = tempfile::tempdir().unwrap();
    let dying = holder(&[&file], Behaviour::DieAfter(2));
    let first = fetch(&file, "c.bin", vec![dying], dest.path()).await;
    assert!(first.result.is_err());
    // Someone changes a byte of a piece the state file lists as verified.
    let part = dest.path().join(&leftovers(dest.path())[0]);
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&part, &bytes).unwrap();

    let honest = holder(&[&file], Behaviour::Honest);
    let second = fetch(&file, "c.bin", vec![honest], dest.path()).await;
    assert!(
        matches!(second.result, Err(DownloadError::Corrupt { .. })),
        "{:?}",
        second.result
    );
    // The first run verified the last piece (the size proof) and two more.
    assert_eq!(second.pieces(), 3, "only the missing pieces were fetched");
    // Nothing under the final name, and the next attempt starts over and succeeds.
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    let third = fetch(&file, "c.bin", vec![honest], dest.path()).await;
    assert_complete(&third, &file, dest.path());
    assert_eq!(third.pieces(), 6);
}

#[tokio::test]
async fn a_holder_that_goes_away_is_replaced_by_the_others() {
    let file = shared(8 * PIECE as usize, 15);
    let dest = tempfile::tempdir().unwrap();
    let dying = holder(&[&file], Behaviour::DieAfter(1));
    let steady = holder(&[&file], Behaviour::Slow(Duration::from_millis(20)));
    let outcome = fetch(&file, "d.bin", vec![dying, steady], dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    let dropped = outcome.dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0, dying.node_id);
    assert!(dropped[0].1.contains("connection lost"), "{}", dropped[0].1);
    assert_eq!(outcome.pieces(), 8, "every piece stored once");
    // The size proof's piece, then one in its worker's session.
    assert_eq!(outcome.pieces_from()[&dying.node_id.unwrap()], 2);
}

#[tokio::test]
async fn a_holder_without_the_content_is_dropped() {
    let file = shared(PIECE as usize + 7, 5);
    let other = shared(100, 6);
    let dest = tempfile::tempdir().unwrap();
    let empty = holder(&[&other], Behaviour::Honest);
    let good = holder(&[&file], Behaviour::Honest);
    let outcome = fetch(&file, "f", vec![empty, good], dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    let dropped = outcome.dropped();
    assert_eq!(
        dropped.len(),
        1,
        "dropped once, at the size proof: {dropped:?}"
    );
    assert_eq!(dropped[0].0, empty.node_id);
    assert!(
        dropped[0].1.contains("does not have the content"),
        "{dropped:?}"
    );

    // Only holders without it: the size is never proven, and nothing is written.
    let dest = tempfile::tempdir().unwrap();
    let outcome = fetch(&file, "f", vec![empty], dest.path()).await;
    assert!(matches!(
        outcome.result,
        Err(DownloadError::SizeUnproven { .. })
    ));
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_holder_with_another_size_is_dropped() {
    let file = shared(3 * BLOCK as usize, 7);
    let dest = tempfile::tempdir().unwrap();
    let plan = DownloadPlan {
        content_id: file.id,
        size: 3 * BLOCK + 1,
        name: "f".into(),
        holders: vec![holder(&[&file], Behaviour::Honest)],
        via: Vec::new(),
    };
    let outcome = fetch_plan(plan, dest.path()).await;
    assert!(matches!(
        outcome.result,
        Err(DownloadError::SizeUnproven { .. })
    ));
    let dropped = outcome.dropped();
    assert!(dropped[0].1.contains("says the content is"), "{dropped:?}");
}

#[tokio::test]
async fn names_collide_into_suffixes_and_hostile_names_stay_inside() {
    let file = shared(1000, 8);
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join("song.bin"), b"someone else's").unwrap();
    let addr = holder(&[&file], Behaviour::Honest);
    let first = fetch(&file, "song.bin", vec![addr], dest.path()).await;
    assert_eq!(first.path(), dest.path().join("song (1).bin"));
    let second = fetch(&file, "song.bin", vec![addr], dest.path()).await;
    assert_eq!(second.path(), dest.path().join("song (2).bin"));
    assert_eq!(
        std::fs::read(dest.path().join("song.bin")).unwrap(),
        b"someone else's"
    );

    let hostile = fetch(&file, "../../x", vec![addr], dest.path()).await;
    assert_complete(&hostile, &file, dest.path());
    assert_eq!(hostile.path(), dest.path().join("_.._x"));
}

#[tokio::test]
async fn an_empty_file_needs_no_holder() {
    let file = shared(0, 9);
    let dest = tempfile::tempdir().unwrap();
    let outcome = fetch(&file, "empty", vec![], dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    assert_eq!(std::fs::metadata(outcome.path()).unwrap().len(), 0);
}

#[tokio::test]
async fn an_absurd_size_is_refused_before_touching_the_disk() {
    let dest = tempfile::tempdir().unwrap();
    let plan = DownloadPlan {
        content_id: ContentId::of_bytes(b"x"),
        size: MAX_DOWNLOAD_SIZE + 1,
        name: "huge".into(),
        holders: vec![],
        via: Vec::new(),
    };
    let outcome = fetch_plan(plan, dest.path()).await;
    assert!(matches!(
        outcome.result,
        Err(DownloadError::TooLarge { .. })
    ));
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

/// A raw transfer session to `holder`, to send what a downloader never would.
async fn raw_session(holder: PeerAddr) -> (Connection, Session) {
    let conn = endpoint().connect(&holder).await.unwrap();
    let hello = superpeer_common::wire::Hello::new(Role::Leaf, Intent::Transfer, None);
    let (session, reply) = conn.open_session(&hello).await.unwrap();
    assert_eq!(reply, HelloReply::Welcome { role: Role::Leaf });
    (conn, session)
}

async fn ask(session: &mut Session, request: DownloaderToHolder) -> HolderToDownloader {
    session.writer.send(&request).await.unwrap();
    session.reader.recv_required().await.unwrap()
}

#[tokio::test]
async fn a_file_changed_since_it_was_shared_is_not_served() {
    let file = shared(2 * PIECE as usize, 10);
    let addr = holder(&[&file], Behaviour::Honest);
    let (_conn, mut session) = raw_session(addr).await;
    let have = DownloaderToHolder::Have {
        content_id: file.id,
    };
    let answer = ask(&mut session, have.clone()).await;
    assert_eq!(
        answer,
        HolderToDownloader::Have {
            content_id: file.id,
            size: 2 * PIECE
        }
    );
    // Same size, one byte changed: the cached outboard no longer matches the blocks.
    let mut changed = file.bytes.clone();
    changed[PIECE as usize + 3] ^= 1;
    std::fs::write(&file.path, &changed).unwrap();
    let range = DownloaderToHolder::Range {
        content_id: file.id,
        start: PIECE,
        len: PIECE,
    };
    let not_found = HolderToDownloader::NotFound {
        content_id: file.id,
    };
    assert_eq!(ask(&mut session, range).await, not_found);
    assert_eq!(ask(&mut session, have).await, not_found);
}

#[tokio::test]
async fn oversize_and_misaligned_ranges_close_the_connection() {
    let file = shared(3 * PIECE as usize, 11);
    let addr = holder(&[&file], Behaviour::Honest);
    let bad = [
        (0, PIECE + BLOCK),
        (1, BLOCK),
        (0, BLOCK + 1),
        (3 * PIECE, BLOCK),
        (u64::MAX - BLOCK + 1, BLOCK),
    ];
    for (start, len) in bad {
        let (conn, mut session) = raw_session(addr).await;
        let range = DownloaderToHolder::Range {
            content_id: file.id,
            start,
            len,
        };
        session.writer.send(&range).await.unwrap();
        let answer = session.reader.recv::<HolderToDownloader>().await;
        assert!(answer.is_err(), "{start}+{len}: {answer:?}");
        match conn.closed().await {
            WireError::PeerClosed { code, .. } => {
                assert_eq!(code, CloseCode::ProtocolViolation, "{start}+{len}")
            }
            other => panic!("{start}+{len}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_free_slot_means_busy() {
    let file = shared(100, 12);
    let endpoint = endpoint();
    let addr = pinned(&endpoint);
    let path = file.path.clone();
    let id = file.id;
    tokio::spawn(async move {
        let conn = accept(endpoint.incoming().await.unwrap(), Duration::from_secs(5))
            .await
            .unwrap();
        let (mut session, _) = conn.accept_session().await.unwrap();
        session
            .reply(&HelloReply::Welcome { role: Role::Leaf })
            .await
            .unwrap();
        let uploads = Uploads::new(0);
        let lookup = |asked: &ContentId| (*asked == id).then(|| path.clone());
        let _ = serve_transfer(&mut session, lookup, &uploads).await;
        conn.closed().await;
    });
    let (_conn, mut session) = raw_session(addr).await;
    let answer = ask(
        &mut session,
        DownloaderToHolder::Have {
            content_id: file.id,
        },
    )
    .await;
    assert_eq!(
        answer,
        HolderToDownloader::Busy {
            retry_after_ms: 500
        }
    );
}
