//! Hostile peers: a raw QUIC client, written here with quinn rather than through the
//! library's happy path, sends garbage, oversize and truncated frames, hellos of another
//! version, floods of queries and publishes, and crowds of connections that say nothing, to
//! a supernode and then to a leaf. Each attack must end with the node closing the connection
//! (with the close code the protocol gives it, or a refusal) within a bound; throughout, the
//! node stays up and keeps answering honest leaves, and its memory stays bounded.
//!
//! Only the connection (TLS with raw keys) comes from the library; every byte on the streams
//! is written by hand, so nothing here is limited to what a well-behaved peer would send.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::wire::{
    CloseCode, DownloaderToHolder, FileEntry, FrameReader, Hello, HelloReply, HolderToDownloader,
    Intent, LENGTH_PREFIX, LeafToSupernode, MAX_ENTRIES_PER_MESSAGE, MAX_FRAME_SIZE,
    MAX_NAME_BYTES, Message, PROTOCOL_VERSION, Query, QueryId, Role, SupernodeToLeaf, decode,
    encode,
};
use superpeer_common::{ContentId, Endpoint, Identity, PeerAddr, TransportLimits};
use superpeer_integration::harness::{Cluster, Proc, attached, get, search, wait_for};
use tokio::task::JoinSet;

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 62;
/// Longest a node may take to close a connection that broke the protocol. Most closes come
/// in well under a second; a connection that never says hello waits for the 5 s hello
/// timeout.
const CLOSE_BOUND: Duration = Duration::from_secs(12);
/// The same for a connection of a crowd, from when its handshake is done on our side. The
/// node's side of a handshake may finish later (it has hundreds to do, and packets are lost
/// when its socket buffer overflows), and has 5 s to; then the hello has 5 s.
const CROWD_CLOSE_BOUND: Duration = Duration::from_secs(20);
/// How much a node's resident memory may grow over the attacks on it (its peak).
const RSS_GROWTH_BOUND_KB: u64 = 100 * 1024;
/// Connections opened at once that never say anything.
const SILENT_CONNECTIONS: usize = 200;
/// Connections that fill their flow-control windows with streams nobody reads. Kept low:
/// each costs the node some 3-5 MB until its hello times out (see the test at scale below).
const STUFFED_CONNECTIONS: usize = 5;
/// What a hostile leaf claims as its address.
const FAKE_ADVERTISE: &str = "127.0.62.250:9";
/// The honest file, and a word of its name.
const HONEST_NAME: &str = "honest sunrise notes.txt";
const HONEST_WORD: &str = "sunrise";
/// A word in every name the hostile publisher publishes.
const HOSTILE_WORD: &str = "hostileword";
/// The per-holder cap of the supernode's index (`IndexLimits::max_entries_per_holder`).
const HOLDER_CAP: usize = 10_000;

#[test]
fn a_hostile_peer_cannot_take_nodes_down() {
    let started = Instant::now();
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
    let baseline = memory(&supernode);
    println!(
        "supernode memory after start-up: VmRSS {} kB, VmHWM {} kB",
        baseline.rss_kb, baseline.peak_kb
    );
    println!("cluster up in {:?}", started.elapsed());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sn_target = supernode.pinned;

    // Honest searches keep going while the supernode is under attack.
    let attacking = AtomicBool::new(true);
    let (honest_ok, honest_failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let seen = std::thread::scope(|scope| {
        scope.spawn(|| {
            while attacking.load(Ordering::Relaxed) {
                if finds_honest_file(&asker, &honest_id) {
                    honest_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    honest_failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        // Stops the searches however the attacks end: a failed assertion must not leave
        // the scope waiting for them forever.
        let _stop = StopOnDrop(&attacking);
        runtime.block_on(attack_supernode(sn_target, &asker))
    });
    report("supernode", &seen);
    let (ok, failed) = (
        honest_ok.load(Ordering::Relaxed),
        honest_failed.load(Ordering::Relaxed),
    );
    println!("honest searches during the attack: {ok} found the file, {failed} did not");
    assert!(
        ok >= 5 && failed == 0,
        "honest searches during the attack: {ok} good, {failed} bad"
    );

    // The supernode is still up and still serves honest leaves.
    assert_alive(&supernode);
    wait_for(
        "only the honest leaves attached",
        Duration::from_secs(5),
        || Ok((supernode.status()?.leaves == Some(2)).then_some(())),
    )
    .unwrap();
    assert!(finds_honest_file(&asker, &honest_id));
    // What the hostile publisher published left with it.
    wait_for(
        "the hostile publisher's entries to leave the index",
        Duration::from_secs(10),
        || {
            Ok(search(&asker, &[HOSTILE_WORD], 10)?
                .is_empty()
                .then_some(()))
        },
    )
    .unwrap();
    let after = memory(&supernode);
    println!(
        "supernode memory after the attack: VmRSS {} kB (baseline {} kB, growth {} kB), \
         peak VmHWM {} kB",
        after.rss_kb,
        baseline.rss_kb,
        after.rss_kb.saturating_sub(baseline.rss_kb),
        after.peak_kb
    );
    assert!(
        after.peak_kb < baseline.rss_kb + RSS_GROWTH_BOUND_KB,
        "supernode peak memory {} kB, baseline {} kB",
        after.peak_kb,
        baseline.rss_kb
    );

    // Now the sharing leaf's own port.
    let leaf_baseline = memory(&sharer);
    let leaf_seen = runtime.block_on(attack_leaf(sharer.pinned));
    report("leaf", &leaf_seen);
    assert_alive(&sharer);
    let leaf_after = memory(&sharer);
    println!(
        "leaf memory: VmRSS {} kB before its attack, {} kB after, peak VmHWM {} kB",
        leaf_baseline.rss_kb, leaf_after.rss_kb, leaf_after.peak_kb
    );
    assert!(
        leaf_after.peak_kb < leaf_baseline.rss_kb + RSS_GROWTH_BOUND_KB,
        "leaf peak memory {} kB, baseline {} kB",
        leaf_after.peak_kb,
        leaf_baseline.rss_kb
    );
    assert_alive(&supernode);
    assert!(sharer.status().unwrap().supernode.is_some());
    assert!(finds_honest_file(&asker, &honest_id));
    // It still serves its file.
    let out = cluster.root().join("downloaded");
    let events = get(&asker, &honest_id, Some(&out)).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, superpeer::control::GetEventJson::Finished { .. })),
        "download after the attack: {events:?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), honest);
    println!("whole test: {:?}", started.elapsed());
}

/// The stuffed-streams attack at scale: 100 connections, each holding a half-said hello and
/// filling the streams it may open up to its flow-control windows (4 MiB a connection by
/// default). The supernode reads none of it but holds it until each hello times out: some
/// 2-5 MB a connection, 200-500 MB for a hundred, and the connection cap is 4,096. Run it
/// Once failed (unread data was bounded per connection only by the 4 MiB receive window);
/// incoming connections now get a 64 KiB window until their hello is admitted.
#[test]
fn stuffed_streams_at_scale_stay_within_the_memory_bound() {
    let mut cluster = Cluster::new(EXE, SUBNET + 5).unwrap();
    let list = cluster.list_server("list", &[]).unwrap();
    let supernode = cluster.supernode("sn", &list, &[]).unwrap();
    let baseline = memory(&supernode);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen = runtime.block_on(stuffed_streams(supernode.pinned, 100));
    report("supernode", &[seen]);
    assert_alive(&supernode);
    let after = memory(&supernode);
    println!(
        "supernode memory: baseline VmRSS {} kB, peak VmHWM {} kB",
        baseline.rss_kb, after.peak_kb
    );
    assert!(
        after.peak_kb < baseline.rss_kb + RSS_GROWTH_BOUND_KB,
        "supernode peak memory {} kB, baseline {} kB",
        after.peak_kb,
        baseline.rss_kb
    );
}

/// Every attack on the supernode; returns what each saw. The precise attacks run at once,
/// then the crowds: crowds make the node drop UDP packets (a full socket buffer), and a
/// lost close would blur what the precise attacks check.
async fn attack_supernode(target: PeerAddr, asker: &Proc) -> Vec<Seen> {
    let mut attacks = JoinSet::new();
    common_attacks(&mut attacks, target);
    attacks.spawn(attach_then_garbage(target));
    attacks.spawn(attach_then_oversize(target));
    attacks.spawn(oversized_publish(target));
    attacks.spawn(wrong_intent(
        target,
        Role::Leaf,
        Intent::Link,
        "link as a leaf",
    ));
    attacks.spawn(query_flood(target));
    // The publish flood searches through an honest leaf midway (a blocking call): it runs
    // beside the others rather than as a task of its own.
    let (mut seen, published) = tokio::join!(attacks.join_all(), publish_flood(target, asker));
    seen.push(published);
    seen.extend(crowds(target).await);
    seen
}

/// Every attack on a leaf (which answers only probes and transfers): the precise ones at
/// once, then the crowds.
async fn attack_leaf(target: PeerAddr) -> Vec<Seen> {
    let mut attacks = JoinSet::new();
    common_attacks(&mut attacks, target);
    attacks.spawn(wrong_intent(
        target,
        Role::Leaf,
        Intent::Attach,
        "attach to a leaf",
    ));
    attacks.spawn(wrong_intent(
        target,
        Role::Supernode,
        Intent::Link,
        "link to a leaf",
    ));
    attacks.spawn(transfer_oversize_request(target));
    attacks.spawn(transfer_bad_range(target));
    attacks.spawn(transfer_have_flood(target));
    attacks.spawn(transfer_session_crowd(target));
    let mut seen = attacks.join_all().await;
    seen.extend(crowds(target).await);
    seen
}

/// Crowds of connections, at once.
async fn crowds(target: PeerAddr) -> [Seen; 2] {
    let (silent, stuffed) = tokio::join!(
        silent_crowd(target),
        stuffed_streams(target, STUFFED_CONNECTIONS)
    );
    [silent, stuffed]
}

/// Attacks on the hello, which every node reads the same way.
fn common_attacks(attacks: &mut JoinSet<Seen>, target: PeerAddr) {
    let mut rng = StdRng::seed_from_u64(62);
    let mut garbage = vec![0u8; 64 * 1024];
    rng.fill(&mut garbage[..]);
    // Random bytes: the first four read as a length far over the hello's limit.
    attacks.spawn(raw_first_stream(
        target,
        "64 KiB of random bytes",
        garbage,
        false,
        CloseCode::FrameTooLarge,
    ));
    // A plausible length and our version, then a body that is no hello.
    let mut body = vec![0xffu8; 40];
    // Our version as postcard writes it (a varint: one byte below 128).
    body[0] = u8::try_from(PROTOCOL_VERSION).unwrap();
    attacks.spawn(raw_first_stream(
        target,
        "garbage hello body",
        framed(&body),
        false,
        CloseCode::ProtocolViolation,
    ));
    attacks.spawn(raw_first_stream(
        target,
        "length prefix 0xFFFFFFFF, then nothing",
        u32::MAX.to_be_bytes().to_vec(),
        false,
        CloseCode::FrameTooLarge,
    ));
    // A frame size any other message may have, but far more than a hello needs.
    attacks.spawn(raw_first_stream(
        target,
        "a 1 MiB hello announced, 1 KiB sent",
        [
            (MAX_FRAME_SIZE as u32).to_be_bytes().to_vec(),
            vec![0u8; 1024],
        ]
        .concat(),
        false,
        CloseCode::FrameTooLarge,
    ));
    attacks.spawn(raw_first_stream(
        target,
        "length prefix MAX_FRAME_SIZE + 1",
        ((MAX_FRAME_SIZE + 1) as u32).to_be_bytes().to_vec(),
        false,
        CloseCode::FrameTooLarge,
    ));
    let hello = hello_frame(PROTOCOL_VERSION, Role::Leaf, Intent::Probe);
    attacks.spawn(raw_first_stream(
        target,
        "half a hello, then FIN",
        hello[..hello.len() / 2].to_vec(),
        true,
        CloseCode::ProtocolViolation,
    ));
    attacks.spawn(raw_first_stream(
        target,
        "two bytes of a length prefix, then silence",
        hello[..2].to_vec(),
        false,
        CloseCode::ProtocolViolation,
    ));
    attacks.spawn(raw_first_stream(
        target,
        "an empty stream, then FIN",
        Vec::new(),
        true,
        CloseCode::Normal,
    ));
    attacks.spawn(wrong_version(target));
}

/// What one attack saw.
#[derive(Debug)]
struct Seen {
    attack: String,
    /// How the node closed the connection: code and reason.
    outcome: String,
    elapsed: Duration,
    note: String,
}

fn report(node: &str, seen: &[Seen]) {
    println!("attacks on the {node}:");
    for s in seen {
        println!(
            "  {:<48} {} after {} ms{}",
            s.attack,
            s.outcome,
            s.elapsed.as_millis(),
            if s.note.is_empty() {
                String::new()
            } else {
                format!("; {}", s.note)
            }
        );
    }
}

// ----- the raw client -----

/// An endpoint of a fresh identity (a node id the target has never seen).
fn endpoint(target: &PeerAddr) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::client(identity, target.addr, TransportLimits::default()).unwrap()
}

/// A TLS-authenticated QUIC connection, and nothing more: what goes on it is up to us.
async fn connect(endpoint: &Endpoint, target: &PeerAddr) -> quinn::Connection {
    endpoint.connect(target).await.unwrap().quinn().clone()
}

/// Waits for the node to close `conn`; its close code and reason. Panics if it does not
/// within [`CLOSE_BOUND`] of `since`, or if the connection ends some other way.
async fn closed_by_node(
    conn: &quinn::Connection,
    since: Instant,
    what: &str,
) -> (CloseCode, String) {
    match ended(conn, since, CLOSE_BOUND, what).await {
        End::Closed(code, reason) => (code, reason),
        other => panic!("{what}: the connection ended without a close from the node: {other:?}"),
    }
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// The node closed it with this code and reason.
    Closed(CloseCode, String),
    /// The node no longer keeps the connection, but its close did not reach us: a close at
    /// the QUIC level (it gave up a handshake it had no time for), a stateless reset (it
    /// has forgotten the connection), or silence until the idle timeout (no keep-alive:
    /// its close was lost). What a crowd large enough to overflow its socket buffer sees.
    Lost(String),
    /// The handshake failed.
    NotConnected(String),
}

/// Waits for `conn` to end; panics if it is still open `bound` after `since`.
async fn ended(conn: &quinn::Connection, since: Instant, bound: Duration, what: &str) -> End {
    let left = bound.saturating_sub(since.elapsed());
    match tokio::time::timeout(left, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => End::Closed(
            CloseCode::from_varint(close.error_code),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        Ok(quinn::ConnectionError::ConnectionClosed(close)) => End::Lost(close.to_string()),
        Ok(quinn::ConnectionError::TimedOut) => End::Lost("went silent".into()),
        Ok(quinn::ConnectionError::Reset) => End::Lost("forgot it (stateless reset)".into()),
        Ok(other) => panic!("{what}: the connection ended without a close from the node: {other}"),
        Err(_) => panic!("{what}: the node left the connection open for {bound:?}"),
    }
}

/// A crowd of connections that each do `behave` and must each end within the bound: closed
/// by the node with `code`, or (the crowd overflows socket buffers, and packets are lost)
/// given up by the node without its close reaching us. At least half must get through the
/// handshake, so that the crowd really is one.
async fn crowd<F, Fut>(
    attack: String,
    target: PeerAddr,
    size: usize,
    code: CloseCode,
    behave: F,
) -> Seen
where
    F: Fn(quinn::Connection) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (usize, Vec<quinn::SendStream>)> + Send,
{
    let since = Instant::now();
    // One attacker: one socket and one identity for the whole crowd.
    let endpoint = endpoint(&target);
    let mut members = JoinSet::new();
    for _ in 0..size {
        let (attack, behave, endpoint) = (attack.clone(), behave.clone(), endpoint.clone());
        members.spawn(async move {
            let conn = match endpoint.connect(&target).await {
                Ok(conn) => conn.quinn().clone(),
                Err(e) => return (End::NotConnected(e.to_string()), 0, Duration::ZERO),
            };
            // The bound runs from when this connection is up: a crowd's handshakes queue.
            let since = Instant::now();
            // The streams it opened stay open (not finished) until the node closes.
            let (done, _open) = behave(conn.clone()).await;
            let end = ended(&conn, since, CROWD_CLOSE_BOUND, &attack).await;
            (end, done, since.elapsed())
        });
    }
    let ends = members.join_all().await;
    let (mut closed, mut capped) = (0, 0);
    let (mut lost, mut failed) = (Vec::new(), Vec::new());
    for (end, _, _) in &ends {
        match end {
            End::Closed(CloseCode::Refused, why) if why.contains("from this address") => {
                capped += 1
            }
            End::Closed(got, _) => {
                expect(&attack, *got, code);
                closed += 1;
            }
            End::Lost(why) => lost.push(why.clone()),
            // One address gets a share of the slots (64 on a supernode, 16 on a leaf): the
            // rest of a crowd from it is refused, which is the node defending itself.
            End::NotConnected(why) if why.contains("refused to accept") => capped += 1,
            End::NotConnected(why) => failed.push(why.clone()),
        }
    }
    // Enough got through for the crowd to be one; every one of them ended within the bound.
    assert!(
        failed.len() * 2 <= size,
        "{attack}: {} of {size} not connected: {failed:?}",
        failed.len()
    );
    let outcome = ends
        .iter()
        .find_map(|(end, _, _)| match end {
            End::Closed(code, reason) => Some(format!("closed {code:?} ({reason:?})")),
            _ => None,
        })
        .unwrap_or_else(|| "no close reached us".into());
    let sent: usize = ends.iter().map(|(_, n, _)| n).sum();
    let slowest = ends.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
    let lost_count = lost.len();
    lost.sort();
    lost.dedup();
    let note = format!(
        "{closed} closed {code:?}, {lost_count} ended without a close reaching us {lost:?}, \
         {capped} refused at the per-address cap, {} not connected; the last ended {} ms \
         after its handshake{}",
        failed.len(),
        slowest.as_millis(),
        if sent > 0 {
            format!("; {} MiB sent into unread streams", sent >> 20)
        } else {
            String::new()
        }
    );
    Seen {
        attack,
        outcome,
        elapsed: since.elapsed(),
        note,
    }
}

fn seen(attack: &str, since: Instant, (code, reason): (CloseCode, String), note: String) -> Seen {
    Seen {
        attack: attack.to_string(),
        outcome: format!("closed {code:?} ({reason:?})"),
        elapsed: since.elapsed(),
        note,
    }
}

fn expect(attack: &str, got: CloseCode, expected: CloseCode) {
    assert_eq!(got, expected, "{attack}: closed with {got:?}");
}

/// `body` behind a length prefix (any bytes, unlike `encode`).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A hello frame as the protocol lays it out: `(version, Hello)` behind a length prefix.
fn hello_frame(version: u16, role: Role, intent: Intent) -> Vec<u8> {
    let advertise: SocketAddr = FAKE_ADVERTISE.parse().unwrap();
    encode(&(version, Hello::new(role, intent, Some(advertise)))).unwrap()
}

/// The body of a versioned reply, after the version (which must be ours).
fn after_version(body: &[u8]) -> &[u8] {
    let ours = encode(&PROTOCOL_VERSION).unwrap();
    let ours = &ours[LENGTH_PREFIX..];
    assert!(
        body.starts_with(ours),
        "a reply of another version: {body:?}"
    );
    &body[ours.len()..]
}

async fn next<M: Message>(reader: &mut FrameReader<quinn::RecvStream>) -> Option<M> {
    let body = reader.read_frame().await.ok()??;
    Some(decode::<M>(body).unwrap())
}

/// Opens the first stream and writes `bytes` (then FIN if `fin`); the node must close.
async fn raw_first_stream(
    target: PeerAddr,
    attack: &'static str,
    bytes: Vec<u8>,
    fin: bool,
    expected: CloseCode,
) -> Seen {
    let endpoint = endpoint(&target);
    let conn = connect(&endpoint, &target).await;
    let since = Instant::now();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    // The node may close before it has read everything: a failed write is its answer.
    let _ = send.write_all(&bytes).await;
    if fin {
        let _ = send.finish();
    }
    let closed = closed_by_node(&conn, since, attack).await;
    expect(attack, closed.0, expected);
    seen(attack, since, closed, String::new())
}

/// A hello of the next protocol version: the node answers with its own version, then
/// closes with `VersionMismatch`.
async fn wrong_version(target: PeerAddr) -> Seen {
    let attack = "hello of protocol version + 1";
    let endpoint = endpoint(&target);
    let conn = connect(&endpoint, &target).await;
    let since = Instant::now();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&hello_frame(
        PROTOCOL_VERSION + 1,
        Role::Leaf,
        Intent::Attach,
    ))
    .await
    .unwrap();
    let mut reader = FrameReader::new(recv);
    let body = reader.read_frame().await.unwrap().unwrap().to_vec();
    assert_eq!(
        body,
        encode(&PROTOCOL_VERSION).unwrap()[LENGTH_PREFIX..],
        "{attack}: the node's answer is not its version"
    );
    let closed = closed_by_node(&conn, since, attack).await;
    expect(attack, closed.0, CloseCode::VersionMismatch);
    seen(
        attack,
        since,
        closed,
        format!("answered version {PROTOCOL_VERSION}"),
    )
}

/// A well-formed hello for a conversation the node does not hold: a refusal, then a close.
async fn wrong_intent(target: PeerAddr, role: Role, intent: Intent, attack: &'static str) -> Seen {
    refused(&endpoint(&target), target, role, intent, attack).await
}

/// Says hello on `endpoint` and expects a refusal, then a close with `Refused`.
async fn refused(
    endpoint: &Endpoint,
    target: PeerAddr,
    role: Role,
    intent: Intent,
    attack: &'static str,
) -> Seen {
    let since = Instant::now();
    let (session, reply) = say_hello(endpoint, target, role, intent).await;
    let HelloReply::Refused { reason, .. } = reply else {
        panic!("{attack}: welcomed");
    };
    let closed = closed_by_node(&session.conn, since, attack).await;
    expect(attack, closed.0, CloseCode::Refused);
    seen(attack, since, closed, format!("hello refused: {reason}"))
}

/// A connection and its first stream, past the hello.
struct RawSession {
    conn: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader<quinn::RecvStream>,
}

/// Connects from `endpoint` and says a well-formed hello; the node's reply.
async fn say_hello(
    endpoint: &Endpoint,
    target: PeerAddr,
    role: Role,
    intent: Intent,
) -> (RawSession, HelloReply) {
    let conn = connect(endpoint, &target).await;
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&hello_frame(PROTOCOL_VERSION, role, intent))
        .await
        .unwrap();
    let mut reader = FrameReader::new(recv);
    let body = reader.read_frame().await.unwrap().unwrap().to_vec();
    let reply = decode(after_version(&body)).unwrap();
    (RawSession { conn, send, reader }, reply)
}

/// A leaf of a fresh identity says hello with `intent` and is welcomed.
async fn open(target: PeerAddr, intent: Intent) -> RawSession {
    let (session, reply) = say_hello(&endpoint(&target), target, Role::Leaf, intent).await;
    assert!(
        matches!(reply, HelloReply::Welcome { .. }),
        "{intent:?}: {reply:?}"
    );
    session
}

// ----- attacks on an attached leaf's session -----

async fn attach_then_garbage(target: PeerAddr) -> Seen {
    let attack = "attached, then a message of unknown variant";
    let mut session = open(target, Intent::Attach).await;
    let since = Instant::now();
    let _ = session.send.write_all(&framed(&[0x63, 0x01, 0x02])).await;
    let closed = closed_by_node(&session.conn, since, attack).await;
    expect(attack, closed.0, CloseCode::ProtocolViolation);
    seen(attack, since, closed, String::new())
}

async fn attach_then_oversize(target: PeerAddr) -> Seen {
    let attack = "attached, then length prefix 0xFFFFFFFF";
    let mut session = open(target, Intent::Attach).await;
    let since = Instant::now();
    let _ = session.send.write_all(&u32::MAX.to_be_bytes()).await;
    let closed = closed_by_node(&session.conn, since, attack).await;
    expect(attack, closed.0, CloseCode::FrameTooLarge);
    seen(attack, since, closed, String::new())
}

async fn oversized_publish(target: PeerAddr) -> Seen {
    let attack = "attached, then a publish of 2,001 entries";
    let mut session = open(target, Intent::Attach).await;
    let since = Instant::now();
    let publish = LeafToSupernode::Publish {
        entries: entries(0, MAX_ENTRIES_PER_MESSAGE + 1, "oversized"),
    };
    let _ = session.send.write_all(&encode(&publish).unwrap()).await;
    let closed = closed_by_node(&session.conn, since, attack).await;
    expect(attack, closed.0, CloseCode::ProtocolViolation);
    seen(attack, since, closed, String::new())
}

/// Queries beyond the per-leaf budget are refused, one by one; a flood of thousands gets
/// the leaf dropped.
async fn query_flood(target: PeerAddr) -> Seen {
    let attack = "attached, then 60 queries, then 5,000";
    let mut session = open(target, Intent::Attach).await;
    let since = Instant::now();
    let mut rng = StdRng::seed_from_u64(7);
    let queries = |n: usize, rng: &mut StdRng| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                encode(&LeafToSupernode::Query(Query {
                    id: QueryId(rng.random()),
                    keywords: vec!["nothingmatchesthis".into()],
                    want: 10,
                }))
                .unwrap()
            })
            .collect()
    };
    // 60 at once: the budget (a burst of 20, then 5 a second) lets about 20 through and
    // refuses the rest, each with a reason in place of its `QueryDone`.
    const BURST: usize = 60;
    session
        .send
        .write_all(&queries(BURST, &mut rng))
        .await
        .unwrap();
    let (mut answered, mut refused) = (0, 0);
    while answered + refused < BURST {
        let done = answered + refused;
        match tokio::time::timeout(CLOSE_BOUND, next::<SupernodeToLeaf>(&mut session.reader)).await
        {
            Ok(Some(SupernodeToLeaf::QueryDone { .. })) => answered += 1,
            Ok(Some(SupernodeToLeaf::QueryRefused { reason, .. })) => {
                assert!(
                    reason.contains("slow down"),
                    "{attack}: refused for {reason:?}"
                );
                refused += 1;
            }
            // What a supernode tells every leaf it admits.
            Ok(Some(SupernodeToLeaf::Limits(_) | SupernodeToLeaf::Indexed { .. })) => {}
            Ok(Some(other)) => panic!("{attack}: unexpected {other:?}"),
            Ok(None) => panic!("{attack}: session ended after {done} answers"),
            Err(_) => panic!("{attack}: only {done} of {BURST} queries answered"),
        }
    }
    assert!(
        (15..=30).contains(&answered) && refused >= 30,
        "{attack}: {answered} of {BURST} queries run, {refused} refused"
    );
    // Now thousands: past the budget for all messages, the leaf is dropped.
    let flood = queries(5_000, &mut rng);
    let reading = tokio::spawn(async move {
        let mut frames = 0usize;
        while let Ok(Some(_)) = session.reader.read_frame().await {
            frames += 1;
        }
        frames
    });
    let _ = session.send.write_all(&flood).await;
    let closed = closed_by_node(&session.conn, since, attack).await;
    let replies = reading.await.unwrap();
    expect(attack, closed.0, CloseCode::Overloaded);
    // Dropped for what it sent, not for reading too slowly.
    assert!(
        closed.1.contains("too many messages"),
        "{attack}: closed for {:?}",
        closed.1
    );
    seen(
        attack,
        since,
        closed,
        format!(
            "of the first {BURST}: {answered} run, {refused} refused; {replies} frames answered \
             the flood"
        ),
    )
}

/// Publishes up to the per-holder cap are indexed; past it they are refused, and a flood of
/// them gets the leaf dropped, its entries with it.
async fn publish_flood(target: PeerAddr, asker: &Proc) -> Seen {
    let attack = "attached, then 8 publishes of 2,000, then 1,000 more";
    let mut session = open(target, Intent::Attach).await;
    let since = Instant::now();
    // Long names: the most index memory a holder can claim per entry.
    const PUBLISHES: usize = 8;
    let mut frames = Vec::new();
    for p in 0..PUBLISHES {
        let entries = entries(
            p * MAX_ENTRIES_PER_MESSAGE,
            MAX_ENTRIES_PER_MESSAGE,
            HOSTILE_WORD,
        );
        frames.extend(encode(&LeafToSupernode::Publish { entries }).unwrap());
    }
    frames.extend(encode(&LeafToSupernode::Ping { nonce: 1 }).unwrap());
    session.send.write_all(&frames).await.unwrap();
    let mut refusals = Vec::new();
    loop {
        match tokio::time::timeout(CLOSE_BOUND, next::<SupernodeToLeaf>(&mut session.reader)).await
        {
            // Each publish is answered with what the index holds for us, and why not more.
            Ok(Some(SupernodeToLeaf::Indexed {
                refused: Some(reason),
                ..
            })) => refusals.push(reason),
            Ok(Some(
                SupernodeToLeaf::Indexed { refused: None, .. } | SupernodeToLeaf::Limits(_),
            )) => {}
            Ok(Some(SupernodeToLeaf::Pong { nonce: 1 })) => break,
            Ok(Some(other)) => panic!("{attack}: unexpected {other:?}"),
            Ok(None) => panic!("{attack}: session ended"),
            Err(_) => panic!("{attack}: no pong"),
        }
    }
    let expected = PUBLISHES - HOLDER_CAP / MAX_ENTRIES_PER_MESSAGE;
    assert_eq!(
        refusals.len(),
        expected,
        "{attack}: refusals past the cap of {HOLDER_CAP}: {refusals:?}"
    );
    // What was under the cap is searchable, by honest leaves too.
    let asker_sees = tokio::task::block_in_place(|| search(asker, &[HOSTILE_WORD], 50).unwrap());
    assert_eq!(asker_sees.len(), 50, "{attack}: the cap's worth is indexed");
    // Then a flood of small publishes, past the cap and past the message budget.
    let mut flood = Vec::new();
    for p in 0..1_000 {
        let entries = entries(100_000 + p * 10, 10, HOSTILE_WORD);
        flood.extend(encode(&LeafToSupernode::Publish { entries }).unwrap());
    }
    let reading = tokio::spawn(async move {
        let mut frames = 0usize;
        while let Ok(Some(_)) = session.reader.read_frame().await {
            frames += 1;
        }
        frames
    });
    let _ = session.send.write_all(&flood).await;
    // The node closes the flood with `Overloaded`. While the crowds run beside this attack
    // they can overflow the node's socket buffer, and then its close may be lost: the node
    // forgets the connection (a stateless reset) or goes silent. It ended the connection
    // all the same (the idle timeout is far longer than the bound).
    let closed = match ended(&session.conn, since, CLOSE_BOUND, attack).await {
        End::Closed(code, reason) => (code, reason),
        End::Lost(how) => (
            CloseCode::Overloaded,
            format!("too many messages (close lost: {how})"),
        ),
        End::NotConnected(e) => panic!("{attack}: not connected: {e}"),
    };
    let replies = reading.await.unwrap();
    expect(attack, closed.0, CloseCode::Overloaded);
    assert!(
        closed.1.contains("too many messages"),
        "{attack}: closed for {:?}",
        closed.1
    );
    seen(
        attack,
        since,
        closed,
        format!(
            "{} of {PUBLISHES} big publishes refused at the cap ({:?}); {replies} refusals to \
             the flood",
            refusals.len(),
            refusals
                .first()
                .map(|r| r.chars().take(60).collect::<String>())
        ),
    )
}

/// `count` entries of distinct content, with names as long as allowed that hold `word`.
fn entries(first: usize, count: usize, word: &str) -> Vec<FileEntry> {
    (first..first + count)
        .map(|i| {
            let mut name = format!("{word} {i} ");
            while name.len() < MAX_NAME_BYTES - 4 {
                name.push('x');
            }
            name.push_str(".bin");
            FileEntry {
                content_id: ContentId::of_bytes(format!("{word}/{i}").as_bytes()),
                name,
                size: i as u64,
            }
        })
        .collect()
}

/// Hundreds of connections at once that complete the handshake and say nothing: each is
/// closed at the hello timeout.
async fn silent_crowd(target: PeerAddr) -> Seen {
    let attack = format!("{SILENT_CONNECTIONS} silent connections at once");
    crowd(
        attack,
        target,
        SILENT_CONNECTIONS,
        CloseCode::ProtocolViolation,
        |_| async { (0, Vec::new()) },
    )
    .await
}

/// Connections that start a hello (two bytes of it) and then fill other streams up to the
/// flow-control windows: the node reads none of it, but holds it until the hello times out.
/// Each must still be closed at the hello timeout.
async fn stuffed_streams(target: PeerAddr, connections: usize) -> Seen {
    let attack = format!("{connections} connections stuffing unread streams");
    crowd(
        attack,
        target,
        connections,
        CloseCode::ProtocolViolation,
        |conn| async move {
            let Ok((mut hello, _hello_recv)) = conn.open_bi().await else {
                return (0, Vec::new());
            };
            if hello.write_all(&[0u8, 0]).await.is_err() {
                return (0, Vec::new());
            }
            let (mut stuffed, mut open) = (0, Vec::new());
            let chunk = vec![0x5au8; 256 * 1024];
            // The connection's window (4 MiB) runs out well before the stream limit; a write
            // that waits for window is where it did.
            for _ in 0..8 {
                let Ok((mut send, _recv)) = conn.open_bi().await else {
                    break;
                };
                let mut full = false;
                for _ in 0..4 {
                    let write =
                        tokio::time::timeout(Duration::from_millis(500), send.write_all(&chunk));
                    match write.await {
                        Ok(Ok(())) => stuffed += chunk.len(),
                        _ => {
                            full = true;
                            break;
                        }
                    }
                }
                open.push(send);
                if full {
                    break;
                }
            }
            open.push(hello);
            (stuffed, open)
        },
    )
    .await
}

// ----- attacks on a leaf's transfer service -----

async fn transfer_oversize_request(target: PeerAddr) -> Seen {
    let attack = "transfer, then a 1 KiB request";
    let mut session = open(target, Intent::Transfer).await;
    let since = Instant::now();
    let _ = session.send.write_all(&framed(&[0u8; 1024])).await;
    let closed = closed_by_node(&session.conn, since, attack).await;
    expect(attack, closed.0, CloseCode::FrameTooLarge);
    seen(attack, since, closed, String::new())
}

async fn transfer_bad_range(target: PeerAddr) -> Seen {
    let attack = "transfer, then a range of 1 GiB";
    let mut session = open(target, Intent::Transfer).await;
    let since = Instant::now();
    let request = DownloaderToHolder::Range {
        content_id: ContentId::of_bytes(b"anything"),
        start: 0,
        len: 1 << 30,
    };
    let _ = session.send.write_all(&encode(&request).unwrap()).await;
    let closed = closed_by_node(&session.conn, since, attack).await;
    expect(attack, closed.0, CloseCode::ProtocolViolation);
    seen(attack, since, closed, String::new())
}

/// A flood of `Have` for content nobody has: each is answered, then the session ends
/// cleanly when we finish.
async fn transfer_have_flood(target: PeerAddr) -> Seen {
    let attack = "transfer, then 2,000 Have requests";
    const REQUESTS: usize = 2_000;
    let mut session = open(target, Intent::Transfer).await;
    let since = Instant::now();
    let flood: Vec<u8> = (0..REQUESTS)
        .flat_map(|i| {
            encode(&DownloaderToHolder::Have {
                content_id: ContentId::of_bytes(&i.to_le_bytes()),
            })
            .unwrap()
        })
        .collect();
    let mut send = session.send;
    let writing = tokio::spawn(async move {
        send.write_all(&flood).await.unwrap();
        send.finish().unwrap();
        send
    });
    let (mut not_found, mut busy) = (0, 0);
    while let Some(answer) =
        tokio::time::timeout(CLOSE_BOUND, next::<HolderToDownloader>(&mut session.reader))
            .await
            .unwrap_or_else(|_| panic!("{attack}: answers stopped"))
    {
        match answer {
            HolderToDownloader::NotFound { .. } => not_found += 1,
            HolderToDownloader::Busy { .. } => busy += 1,
            other => panic!("{attack}: {other:?}"),
        }
    }
    let _send = writing.await.unwrap();
    assert_eq!(
        not_found + busy,
        REQUESTS,
        "{attack}: every request answered"
    );
    // Done with it: we close, as a downloader does.
    session.conn.close(CloseCode::Normal.varint(), b"done");
    Seen {
        attack: attack.into(),
        outcome: "closed by us".into(),
        elapsed: since.elapsed(),
        note: format!("{not_found} NotFound, {busy} Busy"),
    }
}

/// More transfer sessions from one node than a downloader needs: the extra one is refused.
async fn transfer_session_crowd(target: PeerAddr) -> Seen {
    let attack = "three transfer sessions of one node";
    let endpoint = endpoint(&target);
    let mut kept = Vec::new();
    for _ in 0..2 {
        let (session, reply) = say_hello(&endpoint, target, Role::Leaf, Intent::Transfer).await;
        assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
        kept.push(session);
    }
    refused(&endpoint, target, Role::Leaf, Intent::Transfer, attack).await
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
    (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect()
}

fn assert_alive(proc: &Proc) {
    assert!(
        std::path::Path::new(&format!("/proc/{}", proc.pid())).exists(),
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
