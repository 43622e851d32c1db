//! `superpeer leaf` processes: joining, searching through the CLI, live folder changes,
//! failover after SIGKILL, joining from the cached list, and the control API's token.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use superpeer_common::ContentId;

use crate::supernode::supernode;
use crate::support::*;

/// Starts `superpeer leaf` on `ip`.
pub fn leaf(ip: &str, state: &Path, extra: &[&str]) -> Daemon {
    let listen = format!("{ip}:0");
    let mut args = vec![
        "leaf",
        "--listen",
        &listen,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

pub async fn status(state: &Path) -> Value {
    let out = cli(&["status", "--json", "--state-dir", state.to_str().unwrap()]).await;
    assert!(out.ok, "status failed: {}", out.stderr);
    serde_json::from_str(out.stdout.trim()).expect("one JSON object")
}

/// Waits until the leaf in `state` is attached; returns its status.
pub async fn attached(state: &Path) -> Value {
    wait_for("the leaf to attach", Duration::from_secs(20), || async {
        let s = status(state).await;
        (!s["supernode"].is_null()).then_some(s)
    })
    .await
}

/// The results of `superpeer search --json`, or `None` if the search failed (not attached
/// at this moment, during a failover).
pub async fn try_search(state: &Path, words: &[&str]) -> Option<Vec<Value>> {
    let mut args = vec!["search", "--json", "--state-dir", state.to_str().unwrap()];
    args.extend_from_slice(words);
    let out = cli(&args).await;
    out.ok.then(|| {
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    })
}

/// The results of a search that must succeed.
pub async fn search(state: &Path, words: &[&str]) -> Vec<Value> {
    try_search(state, words).await.expect("the search failed")
}

/// Polls a search until some result has `content_id`; returns how long it took.
pub async fn found_within(
    state: &Path,
    words: &[&str],
    content_id: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("{words:?} to find {content_id}"),
        limit,
        || async {
            try_search(state, words)
                .await
                .unwrap_or_default()
                .iter()
                .any(|r| r["content_id"] == content_id)
                .then_some(())
        },
    )
    .await;
    start.elapsed()
}

pub struct Net {
    pub dirs: Vec<tempfile::TempDir>,
    pub list: Daemon,
    pub sn: Vec<Daemon>,
}

pub fn network(base: u8, supernodes: usize) -> Net {
    let dirs: Vec<_> = (0..=supernodes)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let list = Daemon::list_server(
        &format!("127.0.{base}.1"),
        dirs[0].path(),
        &["--heartbeat-ms", "500"],
    );
    let sn = (0..supernodes)
        .map(|i| {
            supernode(
                &format!("127.0.{base}.{}", i + 2),
                &list,
                dirs[i + 1].path(),
                &[],
            )
        })
        .collect();
    Net { dirs, list, sn }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_joins_and_status_names_its_supernode() {
    let net = network(10, 2);
    let state = tempfile::tempdir().unwrap();
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("one.txt"), b"1").unwrap();
    std::fs::write(share.path().join("two.txt"), b"2").unwrap();
    let _leaf = leaf(
        "127.0.10.20",
        state.path(),
        &[
            "--list-server",
            &net.list.pinned.to_string(),
            "--share",
            share.path().to_str().unwrap(),
        ],
    );
    let s = attached(state.path()).await;
    assert_eq!(s["role"], "leaf");
    assert_eq!(s["shared_files"], 2);
    let chosen = s["supernode"]["node_id"].as_str().unwrap().to_string();
    assert!(
        net.sn
            .iter()
            .any(|d| d.pinned.node_id.unwrap().to_string() == chosen),
        "{s}"
    );
    let rtt = s["supernode"]["rtt_ms"].as_f64().unwrap();
    assert!(
        rtt > 0.0 && rtt < 333.0,
        "a measured RTT, not quinn's initial guess: {rtt}"
    );
    // The human-readable form too.
    let out = cli(&["status", "--state-dir", state.path().to_str().unwrap()]).await;
    assert!(out.ok && out.stdout.contains(&chosen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_on_different_supernodes_find_each_other_and_folder_changes_show_up() {
    let net = network(11, 2);
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let share = tempfile::tempdir().unwrap();
    std::fs::write(
        share.path().join("Orchid_Field-Recording.flac"),
        b"orchid bytes",
    )
    .unwrap();
    // Each leaf is given one supernode only, so they sit on different ones.
    let _sharer = leaf(
        "127.0.11.20",
        s1.path(),
        &[
            "--peer",
            &net.sn[0].pinned.to_string(),
            "--share",
            share.path().to_str().unwrap(),
        ],
    );
    let _searcher = leaf(
        "127.0.11.21",
        s2.path(),
        &["--peer", &net.sn[1].pinned.to_string()],
    );
    let a = attached(s1.path()).await;
    let b = attached(s2.path()).await;
    assert_ne!(a["supernode"]["node_id"], b["supernode"]["node_id"]);

    let orchid = ContentId::of_bytes(b"orchid bytes").to_string();
    found_within(
        s2.path(),
        &["orchid", "recording"],
        &orchid,
        Duration::from_secs(20),
    )
    .await;
    let results = search(s2.path(), &["ORCHID"]).await;
    let hit = results
        .iter()
        .find(|r| r["content_id"] == orchid.as_str())
        .unwrap();
    assert_eq!(hit["name"], "Orchid_Field-Recording.flac");
    assert_eq!(hit["size"], 12);
    assert_eq!(hit["sources"], 1);

    // A file added to the shared folder is searchable within 5 s.
    std::fs::write(share.path().join("fresh tulip photo.jpg"), b"tulip").unwrap();
    let tulip = ContentId::of_bytes(b"tulip").to_string();
    let took = found_within(s2.path(), &["tulip"], &tulip, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(5),
        "added file searchable after {took:?}"
    );

    // A removed one disappears.
    std::fs::remove_file(share.path().join("fresh tulip photo.jpg")).unwrap();
    wait_for(
        "the removed file to vanish",
        Duration::from_secs(5),
        || async { search(s2.path(), &["tulip"]).await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_of_a_supernode_the_files_are_found_again_within_10_s() {
    let mut net = network(12, 3);
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("survivor.ogg"), b"survivor").unwrap();
    let list = net.list.pinned.to_string();
    let _sharer = leaf(
        "127.0.12.20",
        s1.path(),
        &[
            "--list-server",
            &list,
            "--share",
            share.path().to_str().unwrap(),
        ],
    );
    let _searcher = leaf("127.0.12.21", s2.path(), &["--list-server", &list]);
    let survivor = ContentId::of_bytes(b"survivor").to_string();
    found_within(s2.path(), &["survivor"], &survivor, Duration::from_secs(20)).await;

    // The overlay has formed (a full mesh of 3), so what follows measures failover alone.
    for dir in &net.dirs[1..] {
        wait_for("a full mesh", Duration::from_secs(20), || async {
            (status(dir.path()).await["neighbors"] == 2).then_some(())
        })
        .await;
    }
    // Kill the sharer's supernode.
    let victim = attached(s1.path()).await["supernode"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let index = net
        .sn
        .iter()
        .position(|d| d.pinned.node_id.unwrap().to_string() == victim)
        .unwrap();
    net.sn.remove(index).kill();
    let killed = Instant::now();
    found_within(s2.path(), &["survivor"], &survivor, Duration::from_secs(20)).await;
    // Found again only once the sharer has moved on.
    wait_for(
        "the sharer to fail over",
        Duration::from_secs(10),
        || async {
            let s = status(s1.path()).await;
            (s["supernode"]["node_id"]
                .as_str()
                .is_some_and(|id| id != victim))
            .then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    eprintln!("failover: found again {took:?} after SIGKILL");
    assert!(
        took < Duration::from_secs(10),
        "found again only after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_list_server_down_a_leaf_joins_from_its_cached_list() {
    let net = network(13, 2);
    let state = tempfile::tempdir().unwrap();
    let list = net.list.pinned.to_string();
    let first = leaf("127.0.13.20", state.path(), &["--list-server", &list]);
    attached(state.path()).await;
    wait_for(
        "the cache to be written",
        Duration::from_secs(10),
        || async { state.path().join("supernodes.json").exists().then_some(()) },
    )
    .await;
    assert!(first.terminate().success());
    net.list.kill();
    let _again = leaf("127.0.13.20", state.path(), &["--list-server", &list]);
    let s = attached(state.path()).await;
    assert!(!s["supernode"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_candidates_is_a_clear_error() {
    let state = tempfile::tempdir().unwrap();
    let out = cli(&[
        "leaf",
        "--listen",
        "127.0.14.20:0",
        "--state-dir",
        state.path().to_str().unwrap(),
    ])
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("no supernodes to join: pass --list-server"),
        "{}",
        out.stderr
    );
    let out = cli(&[
        "leaf",
        "--listen",
        "127.0.14.20:0",
        "--peer",
        "127.0.0.1:9",
        "--share",
        "/nonexistent/dir",
        "--state-dir",
        state.path().to_str().unwrap(),
    ])
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("cannot share /nonexistent/dir"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_requests_without_the_token_are_refused() {
    let net = network(15, 1);
    let state = tempfile::tempdir().unwrap();
    let _leaf = leaf(
        "127.0.15.20",
        state.path(),
        &["--peer", &net.sn[0].pinned.to_string()],
    );
    attached(state.path()).await;
    let control: Value =
        serde_json::from_slice(&std::fs::read(state.path().join("control.json")).unwrap()).unwrap();
    let addr = control["addr"].as_str().unwrap().to_string();
    let ask_as = |host: &str, auth: Option<&str>| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /status HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    };
    let ask = |auth: Option<&str>| ask_as(&addr, auth);
    let token = control["token"].as_str().unwrap();
    assert!(ask(None).starts_with("HTTP/1.1 401"));
    assert!(ask(Some("00")).starts_with("HTTP/1.1 401"));
    assert!(ask(Some(token)).starts_with("HTTP/1.1 200"));
    // The right token under another name (a rebinding web page) gets nothing.
    let rebound = ask_as("evil.example", Some(token));
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_on_two_supernodes_is_reported_with_both_sources() {
    let net = network(16, 2);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let shares: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    std::fs::write(shares[0].path().join("shared concert.ogg"), b"same bytes").unwrap();
    std::fs::write(shares[1].path().join("Shared_Concert.ogg"), b"same bytes").unwrap();
    let _a = leaf(
        "127.0.16.20",
        dirs[0].path(),
        &[
            "--peer",
            &net.sn[0].pinned.to_string(),
            "--share",
            shares[0].path().to_str().unwrap(),
        ],
    );
    let _b = leaf(
        "127.0.16.21",
        dirs[1].path(),
        &[
            "--peer",
            &net.sn[1].pinned.to_string(),
            "--share",
            shares[1].path().to_str().unwrap(),
        ],
    );
    let _asker = leaf(
        "127.0.16.22",
        dirs[2].path(),
        &["--peer", &net.sn[0].pinned.to_string()],
    );
    let id = ContentId::of_bytes(b"same bytes").to_string();
    wait_for(
        "both sources to be reported",
        Duration::from_secs(20),
        || async {
            let results = try_search(dirs[2].path(), &["shared", "concert"])
                .await
                .unwrap_or_default();
            // A later line for the same content supersedes an earlier one.
            let last = results
                .iter()
                .rev()
                .find(|r| r["content_id"] == id.as_str())?;
            (last["sources"] == 2 && last["holders"].as_array().is_some_and(|h| h.len() == 2))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_searches_fired_back_to_back_all_succeed() {
    let net = network(17, 1);
    let state = tempfile::tempdir().unwrap();
    let _leaf = leaf(
        "127.0.17.20",
        state.path(),
        &["--list-server", &net.list.pinned.to_string()],
    );
    attached(state.path()).await;
    // The supernode takes a burst of 20 queries per leaf, then 5 a second, and says so
    // when the leaf attaches: the leaf paces its own searches under that limit instead of
    // having them refused. A script's 60 searches, one after the other, all succeed.
    let state_arg = state.path().to_str().unwrap().to_string();
    let started = std::time::Instant::now();
    for i in 0..60 {
        let word = format!("nothing{i}");
        let out = cli(&["search", "--state-dir", &state_arg, &word]).await;
        assert!(out.ok, "search {i} failed: {}", out.stderr);
    }
    // Paced, not free: past the burst they go at the supernode's rate.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "60 searches in {:?}: faster than the supernode allows",
        started.elapsed()
    );
    // And in waves of 8 at once (the control API serves 16 at a time), all succeed too.
    for wave in 0..3 {
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let state_arg = state_arg.clone();
                tokio::spawn(async move {
                    let word = format!("wave{wave}x{i}");
                    cli(&["search", "--state-dir", &state_arg, &word]).await
                })
            })
            .collect();
        for run in runs {
            let out = run.await.unwrap();
            assert!(out.ok, "{}", out.stderr);
        }
    }
}
