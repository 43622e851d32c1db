//! Downloads against hostile peers (issue 14): a leaf that republishes a content id with a
//! false size, and search results that name many holders at one victim address. Real
//! processes and real QUIC on 127.0.40.x-127.0.41.x.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use superpeer::transfer::{DownloadPlan, download};
use superpeer_common::wire::{
    FileEntry, Hello, HelloReply, Intent, LeafToSupernode, Role, SupernodeToLeaf,
};
use superpeer_common::{ContentId, NodeId, PeerAddr};

use crate::download::{downloading_leaf, finished, get, random_bytes, sharing_leaf};
use crate::leaf::{attached, network, search};
use crate::support::*;

/// Every file under `dir` with its length (the partial files included: they are hidden).
fn lengths(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let len = std::fs::symlink_metadata(e.path()).unwrap().len();
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect()
}

/// A leaf run by the test that attaches to `supernode` and publishes `entry` as it is
/// (any size it likes), then serves nothing. Kept attached while the returned task runs.
async fn publish_raw(
    ip: &str,
    supernode: &PeerAddr,
    entry: FileEntry,
) -> tokio::task::JoinHandle<()> {
    let endpoint = bind(ip);
    let advertise = endpoint.local_addr().unwrap();
    let conn = endpoint.connect(supernode).await.unwrap();
    let hello = Hello::new(Role::Leaf, Intent::Attach, Some(advertise));
    let (mut session, reply) = conn.open_session(&hello).await.unwrap();
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    session
        .writer
        .send(&LeafToSupernode::Publish {
            entries: vec![entry],
        })
        .await
        .unwrap();
    tokio::spawn(async move {
        let (_endpoint, _conn, mut session) = (endpoint, conn, session);
        while let Ok(Some(_)) = session.reader.recv::<SupernodeToLeaf>().await {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_published_with_a_false_size_neither_blocks_the_download_nor_allocates() {
    let net = network(40, 1);
    let data = random_bytes(3 * 1024 * 1024 + 777, 40);
    let id = ContentId::of_bytes(&data);
    let (holder_state, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(share.path().join("concert.mkv"), &data).unwrap();
    let _honest = sharing_leaf("127.0.40.10", holder_state.path(), share.path(), &net.sn[0]);
    let (state, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _downloader = downloading_leaf("127.0.40.20", state.path(), downloads.path(), &net.sn[0]);
    attached(state.path()).await;
    wait_for(
        "the honest copy to be indexed",
        Duration::from_secs(20),
        || async { (!search(state.path(), &["concert"]).await.is_empty()).then_some(()) },
    )
    .await;
    // The liar republishes the same id at 1 TiB, after the honest holder: its copy is the
    // newest.
    let lie = FileEntry {
        content_id: id,
        name: "concert.mkv".into(),
        size: 1 << 40,
    };
    let _liar = publish_raw("127.0.40.11", &net.sn[0].pinned, lie).await;
    wait_for("the lie to be indexed", Duration::from_secs(20), || async {
        let results = search(state.path(), &[&id.to_string()]).await;
        let holders: u64 = results.iter().filter_map(|r| r["sources"].as_u64()).sum();
        (holders >= 2).then_some(())
    })
    .await;

    let (ok, events, stderr) = get(state.path(), &id.to_string(), &[]).await;
    for (name, len) in lengths(downloads.path()) {
        assert!(
            len <= data.len() as u64,
            "{name} is {len} bytes: preallocated for the lie"
        );
    }
    assert!(ok, "get failed: {stderr} {events:#?}");
    let path = finished(&events)["path"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(finished(&events)["size"].as_u64(), Some(data.len() as u64));
}

/// A UDP socket standing in for a bystander: counts the QUIC connection attempts that
/// reach it (distinct destination connection ids of long-header packets).
fn victim(ip: &str) -> (std::net::SocketAddr, Arc<Mutex<HashSet<Vec<u8>>>>) {
    let socket = std::net::UdpSocket::bind(format!("{ip}:0")).unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let counted = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf) {
            let packet = &buf[..n];
            // Long header: first bit set; version (4 bytes); DCID length; DCID.
            if n > 6 && packet[0] & 0x80 != 0 {
                let len = packet[5] as usize;
                if let Some(dcid) = packet.get(6..6 + len) {
                    counted.lock().unwrap().insert(dcid.to_vec());
                }
            }
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_naming_many_holders_at_one_address_cannot_aim_a_download_at_it() {
    let (addr, attempts) = victim("127.0.41.9");
    // 32 invented holders, every one at the victim's address.
    let holders: Vec<PeerAddr> = (0..32u8)
        .map(|n| PeerAddr::pinned(NodeId::from_bytes([n + 1; 32]), addr))
        .collect();
    let downloads = tempfile::tempdir().unwrap();
    let endpoint = bind("127.0.41.20");
    let plan = DownloadPlan {
        content_id: ContentId::of_bytes(b"anything"),
        size: 10 * 1024 * 1024,
        name: "bait.bin".into(),
        holders,
        via: Vec::new(),
    };
    let (progress, mut events) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        download(&endpoint, plan, downloads.path(), progress),
    )
    .await
    .expect("the download gives up");
    assert!(outcome.is_err());
    let attempts = attempts.lock().unwrap().len();
    assert!(
        attempts <= superpeer::transfer::MAX_HOLDERS_PER_IP,
        "{attempts} connection attempts reached the victim"
    );
    // Nothing was allocated for a size nobody proved.
    for (name, len) in lengths(downloads.path()) {
        assert_eq!(len, 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofing_names_are_saved_defused_and_a_symlinked_part_file_is_refused() {
    let net = network(42, 1);
    let (holder_state, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spoof = random_bytes(70_000, 421);
    let device = random_bytes(20_000, 422);
    let notes = random_bytes(90_000, 423);
    // Shown as "holidayexe.jpg" wherever the override is honoured.
    std::fs::write(share.path().join("holiday\u{202E}gpj.exe"), &spoof).unwrap();
    std::fs::write(share.path().join("CON"), &device).unwrap();
    std::fs::write(share.path().join("notes.txt"), &notes).unwrap();
    let _holder = sharing_leaf("127.0.42.10", holder_state.path(), share.path(), &net.sn[0]);
    let (state, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _downloader = downloading_leaf("127.0.42.20", state.path(), downloads.path(), &net.sn[0]);
    attached(state.path()).await;
    let ids: Vec<ContentId> = [&spoof, &device, &notes]
        .iter()
        .map(|d| ContentId::of_bytes(d))
        .collect();
    for id in &ids {
        wait_for(
            "the files to be indexed",
            Duration::from_secs(20),
            || async {
                let found = search(state.path(), &[&id.to_string()]).await;
                (!found.is_empty()).then_some(())
            },
        )
        .await;
    }

    for (id, data) in ids.iter().zip([&spoof, &device]) {
        let (ok, events, stderr) = get(state.path(), &id.to_string(), &[]).await;
        assert!(ok, "get failed: {stderr} {events:#?}");
        let path = std::path::PathBuf::from(finished(&events)["path"].as_str().unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), **data);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(!name.contains('\u{202E}'), "saved as {name:?}");
        let stem = name.split('.').next().unwrap();
        assert!(!stem.eq_ignore_ascii_case("con"), "saved as {name:?}");
    }

    // Someone who can write to the downloads folder points the partial file's name at a
    // file of ours: the download must not write through it.
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious");
    std::fs::write(&precious, b"keep me").unwrap();
    let part = downloads
        .path()
        .join(format!(".notes.txt.{}.part", ids[2].short()));
    std::os::unix::fs::symlink(&precious, &part).unwrap();
    let (ok, events, _) = get(state.path(), &ids[2].to_string(), &[]).await;
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me", "{events:#?}");
    assert!(!ok, "a symlinked partial file must be refused: {events:#?}");
}

/// Bytes the process `pid` has read through read(2) and friends so far.
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycling_requests_over_many_shared_files_never_rehashes_them() {
    use superpeer_common::wire::{DownloaderToHolder, HolderToDownloader};
    const FILES: usize = 40;
    const FILE_LEN: usize = 256 * 1024;
    let net = network(41, 1);
    let (holder_state, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ids = Vec::new();
    for n in 0..FILES {
        let data = random_bytes(FILE_LEN, 4100 + n as u64);
        ids.push(ContentId::of_bytes(&data));
        std::fs::write(share.path().join(format!("file{n}.bin")), data).unwrap();
    }
    let holder = sharing_leaf("127.0.41.30", holder_state.path(), share.path(), &net.sn[0]);
    let status = attached(holder_state.path()).await;
    assert_eq!(status["shared_files"].as_u64(), Some(FILES as u64));
    let addr = wait_for("the holder's address", Duration::from_secs(20), || async {
        let found = search(holder_state.path(), &[&ids[0].to_string()]).await;
        found
            .first()
            .map(|r| r["holders"][0]["addr"].as_str().unwrap().to_string())
    })
    .await;
    let holder_addr = PeerAddr::unpinned(addr.parse().unwrap());

    let before = bytes_read(holder.pid());
    // Twice round every shared id, a fresh identity every few requests (the per-peer
    // session cap is no obstacle to an attacker).
    let mut answered = 0;
    for round in 0..2 {
        for (n, chunk) in ids.chunks(4).enumerate() {
            let endpoint = bind(&format!("127.0.41.{}", 40 + (round * 10 + n) % 50));
            let conn = endpoint.connect(&holder_addr).await.unwrap();
            let hello = Hello::new(Role::Leaf, Intent::Transfer, None);
            let (mut session, reply) = conn.open_session(&hello).await.unwrap();
            assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
            for id in chunk {
                session
                    .writer
                    .send(&DownloaderToHolder::Have { content_id: *id })
                    .await
                    .unwrap();
                let answer: HolderToDownloader = session.reader.recv_required().await.unwrap();
                if matches!(answer, HolderToDownloader::Have { .. }) {
                    answered += 1;
                }
            }
            conn.close(superpeer_common::wire::CloseCode::Normal, "done");
        }
    }
    assert_eq!(
        answered,
        2 * FILES,
        "every request answered from the saved outboards"
    );
    let read = bytes_read(holder.pid()) - before;
    // Rehashing on each miss would read every file twice: 20 MiB. The outboards are 1 KiB.
    assert!(
        read < (FILE_LEN * FILES / 4) as u64,
        "the holder read {read} bytes to answer {answered} requests"
    );
}
