//! Downloads between `superpeer` processes: verified, from several holders at once, past a
//! holder that corrupts its data, resumed after the downloader is killed, and safe from
//! hostile file names. Misbehaving holders are built here, in the test, on real QUIC.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use superpeer::transfer::verified::{Outboard, encode_range};
use superpeer::transfer::{ServedFiles, Uploads, serve_connection};
use superpeer_common::wire::{
    DownloaderToHolder, FileEntry, Hello, HelloReply, HolderToDownloader, Intent, LeafToSupernode,
    Role, SupernodeToLeaf,
};
use superpeer_common::{ContentId, Endpoint, NodeId, PeerAddr, accept, answer_probe};

use crate::leaf::{Net, attached, leaf, network, search, status};
use crate::support::*;

/// `len` bytes that do not compress or repeat, different for each `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Waits until every supernode of `net` is linked to all the others.
async fn meshed(net: &Net) {
    let want = net.sn.len() as u64 - 1;
    for dir in &net.dirs[1..] {
        wait_for(
            "the supernodes to link",
            Duration::from_secs(20),
            || async {
                (status(dir.path()).await["neighbors"].as_u64() == Some(want)).then_some(())
            },
        )
        .await;
    }
}

/// `superpeer get --json`: every event, and whether it exited 0.
pub async fn get(state: &Path, content_id: &str, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let mut args = vec!["get", "--json", "--state-dir", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(content_id);
    let run = tokio::process::Command::new(BIN)
        .args(&args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("get timed out")
        .unwrap();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), events, stderr)
}

pub fn finished(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event in {events:#?}"))
}

/// Bytes each holder gave, by node id.
fn sources(finished: &Value) -> Vec<(String, u64)> {
    finished["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["node_id"].as_str().unwrap().to_string(),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn content_id_of(path: &Path) -> ContentId {
    ContentId::of_file(path).unwrap()
}

/// A leaf process sharing one file, attached to `supernode`.
pub fn sharing_leaf(ip: &str, state: &Path, share: &Path, supernode: &Daemon) -> Daemon {
    leaf(
        ip,
        state,
        &[
            "--peer",
            &supernode.pinned.to_string(),
            "--share",
            share.to_str().unwrap(),
        ],
    )
}

/// A downloading leaf: attached to `supernode`, downloads into `downloads`.
pub fn downloading_leaf(ip: &str, state: &Path, downloads: &Path, supernode: &Daemon) -> Daemon {
    leaf(
        ip,
        state,
        &[
            "--peer",
            &supernode.pinned.to_string(),
            "--downloads",
            downloads.to_str().unwrap(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_downloads_50_mb_from_a_leaf_on_another_supernode_verified() {
    let net = network(20, 2);
    let (holder_state, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = random_bytes(50 * 1024 * 1024, 1);
    std::fs::write(share.path().join("Big Concert Recording.flac"), &data).unwrap();
    let id = ContentId::of_bytes(&data).to_string();
    drop(data);
    let holder = sharing_leaf("127.0.20.10", holder_state.path(), share.path(), &net.sn[0]);
    let _downloader = downloading_leaf("127.0.20.11", state.path(), downloads.path(), &net.sn[1]);
    attached(holder_state.path()).await;
    attached(state.path()).await;
    // Found by name across the overlay; the search leaves its holders with the daemon.
    let hit = wait_for("the file to be found", Duration::from_secs(20), || async {
        let results = search(state.path(), &["concert", "recording"]).await;
        results.into_iter().find(|r| r["content_id"] == id.as_str())
    })
    .await;
    assert_eq!(
        hit["holders"][0]["node_id"],
        holder.pinned.node_id.unwrap().to_string()
    );

    let (ok, events, stderr) = get(state.path(), &id, &[]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    let done = finished(&events);
    let path = PathBuf::from(done["path"].as_str().unwrap());
    assert_eq!(path, downloads.path().join("Big Concert Recording.flac"));
    assert_eq!(
        content_id_of(&path).to_string(),
        id,
        "b3sum of the download"
    );
    assert_eq!(done["fetched_bytes"], 50 * 1024 * 1024);
    assert_eq!(done["resumed_bytes"], 0);
    assert!(events.iter().any(|e| e["event"] == "started"));
    // No partial file is left, and status shows the download as finished.
    let names: Vec<_> = std::fs::read_dir(downloads.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["Big Concert Recording.flac"]);
    let s = status(state.path()).await;
    let listed = &s["downloads"][0];
    assert_eq!(listed["state"], "finished");
    assert_eq!(listed["content_id"], id.as_str());
    assert_eq!(listed["bytes_done"], 50 * 1024 * 1024);
    assert_eq!(
        status(holder_state.path()).await["uploaded_bytes"],
        50 * 1024 * 1024
    );
    // Asking again for what is done downloads again, to a new name, never overwriting.
    let (ok, events, _) = get(state.path(), &id, &[]).await;
    assert!(ok);
    assert_eq!(
        finished(&events)["path"],
        downloads
            .path()
            .join("Big Concert Recording (1).flac")
            .to_str()
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_holders_each_give_pieces_found_by_content_id_alone() {
    let net = network(21, 2);
    let data = random_bytes(48 * 1024 * 1024, 2);
    let id = ContentId::of_bytes(&data).to_string();
    let mut holders = Vec::new();
    let mut holder_dirs = Vec::new();
    for i in 0..3 {
        let (st, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(share.path().join(format!("copy {i}.bin")), &data).unwrap();
        let sn = &net.sn[i % 2];
        holders.push(sharing_leaf(
            &format!("127.0.21.{}", 10 + i),
            st.path(),
            share.path(),
            sn,
        ));
        holder_dirs.push((st, share));
    }
    let (state, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _downloader = downloading_leaf("127.0.21.20", state.path(), downloads.path(), &net.sn[0]);
    for (st, _) in &holder_dirs {
        attached(st.path()).await;
    }
    attached(state.path()).await;
    meshed(&net).await;
    // Every holder's copy indexed (hashing 48 MB takes a while on a busy machine), and
    // every copy findable from the downloader's supernode (asked by a holder on it: the
    // downloader itself must not search first).
    for (st, _) in &holder_dirs {
        wait_for(
            "the copy to be indexed",
            Duration::from_secs(60),
            || async {
                (status(st.path()).await["publication"]["indexed"].as_u64() == Some(1))
                    .then_some(())
            },
        )
        .await;
    }
    wait_for(
        "three holders to be found",
        Duration::from_secs(20),
        || async {
            let results = search(holder_dirs[2].0.path(), &["copy", "bin"]).await;
            let holders: usize = results
                .iter()
                .filter(|r| r["content_id"] == id.as_str())
                .map(|r| r["holders"].as_array().map_or(0, Vec::len))
                .sum();
            (holders >= 3).then_some(())
        },
    )
    .await;
    // No search first: the daemon looks the content id up on the network.
    let out = downloads.path().join("chosen name.bin");
    let (ok, events, stderr) = get(state.path(), &id, &["--out", out.to_str().unwrap()]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    assert!(events.iter().any(|e| e["event"] == "searching"));
    let done = finished(&events);
    assert_eq!(done["path"], out.to_str().unwrap());
    assert_eq!(content_id_of(&out).to_string(), id);
    let from = sources(done);
    let expected: Vec<String> = holders
        .iter()
        .map(|h| h.pinned.node_id.unwrap().to_string())
        .collect();
    for holder in &expected {
        let bytes = from.iter().find(|(n, _)| n == holder).map(|(_, b)| *b);
        assert!(
            bytes.is_some_and(|b| b > 0),
            "holder {holder} gave nothing: {from:?} {events:#?}"
        );
    }
    assert_eq!(from.iter().map(|(_, b)| b).sum::<u64>(), data.len() as u64);
}

/// How a holder built in the test behaves.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Serves through the product's own holder code (under whatever name it published).
    Honest,
    /// Flips a bit in the middle of every piece it sends.
    Corrupt,
    /// Pauses before every piece.
    Slow(Duration),
}

/// A holder run by the test: attached to a supernode as a leaf (it publishes one file
/// under a name of its choosing) and serving that file its own way.
struct FakeHolder {
    node_id: NodeId,
    /// Content bytes sent, per transfer session, in order.
    sent: Arc<Mutex<Vec<u64>>>,
    _endpoint: Endpoint,
}

impl FakeHolder {
    async fn start(
        ip: &str,
        supernode: &PeerAddr,
        name: &str,
        data: Arc<Vec<u8>>,
        behaviour: Behaviour,
    ) -> FakeHolder {
        let endpoint = bind(ip);
        let advertise = endpoint.local_addr().unwrap();
        let content_id = ContentId::of_bytes(&data);
        let size = data.len() as u64;
        let sent = Arc::new(Mutex::new(Vec::new()));
        // The honest path serves a real file through the product's code.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &*data).unwrap();
        let served = ServedFiles::default();
        served.replace([(content_id, file.path().to_path_buf())].into());
        let uploads = Arc::new(Uploads::default());
        let (server, sent_by) = (endpoint.clone(), sent.clone());
        tokio::spawn(async move {
            let _file = file;
            while let Some(incoming) = server.incoming().await {
                let (data, sent, served, uploads) = (
                    data.clone(),
                    sent_by.clone(),
                    served.clone(),
                    uploads.clone(),
                );
                tokio::spawn(async move {
                    let Ok(conn) = accept(incoming, Duration::from_secs(5)).await else {
                        return;
                    };
                    let Ok((mut session, hello)) = conn.accept_session().await else {
                        return;
                    };
                    match (hello.intent, behaviour) {
                        (Intent::Probe, _) => {
                            let _ = answer_probe(&mut session, Role::Leaf, || None).await;
                        }
                        (Intent::Transfer, Behaviour::Honest) => {
                            serve_connection(conn, session, Role::Leaf, served, uploads).await;
                        }
                        (Intent::Transfer, _) => {
                            session
                                .reply(&HelloReply::Welcome { role: Role::Leaf })
                                .await
                                .unwrap();
                            let index = {
                                let mut sent = sent.lock().unwrap();
                                sent.push(0);
                                sent.len() - 1
                            };
                            serve_badly(&mut session, &data, behaviour, &sent, index).await;
                            let _ =
                                tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                        }
                        _ => {}
                    }
                });
            }
        });
        // Attach and publish, then keep the session open (and drained) for good.
        let conn = endpoint.connect(supernode).await.unwrap();
        let hello = Hello::new(Role::Leaf, Intent::Attach, Some(advertise));
        let (mut session, reply) = conn.open_session(&hello).await.unwrap();
        assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
        let entry = FileEntry {
            content_id,
            name: name.to_string(),
            size,
        };
        session
            .writer
            .send(&LeafToSupernode::Publish {
                entries: vec![entry],
            })
            .await
            .unwrap();
        tokio::spawn(async move {
            // Held whole: dropping the writer would end our side of the session.
            let (_conn, mut session) = (conn, session);
            while let Ok(Some(_)) = session.reader.recv::<SupernodeToLeaf>().await {}
        });
        FakeHolder {
            node_id: endpoint.node_id(),
            sent,
            _endpoint: endpoint,
        }
    }

    fn sent(&self) -> Vec<u64> {
        self.sent.lock().unwrap().clone()
    }
}

/// Answers `Have` truthfully and every range the way `behaviour` says.
async fn serve_badly(
    session: &mut superpeer_common::Session,
    data: &[u8],
    behaviour: Behaviour,
    sent: &Mutex<Vec<u64>>,
    index: usize,
) {
    let outboard = Outboard::of_bytes(data);
    while let Ok(Some(request)) = session.reader.recv::<DownloaderToHolder>().await {
        match request {
            DownloaderToHolder::Have { content_id } => {
                let answer = HolderToDownloader::Have {
                    content_id,
                    size: data.len() as u64,
                };
                if session.writer.send(&answer).await.is_err() {
                    return;
                }
            }
            DownloaderToHolder::Range {
                content_id,
                start,
                len,
            } => {
                if let Behaviour::Slow(pause) = behaviour {
                    tokio::time::sleep(pause).await;
                }
                let mut encoded =
                    encode_range(&mut Cursor::new(data), &outboard, start, len).unwrap();
                if let Behaviour::Corrupt = behaviour {
                    let middle = encoded.len() / 2;
                    encoded[middle] ^= 0x10;
                }
                let header = HolderToDownloader::RangeFollows {
                    content_id,
                    start,
                    len,
                    encoded_len: encoded.len() as u64,
                };
                if session.writer.send(&header).await.is_err() {
                    return;
                }
                let frame_len = (encoded.len() as u32).to_be_bytes();
                let stream = session.writer.inner_mut();
                if stream.write_all(&frame_len).await.is_err()
                    || stream.write_all(&encoded).await.is_err()
                {
                    return;
                }
                sent.lock().unwrap()[index] += len;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_holder_is_dropped_and_the_others_finish_the_download() {
    let net = network(22, 2);
    let data = Arc::new(random_bytes(16 * 1024 * 1024, 3));
    let id = ContentId::of_bytes(&data).to_string();
    let mut honest = Vec::new();
    for i in 0..2 {
        let (st, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(share.path().join("album.zip"), &*data).unwrap();
        let daemon = sharing_leaf(
            &format!("127.0.22.{}", 10 + i),
            st.path(),
            share.path(),
            &net.sn[i],
        );
        attached(st.path()).await;
        honest.push((daemon, st, share));
    }
    let liar = FakeHolder::start(
        "127.0.22.12",
        &net.sn[1].pinned,
        "album.zip",
        data.clone(),
        Behaviour::Corrupt,
    )
    .await;
    let (state, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _downloader = downloading_leaf("127.0.22.20", state.path(), downloads.path(), &net.sn[0]);
    attached(state.path()).await;
    meshed(&net).await;
    // Wait until the search reports all three, so the liar is surely among the holders.
    wait_for("three holders", Duration::from_secs(20), || async {
        let results = search(state.path(), &["album", "zip"]).await;
        let last = results
            .iter()
            .rev()
            .find(|r| r["content_id"] == id.as_str())?;
        (last["sources"] == 3).then_some(())
    })
    .await;
    let (ok, events, stderr) = get(state.path(), &id, &[]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    let done = finished(&events);
    let path = PathBuf::from(done["path"].as_str().unwrap());
    assert_eq!(content_id_of(&path).to_string(), id);
    let liar_id = liar.node_id.to_string();
    let dropped = events
        .iter()
        .find(|e| e["event"] == "holder_dropped" && e["node_id"] == liar_id.as_str())
        .unwrap_or_else(|| panic!("the liar was not dropped: {events:#?}"));
    assert!(
        dropped["reason"].as_str().unwrap().contains("verif"),
        "{dropped}"
    );
    // It did send data, and none of it counted.
    assert!(liar.sent().iter().sum::<u64>() > 0);
    let from = sources(done);
    assert!(from.iter().all(|(n, _)| *n != liar_id), "{from:?}");
    assert_eq!(from.iter().map(|(_, b)| b).sum::<u64>(), data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_download_resumes_without_fetching_verified_ranges_again() {
    let net = network(23, 1);
    let size = 12 * 1024 * 1024u64;
    let data = Arc::new(random_bytes(size as usize, 4));
    let id = ContentId::of_bytes(&data).to_string();
    // 24 pieces of 512 KiB at 150 ms each: about 4 s for the whole file.
    let holder = FakeHolder::start(
        "127.0.23.10",
        &net.sn[0].pinned,
        "slow lecture.mkv",
        data.clone(),
        Behaviour::Slow(Duration::from_millis(150)),
    )
    .await;
    let (state, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = downloading_leaf("127.0.23.20", state.path(), downloads.path(), &net.sn[0]);
    attached(state.path()).await;
    // The client is only a viewer: the daemon downloads on its own.
    let viewer = {
        let state = state.path().to_path_buf();
        let id = id.clone();
        tokio::spawn(async move { get(&state, &id, &[]).await })
    };
    // While it runs, status shows it: bytes, rate, the holder it comes from. The rate is
    // measured once per progress tick, so it follows the first bytes by up to one tick.
    let running = wait_for(
        "the download in status with a rate",
        Duration::from_secs(20),
        || async {
            let s = status(state.path()).await;
            let d = s["downloads"].as_array()?.first()?.clone();
            let moving = d["bytes_done"].as_u64()? > 0 && d["rate"].as_f64()? > 0.0;
            (d["state"] == "running" && moving).then_some(d)
        },
    )
    .await;
    assert_eq!(running["size"], size);
    assert_eq!(running["name"], "slow lecture.mkv");
    assert_eq!(running["sources"][0]["node_id"], holder.node_id.to_string());
    // Kill the daemon once it has saved some verified pieces, well before the end.
    let saved = wait_for("verified pieces saved", Duration::from_secs(20), || async {
        let state_file = std::fs::read_dir(downloads.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_str().unwrap().ends_with(".part.json"))?;
        let saved: Value = serde_json::from_slice(&std::fs::read(state_file).ok()?).ok()?;
        let pieces: u64 = saved["verified"]
            .as_array()?
            .iter()
            .map(|run| run[1].as_u64().unwrap() - run[0].as_u64().unwrap())
            .sum();
        (pieces >= 4).then_some(pieces)
    })
    .await;
    first.kill();
    let (ok, _, _) = viewer.await.unwrap();
    assert!(!ok, "get must not succeed when the daemon dies");
    assert!(
        saved * 512 * 1024 < size,
        "the download finished before the kill"
    );
    // Sessions of the killed daemon may still finish a piece they were sending: count only
    // the sessions that come after the restart.
    let sessions_before = holder.sent().len();

    let _second = downloading_leaf("127.0.23.20", state.path(), downloads.path(), &net.sn[0]);
    attached(state.path()).await;
    let (ok, events, stderr) = get(state.path(), &id, &[]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    let done = finished(&events);
    let path = PathBuf::from(done["path"].as_str().unwrap());
    assert_eq!(content_id_of(&path).to_string(), id);
    let resumed = done["resumed_bytes"].as_u64().unwrap();
    let fetched = done["fetched_bytes"].as_u64().unwrap();
    assert!(resumed >= saved * 512 * 1024, "resumed {resumed}");
    assert_eq!(resumed + fetched, size);
    // The holder's own count agrees: after the restart it sent exactly what was missing.
    let sent_after: u64 = holder.sent()[sessions_before..].iter().sum();
    assert_eq!(sent_after, fetched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_name_lands_inside_the_downloads_folder() {
    let net = network(24, 1);
    let data = Arc::new(random_bytes(100_000, 5));
    let id = ContentId::of_bytes(&data).to_string();
    let _holder = FakeHolder::start(
        "127.0.24.10",
        &net.sn[0].pinned,
        "../../etc/passwd",
        data.clone(),
        Behaviour::Honest,
    )
    .await;
    let root = tempfile::tempdir().unwrap();
    let downloads = root.path().join("a").join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let state = tempfile::tempdir().unwrap();
    let _downloader = downloading_leaf("127.0.24.20", state.path(), &downloads, &net.sn[0]);
    attached(state.path()).await;
    let (ok, events, stderr) = get(state.path(), &id, &[]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    let path = PathBuf::from(finished(&events)["path"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), downloads);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
    assert_eq!(std::fs::read(&path).unwrap(), *data);
    assert!(!root.path().join("etc").exists());
    assert!(!root.path().join("a").join("etc").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supernode_serves_its_own_share_and_a_bad_downloads_folder_is_a_clear_error() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.25.1", dirs[0].path(), &[]);
    let share = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 5, 6);
    std::fs::write(share.path().join("supernode notes.txt"), &data).unwrap();
    let id = ContentId::of_bytes(&data).to_string();
    let sn = crate::supernode::supernode(
        "127.0.25.2",
        &list,
        dirs[1].path(),
        &["--share", share.path().to_str().unwrap()],
    );
    // The downloads folder is a file: nothing can be created in it.
    let not_a_folder = dirs[2].path().join("downloads");
    std::fs::write(&not_a_folder, b"user data").unwrap();
    let state = tempfile::tempdir().unwrap();
    let downloader = downloading_leaf("127.0.25.20", state.path(), &not_a_folder, &sn);
    attached(state.path()).await;
    let (ok, events, stderr) = get(state.path(), &id, &[]).await;
    assert!(!ok, "{events:#?}");
    assert!(
        stderr.contains("cannot create a partial file in") && stderr.contains("downloads"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&not_a_folder).unwrap(), b"user data");
    let failed = &status(state.path()).await["downloads"][0];
    assert_eq!(failed["state"], "failed");
    drop(downloader);
    // A good folder: the supernode serves its own file.
    let downloads = tempfile::tempdir().unwrap();
    let _downloader = downloading_leaf("127.0.25.20", state.path(), downloads.path(), &sn);
    attached(state.path()).await;
    let (ok, events, stderr) = get(state.path(), &id, &[]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    let done = finished(&events);
    assert_eq!(
        done["sources"][0]["node_id"],
        sn.pinned.node_id.unwrap().to_string()
    );
    let path = PathBuf::from(done["path"].as_str().unwrap());
    assert_eq!(std::fs::read(path).unwrap(), data);
    let sn_status = status(dirs[1].path()).await;
    assert_eq!(sn_status["uploaded_bytes"], data.len() as u64);
    // Bad content ids are refused before anything starts.
    let (ok, _, stderr) = get(state.path(), "not-a-content-id", &[]).await;
    assert!(!ok);
    assert!(stderr.contains("64 hex digits"), "{stderr}");
}
