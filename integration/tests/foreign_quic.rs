//! A foreign QUIC stack as a hostile peer: `integration/foreign/attack.py` drives aioquic (and
//! raw UDP) at a supernode and then at a sharing leaf, real daemons on 127.0.75.x. It has no
//! raw public keys of its own, so its handshakes must end in the node's refusal: wrong ALPNs,
//! no client key, a key it cannot sign for, mangled Initials, unknown versions, 0-RTT without
//! a ticket, connection migration from new ports, a crowd of 300 handshakes, 200 more that
//! stall halfway, random datagrams. (The one handshake it may finish, with a raw key it
//! holds, is the control: the node must then close it at the hello timeout.)
//! Beside it, our own client (a fresh identity) gets past the handshake and plays slow-loris:
//! every stream the node allows on as many connections as its per-address cap lets through,
//! each trickling a hello a byte a second, which the node must cut at its hello timeout.
//!
//! Throughout, an honest leaf keeps finding the shared file; afterwards both daemons answer
//! their control API, a newcomer's handshake goes through, the honest leaf downloads the file
//! (verified), and each daemon's peak memory stayed within a bound. The script reports what
//! it saw as one JSON line; the checks on it are here.
//!
//! Needs `python3` with aioquic: `pip install -r integration/foreign/requirements.txt`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use superpeer_common::wire::{
    CloseCode, FrameReader, Hello, HelloReply, Intent, LENGTH_PREFIX, PROTOCOL_VERSION, Role,
    decode, encode,
};
use superpeer_common::{
    ContentId, Endpoint, GateLimits, HELLO_TIMEOUT, Identity, PeerAddr, TransportLimits,
};
use superpeer_integration::harness::{Cluster, Proc, attached, get, search, wait_for};
use tokio::task::JoinSet;

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 75;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/foreign/attack.py");
const INSTALL: &str = "pip install -r integration/foreign/requirements.txt";
/// Where the script's packets come from: its own addresses, so the per-address caps it meets
/// are its own (the crowd is spread over all four).
const SCRIPT_SOURCES: &str = "127.0.75.200,127.0.75.201,127.0.75.202,127.0.75.203";
/// The slow-loris's address.
const LORIS_SOURCE: &str = "127.0.75.210:0";
/// Longest the script may run against one node. It takes some 11 s; half of that waits for
/// the node to close the one handshake it confirms (at its hello timeout).
const SCRIPT_LIMIT: Duration = Duration::from_secs(30);
/// How much a daemon's peak resident memory may exceed its resident memory before the attacks.
/// Measured (debug build): a supernode peaks 6-11 MB above, a leaf 3-5 MB; the rest is margin.
const RSS_GROWTH_BOUND_KB: u64 = 32 * 1024;
/// Bidirectional streams an incoming connection may have open at once: one, its session
/// (`TransportLimits::quinn_server_config`). A transfer connection gets the next only once the
/// last is done.
const NODE_BIDI_LIMIT: usize = 1;
/// Unidirectional streams the same, though nothing of ours uses one.
const NODE_UNI_LIMIT: usize = 1;
/// Streams the slow-loris tries to open on each connection, at most.
const STREAMS_TRIED: usize = 32;
/// Longest a slow-loris connection may live after its handshake: the hello timeout, and room
/// for a node busy with the script's crowd at the same time.
const LORIS_BOUND: Duration = Duration::from_secs(HELLO_TIMEOUT.as_secs() + 5);
/// A close that comes this soon after the handshake is not the hello timeout's.
const EARLY_CLOSE: Duration = Duration::from_secs(2);
/// Slow-loris connections beyond the node's per-address cap: these must be refused.
const LORIS_EXTRA: usize = 8;
/// Slow-loris connections on a leaf that first finish a transfer session (welcomed), then
/// trickle the hello of the next: at most two transfer sessions a peer.
const LORIS_AFTER_TRANSFER: usize = 2;
/// The honest file, and a word of its name.
const HONEST_NAME: &str = "foreign ferns field guide.txt";
const HONEST_WORD: &str = "ferns";
/// What a hostile client claims as its address.
const FAKE_ADVERTISE: &str = "127.0.75.250:9";

#[test]
fn a_foreign_quic_stack_cannot_take_nodes_down() {
    let started = Instant::now();
    let python = aioquic_version();
    println!("python3 with aioquic {python}");

    let mut cluster = Cluster::new(EXE, SUBNET).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let supernode = cluster.supernode("sn", &list, &[]).unwrap();
    let share = cluster.folder("sharer/share").unwrap();
    let honest = honest_bytes();
    std::fs::write(share.join(HONEST_NAME), &honest).unwrap();
    let honest_id = ContentId::of_bytes(&honest).to_string();
    let sn_addr = supernode.pinned.to_string();
    let share = share.to_str().unwrap().to_string();
    let peer = ["--peer", &sn_addr, "--no-election"];
    let sharer = cluster
        .leaf("sharer", &[&peer[..], &["--share", &share]].concat())
        .unwrap();
    let asker = cluster.leaf("asker", &peer).unwrap();
    attached(&sharer, Duration::from_secs(30)).unwrap();
    attached(&asker, Duration::from_secs(30)).unwrap();
    wait_for(
        "the honest file to be found",
        Duration::from_secs(20),
        || Ok(finds_honest_file(&asker, &honest_id).then_some(())),
    )
    .unwrap();
    println!("cluster up in {:?}", started.elapsed());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cap = |limits: GateLimits| limits.max_per_source;
    for (target, node, per_source, after_transfer) in [
        (&supernode, "supernode", cap(GateLimits::SUPERNODE), 0),
        (&sharer, "leaf", cap(GateLimits::LEAF), LORIS_AFTER_TRANSFER),
    ] {
        let before = memory(target);
        let attacking = AtomicBool::new(true);
        let (found, missed) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (report, loris) = std::thread::scope(|scope| {
            // An honest leaf keeps searching while the node is under attack.
            scope.spawn(|| {
                while attacking.load(Ordering::Relaxed) {
                    let counter = if finds_honest_file(&asker, &honest_id) {
                        &found
                    } else {
                        &missed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
            let _stop = StopOnDrop(&attacking);
            let pinned = target.pinned;
            runtime.block_on(async {
                let loris = tokio::spawn(slow_loris(pinned, per_source, after_transfer));
                let script = tokio::task::spawn_blocking(move || run_script(pinned.addr));
                let (loris, script) = tokio::join!(loris, script);
                (script.unwrap(), loris.unwrap())
            })
        });
        let after = memory(target);
        println!("== {node} ({})", target.pinned.addr);
        println!("attack.py: {}", serde_json::to_string(&report).unwrap());
        println!("slow-loris: {loris:?}");
        let (found, missed) = (found.into_inner(), missed.into_inner());
        println!("honest searches during the attacks: {found} found the file, {missed} did not");
        println!(
            "memory: VmRSS {} kB before, {} kB after, peak VmHWM {} kB (growth to the peak {} \
             kB, bound {RSS_GROWTH_BOUND_KB} kB)",
            before.rss_kb,
            after.rss_kb,
            after.peak_kb,
            after.peak_kb.saturating_sub(before.rss_kb)
        );
        check_script(node, &report);
        check_loris(node, &loris, per_source, after_transfer);
        assert!(
            found >= 3 && missed == 0,
            "{node}: honest searches during the attacks: {found} found the file, {missed} did not"
        );
        assert!(
            after.peak_kb < before.rss_kb + RSS_GROWTH_BOUND_KB,
            "{node}: peak memory {} kB, {} kB before the attacks",
            after.peak_kb,
            before.rss_kb
        );
        assert_alive(&supernode);
        assert_alive(&sharer);
        // A newcomer still gets through the handshake, right after the attacks (some of the
        // stalled handshakes are still held).
        let addr = target.pinned.addr;
        let id = runtime.block_on(async { newcomer(addr).identify(addr).await });
        assert_eq!(id, target.pinned.node_id, "{node}: a newcomer's handshake");
    }

    // The honest side still works end to end: the sharer is attached, its file is found and
    // downloads, verified.
    assert!(sharer.status().unwrap().supernode.is_some());
    assert!(finds_honest_file(&asker, &honest_id));
    let out = cluster.root().join("downloaded");
    let events = get(&asker, &honest_id, Some(&out)).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, superpeer::control::GetEventJson::Finished { .. })),
        "download after the attacks: {events:?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), honest);
    println!("whole test: {:?}", started.elapsed());
}

// ----- the foreign stack -----

/// The version of aioquic that `python3` imports; fails the test, saying how to install it,
/// when there is no `python3` or no aioquic.
fn aioquic_version() -> String {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import aioquic, cryptography; print(aioquic.__version__)",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().into(),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            panic!(
                "this test drives aioquic from python3, which cannot import it ({}): {INSTALL}",
                stderr.lines().last().unwrap_or_default().trim()
            )
        }
        Err(e) => {
            panic!("this test drives aioquic from python3, and there is none ({e}): {INSTALL}")
        }
    }
}

/// Runs the attack script against `target`, bounded by [`SCRIPT_LIMIT`]; its JSON report.
fn run_script(target: SocketAddr) -> Value {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(["--target", &target.to_string()])
        .args(["--bind", SCRIPT_SOURCES.split(',').next().unwrap()])
        .args(["--sources", SCRIPT_SOURCES])
        .args([
            "--hold",
            &(LORIS_BOUND + Duration::from_secs(2)).as_secs().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}; {INSTALL}"));
    let deadline = Instant::now() + SCRIPT_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "attack.py ran longer than {SCRIPT_LIMIT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "attack.py failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("attack.py printed {line:?}: {e}"))
}

/// Handshakes that must never be confirmed: no key, a key not held, or not our protocol.
const REFUSED: [&str; 10] = [
    "alpn_h3",
    "alpn_superpeer/2",
    "alpn_none",
    "alpn_empty",
    "no_client_key",
    "x509_client_cert",
    "rpk_no_client_key",
    "rpk_x509_as_key",
    "rpk_wrong_signature",
    "rpk_key_with_chain",
];

/// What the script must have seen.
fn check_script(node: &str, report: &Value) {
    let attacks = &report["attacks"];
    let count = |path: &str| -> u64 {
        let value = path.split('.').fold(attacks, |v, key| &v[key]);
        value
            .as_u64()
            .unwrap_or_else(|| panic!("{node}: no count {path} in the report"))
    };
    // Refused, each of them, by the node (not lost, not given up by aioquic).
    for name in REFUSED {
        let attempts = count(&format!("{name}.attempts"));
        assert!(attempts > 0, "{node}: {name} was not tried");
        assert_eq!(count(&format!("{name}.confirmed")), 0, "{node}: {name}");
        assert_eq!(
            count(&format!("{name}.refused")),
            attempts,
            "{node}: {name} not refused every time: {}",
            attacks[name]
        );
    }
    // The crowd: none confirmed; most answered with a refusal even at once.
    let crowd = count("crowd.attempts");
    assert_eq!(count("crowd.confirmed"), 0, "{node}: {}", attacks["crowd"]);
    assert!(
        count("crowd.refused") * 2 >= crowd,
        "{node}: the crowd: {}",
        attacks["crowd"]
    );
    // The control: aioquic holding the key it presents is a peer like any other. It says no
    // hello, and the node closes it (ProtocolViolation) at the hello timeout.
    let own = &attacks["rpk_own_key"];
    assert_eq!(
        count("rpk_own_key.confirmed"),
        count("rpk_own_key.attempts"),
        "{node}: {own}"
    );
    let codes = own["codes"].as_object().unwrap();
    let hello_close = format!("app:{:#x}", CloseCode::ProtocolViolation.code());
    assert!(
        codes.keys().all(|code| *code == hello_close),
        "{node}: {own}"
    );
    assert!(
        count("rpk_own_key.closed_after_ms") < LORIS_BOUND.as_millis() as u64,
        "{node}: {own}"
    );
    // Unknown versions draw Version Negotiation listing version 1, with our ids echoed; a
    // packet under 1200 bytes draws nothing (it could be spoofed to amplify).
    let vn = &attacks["version_negotiation"];
    assert!(count("version_negotiation.answered") >= 1, "{node}: {vn}");
    assert_eq!(vn["lists_v1"], Value::Bool(true), "{node}: {vn}");
    assert_eq!(
        count("version_negotiation.cids_echoed"),
        count("version_negotiation.answered"),
        "{node}: {vn}"
    );
    assert_eq!(
        count("version_negotiation.short_answered"),
        0,
        "{node}: {vn}"
    );
    // The raw path reaches the node (its controls are answered), so what draws no answer
    // was dropped: Initials cut under 1200 bytes, 0-RTT with no connection behind it.
    assert!(count("mangled_raw.pristine.answered") >= 1, "{node}");
    assert_eq!(count("mangled_raw.truncated.answered"), 0, "{node}");
    assert!(count("zero_rtt.after_initial.answered") >= 1, "{node}");
    assert_eq!(count("zero_rtt.alone.answered"), 0, "{node}");
    // A ClientHello sealed again reaches TLS (the control gets a ServerHello); Initials with
    // frames they may not carry, a CRYPTO offset out of reach, two hellos: each closed.
    let sealed = &attacks["mangled_sealed"];
    assert!(
        sealed["resealed_pristine"]["verdicts"]["server_hello"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{node}: {}",
        sealed["resealed_pristine"]
    );
    for name in ["forbidden_frames", "far_crypto_offset", "hello_twice"] {
        let verdicts = sealed[name]["verdicts"].as_object().unwrap();
        assert!(
            verdicts.keys().all(|v| v.starts_with("close:")),
            "{node}: {name}: {}",
            sealed[name]
        );
    }
    // Never an amplifier: no attack drew more than three times the bytes it sent
    // (RFC 9000 8.1's limit towards an address not yet validated).
    let mut raw = Vec::new();
    byte_counts("", attacks, &mut raw);
    assert!(raw.len() >= 10, "{node}: byte counts missing: {raw:?}");
    for (name, sent, answered) in raw {
        assert!(
            answered <= 3 * sent,
            "{node}: {name} drew {answered} bytes for {sent}"
        );
    }
}

/// Every (attack, bytes sent, bytes answered) in the report, at any depth.
fn byte_counts(path: &str, value: &Value, out: &mut Vec<(String, u64, u64)>) {
    let Some(object) = value.as_object() else {
        return;
    };
    if let (Some(sent), Some(answered)) = (
        object.get("bytes_sent").and_then(Value::as_u64),
        object.get("bytes_answered").and_then(Value::as_u64),
    ) {
        out.push((path.to_string(), sent, answered));
    }
    for (key, inner) in object {
        byte_counts(&format!("{path}/{key}"), inner, out);
    }
}

// ----- the slow-loris -----

/// What the slow-loris saw.
#[derive(Debug, Default)]
struct Loris {
    /// Connections the node held: past its per-address cap, not refused.
    held: usize,
    /// Connections refused at the per-address cap (before or right after the handshake).
    refused: usize,
    /// Most bidirectional and unidirectional streams open at once on one connection.
    most_bidi: usize,
    most_uni: usize,
    /// Held connections on which not even one bidirectional stream could be opened.
    no_stream: usize,
    /// How held connections ended: closed for the hello (code ProtocolViolation), or lost.
    closed_for_hello: usize,
    lost: Vec<String>,
    /// Anything else: a close with another code or reason, or a connection left open.
    wrong: Vec<String>,
    /// The longest a held connection lived after its handshake.
    longest: Duration,
    /// Connections that trickled after a welcomed transfer session.
    after_transfer: usize,
}

/// How one slow-loris connection went.
enum Strand {
    Refused,
    Held {
        bidi: usize,
        uni: usize,
        end: Result<(CloseCode, String), String>,
        lived: Duration,
        after_transfer: bool,
    },
}

/// `per_source + LORIS_EXTRA` connections from one address and one fresh identity; each opens
/// every stream the node allows and trickles a hello into each, a byte a second. The first
/// `after_transfer` finish a transfer session first and trickle on the next stream.
async fn slow_loris(target: PeerAddr, per_source: usize, after_transfer: usize) -> Loris {
    let identity = Arc::new(Identity::generate().unwrap());
    let from: SocketAddr = LORIS_SOURCE.parse().unwrap();
    let endpoint = Endpoint::bind(identity, from, TransportLimits::default()).unwrap();
    let mut strands = JoinSet::new();
    // The transfer ones first, so that none of them lands past the cap.
    for _ in 0..after_transfer {
        let conn = endpoint.connect(&target).await.unwrap().quinn().clone();
        strands.spawn(strand(Ok(conn), true));
    }
    for _ in after_transfer..per_source + LORIS_EXTRA {
        let endpoint = endpoint.clone();
        strands.spawn(async move {
            let conn = endpoint.connect(&target).await.map(|c| c.quinn().clone());
            strand(conn.map_err(|e| e.to_string()), false).await
        });
    }
    let mut seen = Loris::default();
    for strand in strands.join_all().await {
        let Strand::Held {
            bidi,
            uni,
            end,
            lived,
            after_transfer,
        } = strand
        else {
            seen.refused += 1;
            continue;
        };
        seen.held += 1;
        seen.most_bidi = seen.most_bidi.max(bidi);
        seen.most_uni = seen.most_uni.max(uni);
        seen.no_stream += usize::from(bidi == 0);
        seen.longest = seen.longest.max(lived);
        seen.after_transfer += usize::from(after_transfer);
        match end {
            Ok((CloseCode::ProtocolViolation, reason)) if reason.contains("hello") => {
                seen.closed_for_hello += 1
            }
            Ok((code, reason)) => seen.wrong.push(format!("closed {code:?} ({reason})")),
            Err(lost) if lost.starts_with("open") => seen.wrong.push(lost),
            Err(lost) => seen.lost.push(lost),
        }
    }
    seen.lost.sort();
    seen.lost.dedup();
    seen
}

async fn strand(conn: Result<quinn::Connection, String>, after_transfer: bool) -> Strand {
    let conn = match conn {
        Ok(conn) => conn,
        // The gate refused it before the handshake.
        Err(e) if e.contains("refused") => return Strand::Refused,
        Err(e) => panic!("slow-loris: cannot connect: {e}"),
    };
    let up = Instant::now();
    if after_transfer {
        transfer_session(&conn).await;
    }
    // Every stream the node allows, of both kinds: open until one has to wait for the
    // node's credit. (Nothing is sent on a stream until it is written to.)
    let wait = Duration::from_millis(300);
    let (mut streams, mut bidi) = (Vec::new(), 0);
    while bidi < STREAMS_TRIED {
        match tokio::time::timeout(wait, conn.open_bi()).await {
            Ok(Ok((send, _recv))) => streams.push(send),
            _ => break,
        }
        bidi += 1;
    }
    let mut uni = 0;
    while uni < STREAMS_TRIED {
        match tokio::time::timeout(wait, conn.open_uni()).await {
            Ok(Ok(send)) => streams.push(send),
            _ => break,
        }
        uni += 1;
    }
    let hello = encode(&(
        PROTOCOL_VERSION,
        Hello::new(
            Role::Leaf,
            Intent::Probe,
            Some(FAKE_ADVERTISE.parse().unwrap()),
        ),
    ))
    .unwrap();
    let trickle = async {
        for byte in &hello {
            for send in &mut streams {
                if send.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let left = LORIS_BOUND.saturating_sub(up.elapsed());
    let end = tokio::select! {
        closed = conn.closed() => Some(closed),
        () = async { trickle.await; std::future::pending::<()>().await } => None,
        () = tokio::time::sleep(left) => None,
    };
    let refusal = (
        CloseCode::Refused,
        "too many connections from this address".to_string(),
    );
    let end = match end {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => Ok((
            CloseCode::from_varint(close.error_code),
            String::from_utf8_lossy(&close.reason).into_owned(),
        )),
        // An application close that reaches us before the handshake is confirmed on our side
        // comes without its code and reason (RFC 9000 10.2.3). The only close the node makes
        // that early is the refusal at its per-address cap.
        Some(quinn::ConnectionError::ConnectionClosed(close))
            if close.error_code == quinn::TransportErrorCode::APPLICATION_ERROR
                && up.elapsed() < EARLY_CLOSE =>
        {
            Ok(refusal.clone())
        }
        // A close lost to a full socket buffer: the node forgot the connection all the same.
        Some(quinn::ConnectionError::Reset) => Err("forgot it (stateless reset)".into()),
        Some(quinn::ConnectionError::TimedOut) => Err("went silent".into()),
        Some(other) => Err(format!("ended: {other}")),
        None => Err(format!("open {LORIS_BOUND:?} after the handshake")),
    };
    // Past the per-address cap the node closes a connection as soon as its side of the
    // handshake is done (later than ours, under load).
    if matches!(&end, Ok((CloseCode::Refused, reason)) if *reason == refusal.1) {
        return Strand::Refused;
    }
    Strand::Held {
        bidi,
        uni,
        end,
        lived: up.elapsed(),
        after_transfer,
    }
}

/// A transfer session on `conn`, welcomed and finished at once (no request): the node then
/// takes the connection's next stream as the next session.
async fn transfer_session(conn: &quinn::Connection) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let hello = Hello::new(Role::Leaf, Intent::Transfer, None);
    send.write_all(&encode(&(PROTOCOL_VERSION, hello)).unwrap())
        .await
        .unwrap();
    let mut reader = FrameReader::new(recv);
    let body = reader.read_frame().await.unwrap().unwrap().to_vec();
    let ours = encode(&PROTOCOL_VERSION).unwrap();
    let reply: HelloReply = decode(&body[ours.len() - LENGTH_PREFIX..]).unwrap();
    assert!(
        matches!(reply, HelloReply::Welcome { .. }),
        "slow-loris: transfer session {reply:?}"
    );
    send.finish().unwrap();
    // The node ends its side once ours is finished; only then is the stream done.
    let mut recv = reader.into_inner();
    tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024))
        .await
        .unwrap()
        .unwrap();
}

fn check_loris(node: &str, seen: &Loris, per_source: usize, after_transfer: usize) {
    assert!(
        seen.held <= per_source && seen.held * 2 >= per_source,
        "{node}: slow-loris held {} connections, the per-address cap is {per_source}: {seen:?}",
        seen.held
    );
    assert!(
        seen.refused >= LORIS_EXTRA,
        "{node}: slow-loris connections past the cap not refused: {seen:?}"
    );
    assert!(
        seen.most_bidi <= NODE_BIDI_LIMIT && seen.most_uni <= NODE_UNI_LIMIT && seen.no_stream == 0,
        "{node}: slow-loris streams: {seen:?}"
    );
    assert_eq!(seen.after_transfer, after_transfer, "{node}: {seen:?}");
    assert!(seen.wrong.is_empty(), "{node}: slow-loris: {seen:?}");
    assert!(
        seen.closed_for_hello * 2 >= seen.held,
        "{node}: slow-loris: most closes lost: {seen:?}"
    );
    assert!(seen.longest < LORIS_BOUND, "{node}: slow-loris: {seen:?}");
}

// ----- the honest side -----

/// Whether `asker` finds the honest file by a word of its name.
fn finds_honest_file(asker: &Proc, id: &str) -> bool {
    search(asker, &[HONEST_WORD], 10)
        .map(|results| results.iter().any(|r| r.content_id == id))
        .unwrap_or(false)
}

/// The honest file's content: 400 kB, a few pieces.
fn honest_bytes() -> Vec<u8> {
    (0..100_000u32)
        .flat_map(|i| (i ^ 0x75).to_le_bytes())
        .collect()
}

/// A client of a fresh identity, as an honest newcomer is.
fn newcomer(target: SocketAddr) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::client(identity, target, TransportLimits::default()).unwrap()
}

fn assert_alive(proc: &Proc) {
    assert!(
        Path::new(&format!("/proc/{}", proc.pid())).exists(),
        "{} is gone",
        proc.label
    );
    proc.status()
        .unwrap_or_else(|e| panic!("{} does not answer its control API: {e:#}", proc.label));
}

/// Clears a flag when dropped (also while unwinding).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A process's resident memory, now and at its peak, in kB.
struct Memory {
    rss_kb: u64,
    peak_kb: u64,
}

fn memory(proc: &Proc) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{}/status", proc.pid()))
    };
    Memory {
        rss_kb: field("VmRSS:"),
        peak_kb: field("VmHWM:"),
    }
}
