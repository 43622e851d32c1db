//! `--metrics ADDR` end to end: a list server, a supernode and two leaves on 127.0.57.x,
//! each serving `/metrics`. The test scrapes every daemon before and after a search and a
//! verified download and asserts that what happened shows: the search counted by outcome
//! and in the latency histogram, the bytes in on the downloader and out on the sharer, the
//! finished download and the served pieces, the supernode's leaves and index entries, the list server's listed supernode and registry messages. Every
//! scrape must pass `promtool check metrics` (strict exposition-format parsing and lint)
//! and must not contain the daemon's control token.
//!
//! Needs `promtool` (Debian: `apt-get install -y prometheus`); the test fails saying so
//! when it is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use superpeer::control::ControlFile;
use superpeer_common::ContentId;
use superpeer_integration::harness::{Cluster, Proc, attached, get, search, strings, wait_for};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 57;
/// Every daemon has an address of its own, so they can all use the usual exporter port.
const METRICS_PORT: u16 = 9464;
const NAME: &str = "harbour lights.ogg";
/// Several pieces, so the sharer serves more than one.
const SIZE: usize = 3 * 1024 * 1024 + 4_321;

/// A daemon and where its metrics are.
struct Daemon {
    proc: Proc,
    metrics: String,
}

/// Starts `superpeer COMMAND ARGS` on the next address, with `--metrics` on the same one.
fn start(cluster: &mut Cluster, label: &str, command: &str, extra: &[&str]) -> Daemon {
    let ip = cluster.next_ip().unwrap();
    let metrics = format!("{ip}:{METRICS_PORT}");
    let mut args = strings(&[
        command,
        "--listen",
        &format!("{ip}:0"),
        "--metrics",
        &metrics,
    ]);
    args.extend(strings(extra));
    let proc = cluster.start(label, &args).unwrap();
    Daemon { proc, metrics }
}

/// `GET /metrics` over plain HTTP/1.0: the body, after checking the status and the type.
fn scrape(daemon: &Daemon) -> String {
    let mut stream = TcpStream::connect(&daemon.metrics).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
        daemon.metrics
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// The value of one series (`name{labels}` exactly as exposed), or panics naming it.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Runs `promtool check metrics` on `text`; fails with promtool's complaint.
fn promtool_check(label: &str, text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "the metrics test needs promtool to check the exposition format strictly \
             (Debian: `apt-get install -y prometheus`): {e}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool rejects {label}'s metrics:\n{}{}\n--- the text ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

fn control_token(proc: &Proc) -> String {
    let file = std::fs::read(proc.state_dir.join(superpeer::control::CONTROL_FILE)).unwrap();
    let control: ControlFile = serde_json::from_slice(&file).unwrap();
    control.token
}

/// Every check a scrape must pass whatever it shows.
fn check_clean(daemon: &Daemon, text: &str) {
    promtool_check(&daemon.proc.label, text);
    assert!(text.contains("superpeer_"), "{text}");
    if daemon
        .proc
        .state_dir
        .join(superpeer::control::CONTROL_FILE)
        .exists()
    {
        let token = control_token(&daemon.proc);
        assert!(!token.is_empty());
        assert!(
            !text.contains(&token),
            "{}'s control token is in its metrics",
            daemon.proc.label
        );
    }
}

#[test]
fn metrics_move_with_a_search_and_a_download() {
    let mut cluster = Cluster::new(EXE, SUBNET).unwrap();
    let list = start(
        &mut cluster,
        "list",
        "list-server",
        &["--heartbeat-ms", "500"],
    );
    let list_addr = list.proc.pinned.to_string();
    let supernode = start(
        &mut cluster,
        "sn",
        "supernode",
        &["--list-server", &list_addr],
    );
    let sn_addr = supernode.proc.pinned.to_string();

    let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let content_id = ContentId::of_bytes(&bytes).to_string();
    let share = cluster.folder("sharer/share").unwrap();
    std::fs::write(share.join(NAME), &bytes).unwrap();
    let share = share.display().to_string();
    let sharer = start(
        &mut cluster,
        "sharer",
        "leaf",
        &["--peer", &sn_addr, "--no-election", "--share", &share],
    );
    let downloader = start(
        &mut cluster,
        "downloader",
        "leaf",
        &["--peer", &sn_addr, "--no-election"],
    );
    for leaf in [&sharer, &downloader] {
        attached(&leaf.proc, Duration::from_secs(30)).unwrap();
    }
    wait_for("the share indexed", Duration::from_secs(30), || {
        Ok((supernode.proc.status()?.indexed.unwrap_or(0) >= 1).then_some(()))
    })
    .unwrap();
    wait_for("the supernode listed", Duration::from_secs(30), || {
        Ok((value(&scrape(&list), "superpeer_listed_supernodes") >= 1.0).then_some(()))
    })
    .unwrap();

    let daemons = [&list, &supernode, &sharer, &downloader];
    let before: Vec<String> = daemons.iter().map(|d| scrape(d)).collect();
    for (daemon, text) in daemons.iter().zip(&before) {
        check_clean(daemon, text);
    }

    let results = search(&downloader.proc, &["harbour", "lights"], 1).unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].content_id, content_id);
    let out = cluster.root().join("downloaded.ogg");
    let events = get(&downloader.proc, &content_id, Some(&out)).unwrap();
    assert!(!events.is_empty());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        bytes,
        "the download is not the shared file"
    );

    // The list server's heartbeat count moves on its own; wait for one more than before.
    let heartbeats = r#"superpeer_list_server_messages_total{type="heartbeat"}"#;
    wait_for("a heartbeat counted", Duration::from_secs(10), || {
        Ok((value(&scrape(&list), heartbeats) > value(&before[0], heartbeats)).then_some(()))
    })
    .unwrap();
    let after: Vec<String> = daemons.iter().map(|d| scrape(d)).collect();
    for (daemon, text) in daemons.iter().zip(&after) {
        check_clean(daemon, text);
    }
    let moved = |i: usize, series: &str| value(&after[i], series) - value(&before[i], series);
    let size = SIZE as f64;

    // The list server.
    assert_eq!(value(&after[0], "superpeer_listed_supernodes"), 1.0);
    assert!(
        value(
            &after[0],
            r#"superpeer_list_server_messages_total{type="register"}"#
        ) >= 1.0
    );
    assert!(value(&after[0], "superpeer_list_server_connections_total") >= 1.0);

    // The supernode.
    assert_eq!(value(&after[1], r#"superpeer_role{role="supernode"}"#), 1.0);
    assert_eq!(value(&after[1], "superpeer_leaves"), 2.0);
    assert_eq!(
        value(&after[1], r#"superpeer_connections{kind="leaf"}"#),
        2.0
    );
    assert!(value(&after[1], "superpeer_index_entries") >= 1.0);
    // One supernode has no neighbour: its overlay query counters exist and stay at zero
    // (the search was answered from its own index).
    assert_eq!(
        value(
            &after[1],
            r#"superpeer_overlay_queries_total{direction="received"}"#
        ),
        0.0
    );
    assert_eq!(
        value(&after[1], r#"superpeer_connections{kind="neighbour"}"#),
        0.0
    );

    // The sharer.
    assert_eq!(value(&after[2], "superpeer_shared_files"), 1.0);
    assert_eq!(value(&after[2], "superpeer_unpublished_files"), 0.0);
    assert_eq!(value(&after[2], "superpeer_published_files"), 1.0);
    // Its one file was hashed by the first scan, and nothing is hashing now.
    assert_eq!(value(&after[2], "superpeer_hashed_bytes_total"), size);
    assert_eq!(value(&after[2], "superpeer_hashing_pending_bytes"), 0.0);
    assert!(
        moved(
            2,
            r#"superpeer_bytes_total{kind="transfer",direction="out"}"#
        ) >= size
    );
    assert!(moved(2, "superpeer_uploaded_pieces_total") >= 1.0);

    // The downloader.
    assert_eq!(value(&after[3], r#"superpeer_role{role="leaf"}"#), 1.0);
    assert_eq!(
        value(&after[3], r#"superpeer_connections{kind="supernode"}"#),
        1.0
    );
    assert_eq!(moved(3, r#"superpeer_searches_total{outcome="full"}"#), 1.0);
    assert_eq!(moved(3, r#"superpeer_searches_total{outcome="zero"}"#), 0.0);
    assert_eq!(moved(3, "superpeer_search_duration_seconds_count"), 1.0);
    assert!(moved(3, "superpeer_search_duration_seconds_sum") > 0.0);
    assert!(
        moved(
            3,
            r#"superpeer_bytes_total{kind="transfer",direction="in"}"#
        ) >= size
    );
    assert_eq!(moved(3, r#"superpeer_downloads{state="finished"}"#), 1.0);

    // A search with nothing to find counts as zero.
    let none = search(&downloader.proc, &["nothingmatchesthis"], 5).unwrap();
    assert!(none.is_empty());
    let last = scrape(&downloader);
    assert_eq!(
        value(&last, r#"superpeer_searches_total{outcome="zero"}"#)
            - value(&before[3], r#"superpeer_searches_total{outcome="zero"}"#),
        1.0
    );
}
