//! The book and the meter with a fake clock; the pipe on real QUIC streams on 127.0.0.1.

use std::sync::Arc;

use quinn::{ReadError, ReadToEndError};
use superpeer_common::{Connection, Endpoint, Identity, PeerAddr, TransportLimits, accept};

use super::*;

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn book(max_sessions: usize, max_per_node: usize) -> RelayBook {
    RelayBook::new(RelayCaps {
        max_sessions,
        max_per_node,
        ..RelayCaps::default()
    })
}

fn end(a_to_b: u64, b_to_a: u64, ended: RelayEndReason) -> RelayEnd {
    RelayEnd {
        bytes_a_to_b: a_to_b,
        bytes_b_to_a: b_to_a,
        ended,
    }
}

#[test]
fn admits_up_to_max_sessions_then_refuses() {
    let now = Instant::now();
    let mut book = book(3, 4);
    let tickets: Vec<_> = (0..3)
        .map(|i| book.admit(node(2 * i), node(2 * i + 1), now).unwrap())
        .collect();
    assert_eq!(book.admit(node(10), node(11), now), Err(RelayRefusal::Full));
    let stats = book.stats();
    assert_eq!((stats.active, stats.admitted, stats.refused), (3, 3, 1));
    // A released slot is free again.
    let mut tickets = tickets.into_iter();
    book.release(tickets.next().unwrap());
    assert!(book.admit(node(10), node(11), now).is_ok());
    assert_eq!(book.stats().active, 3);
}

#[test]
fn a_node_counts_whether_it_asks_or_holds() {
    let now = Instant::now();
    let mut book = book(64, 2);
    let x = node(1);
    let asked = book.admit(x, node(2), now).unwrap();
    let held = book.admit(node(3), x, now).unwrap();
    assert_eq!(book.sessions_of(&x), 2);
    assert_eq!(book.admit(x, node(4), now), Err(RelayRefusal::NodeBusy(x)));
    assert_eq!(book.admit(node(5), x, now), Err(RelayRefusal::NodeBusy(x)));
    // The other nodes are not held back by x.
    assert!(book.admit(node(2), node(3), now).is_ok());
    assert_eq!(
        book.admit(node(2), node(3), now),
        Err(RelayRefusal::NodeBusy(node(2)))
    );
    // Either kind of release frees x's slot.
    book.release(held);
    assert!(book.admit(node(5), x, now).is_ok());
    book.finish(asked, &end(0, 0, RelayEndReason::Finished));
    assert!(book.admit(x, node(6), now).is_ok());
    assert_eq!(book.stats().refused, 3);
}

#[test]
fn a_node_cannot_relay_to_itself() {
    let mut book = book(64, 4);
    assert_eq!(
        book.admit(node(1), node(1), Instant::now()),
        Err(RelayRefusal::SameNode)
    );
    assert_eq!(book.stats().refused, 1);
    assert_eq!(book.sessions_of(&node(1)), 0);
}

#[test]
fn finish_counts_bytes_and_cut_offs() {
    let now = Instant::now();
    let mut book = book(64, 4);
    let reasons = [
        RelayEndReason::Finished,
        RelayEndReason::BytesCap,
        RelayEndReason::TimeCap,
        RelayEndReason::Error,
    ];
    for (i, reason) in (0u8..).zip(reasons) {
        let ticket = book.admit(node(2 * i), node(2 * i + 1), now).unwrap();
        book.finish(ticket, &end(100, 10, reason));
    }
    let stats = book.stats();
    assert_eq!(stats.active, 0);
    assert_eq!(stats.bytes_relayed, 440);
    assert_eq!(stats.cut_off, 2, "only the caps count as cut off");
    assert_eq!(book.sessions_of(&node(0)), 0);
}

#[test]
fn overdue_names_sessions_held_past_the_time_cap() {
    let t0 = Instant::now();
    let mut book = RelayBook::new(RelayCaps {
        max_duration: Duration::from_secs(60),
        ..RelayCaps::default()
    });
    let old = book.admit(node(1), node(2), t0).unwrap();
    let young = book
        .admit(node(3), node(4), t0 + Duration::from_secs(30))
        .unwrap();
    assert!(
        book.overdue(t0 + Duration::from_secs(60) + OVERDUE_GRACE)
            .is_empty()
    );
    let late = t0 + Duration::from_secs(61) + OVERDUE_GRACE;
    assert_eq!(book.overdue(late), vec![old.id()]);
    book.release(old);
    assert!(book.overdue(late).is_empty());
    assert_eq!(young.nodes(), (node(3), node(4)));
}

#[test]
fn the_meter_refuses_a_chunk_past_the_byte_cap() {
    let now = Instant::now();
    let caps = RelayCaps {
        max_bytes: 1000,
        rate: 1 << 30,
        burst: 1 << 20,
        ..RelayCaps::default()
    };
    let mut meter = Meter::new(&caps, now);
    assert_eq!(meter.grant(now, Direction::AToB, 600), Grant::Go);
    assert_eq!(meter.grant(now, Direction::BToA, 400), Grant::Go);
    assert_eq!(meter.grant(now, Direction::AToB, 1), Grant::OverCap);
    assert_eq!((meter.a_to_b, meter.b_to_a), (600, 400));
}

#[test]
fn the_meter_pays_at_the_rate_after_the_burst() {
    let t0 = Instant::now();
    let caps = RelayCaps {
        rate: 1000,
        burst: 500,
        ..RelayCaps::default()
    };
    let mut meter = Meter::new(&caps, t0);
    assert_eq!(
        meter.chunk, 500,
        "a read never needs more than a full bucket"
    );
    assert_eq!(meter.grant(t0, Direction::AToB, 500), Grant::Go);
    // Both directions share the rate: 200 bytes at 1000/s are 200 ms away.
    let Grant::Wait(wait) = meter.grant(t0, Direction::BToA, 200) else {
        panic!("the burst is spent");
    };
    assert!(wait.abs_diff(Duration::from_millis(200)) < Duration::from_millis(1));
    assert!(matches!(
        meter.grant(t0 + Duration::from_millis(150), Direction::BToA, 200),
        Grant::Wait(_)
    ));
    let t1 = t0 + Duration::from_millis(201);
    assert_eq!(meter.grant(t1, Direction::BToA, 200), Grant::Go);
    assert!(matches!(
        meter.grant(t1, Direction::AToB, 2),
        Grant::Wait(_)
    ));
    assert_eq!((meter.a_to_b, meter.b_to_a), (500, 200));
}

#[test]
fn a_zero_rate_or_burst_is_clamped_rather_than_stuck() {
    let t0 = Instant::now();
    let caps = RelayCaps {
        rate: 0,
        burst: 0,
        ..RelayCaps::default()
    };
    let mut meter = Meter::new(&caps, t0);
    assert_eq!(meter.chunk, 1);
    assert_eq!(meter.grant(t0, Direction::AToB, 1), Grant::Go);
    assert_eq!(
        meter.grant(t0, Direction::AToB, 1),
        Grant::Wait(Duration::from_secs(1))
    );
}

// The pipe, on real streams.

/// Bound on every wait: a stuck pipe fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(20);

fn endpoint() -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::bind(
        identity,
        "127.0.0.1:0".parse().unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

/// One leaf's connection to the relay and its leg: the leaf's ends and the relay's.
struct Leg {
    leaf: (SendStream, RecvStream),
    relay: (SendStream, RecvStream),
    _keep: (Endpoint, Connection, Connection),
}

async fn leg(relay: &Endpoint) -> Leg {
    let leaf_endpoint = endpoint();
    let accepting = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let incoming = relay.incoming().await.unwrap();
            accept(incoming, BOUND).await.unwrap()
        })
    };
    let to_relay = PeerAddr::pinned(relay.node_id(), relay.local_addr().unwrap());
    let leaf_conn = leaf_endpoint.connect(&to_relay).await.unwrap();
    let relay_conn = accepting.await.unwrap();
    relay_conn.admit(TransportLimits::default().receive_window);
    let (mut send, recv) = leaf_conn.quinn().open_bi().await.unwrap();
    // quinn announces a stream with its first byte; the relay reads it off.
    send.write_all(b"L").await.unwrap();
    let (relay_send, mut relay_recv) = relay_conn.quinn().accept_bi().await.unwrap();
    let mut marker = [0u8; 1];
    relay_recv.read_exact(&mut marker).await.unwrap();
    Leg {
        leaf: (send, recv),
        relay: (relay_send, relay_recv),
        _keep: (leaf_endpoint, leaf_conn, relay_conn),
    }
}

/// Two leaves' legs, piped under `caps` by a task: the leaves' ends, the pipe's result, and
/// what keeps the connections open.
struct Piped {
    a: (SendStream, RecvStream),
    b: (SendStream, RecvStream),
    pipe: tokio::task::JoinHandle<RelayEnd>,
    _keep: Vec<(Endpoint, Connection, Connection)>,
    _relay: Endpoint,
}

async fn piped(caps: RelayCaps) -> Piped {
    let relay = endpoint();
    let (a, b) = (leg(&relay).await, leg(&relay).await);
    let (a_relay, b_relay) = (a.relay, b.relay);
    let pipe = tokio::spawn(async move { pipe(a_relay, b_relay, &caps).await });
    Piped {
        a: a.leaf,
        b: b.leaf,
        pipe,
        _keep: vec![a._keep, b._keep],
        _relay: relay,
    }
}

fn fast() -> RelayCaps {
    RelayCaps {
        rate: 1 << 30,
        burst: 1 << 20,
        ..RelayCaps::default()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn was_cut_off(read: &Result<Vec<u8>, ReadToEndError>) -> bool {
    matches!(read, Err(ReadToEndError::Read(ReadError::Reset(code))) if *code == RELAY_CUT_OFF)
}

#[tokio::test]
async fn bytes_pass_intact_and_each_finish_is_passed_on() {
    let Piped {
        a: (mut a_send, mut a_recv),
        b: (mut b_send, mut b_recv),
        pipe,
        _keep,
        _relay,
    } = piped(fast()).await;
    let request = pattern(2 * 1024 * 1024, 0x5a);
    let answer = pattern(1024 * 1024, 0xa5);
    let exchange = async {
        // A writes while B reads: 2 MiB is more than the windows of both legs hold, so
        // writing it all before B reads could stall on flow control.
        let send_request = async {
            a_send.write_all(&request).await.unwrap();
            a_send.finish().unwrap();
        };
        // B sees A's finish while its own direction is still open...
        let ((), got_request) = tokio::join!(send_request, async {
            b_recv.read_to_end(8 << 20).await.unwrap()
        });
        // ...and the other direction still works.
        b_send.write_all(&answer).await.unwrap();
        b_send.finish().unwrap();
        let got_answer = a_recv.read_to_end(8 << 20).await.unwrap();
        (got_request, got_answer)
    };
    let (got_request, got_answer) = tokio::time::timeout(BOUND, exchange).await.unwrap();
    assert!(got_request == request, "A's bytes arrived intact");
    assert!(got_answer == answer, "B's bytes arrived intact");
    let end = tokio::time::timeout(BOUND, pipe).await.unwrap().unwrap();
    assert_eq!(
        end,
        RelayEnd {
            bytes_a_to_b: request.len() as u64,
            bytes_b_to_a: answer.len() as u64,
            ended: RelayEndReason::Finished,
        }
    );
}

#[tokio::test]
async fn a_session_past_max_bytes_is_cut_off() {
    let max_bytes = 256 * 1024;
    let Piped {
        a: (mut a_send, _a_recv),
        b: (_b_send, mut b_recv),
        pipe,
        _keep,
        _relay,
    } = piped(RelayCaps {
        max_bytes,
        ..fast()
    })
    .await;
    let writer = tokio::spawn(async move {
        let _ = a_send.write_all(&pattern(1024 * 1024, 1)).await;
        let _ = a_send.finish();
        a_send
    });
    let end = tokio::time::timeout(BOUND, pipe).await.unwrap().unwrap();
    assert_eq!(end.ended, RelayEndReason::BytesCap);
    assert!(end.bytes_a_to_b + end.bytes_b_to_a <= max_bytes, "{end:?}");
    assert!(end.bytes_a_to_b > 0, "{end:?}");
    let read = tokio::time::timeout(BOUND, b_recv.read_to_end(8 << 20))
        .await
        .unwrap();
    assert!(was_cut_off(&read), "B's leg is reset: {read:?}");
    let _ = writer.await;
}

#[tokio::test]
async fn the_rate_cap_holds_a_session_to_its_rate() {
    let Piped {
        a: (mut a_send, _a_recv),
        b: (mut b_send, mut b_recv),
        pipe,
        _keep,
        _relay,
    } = piped(RelayCaps {
        rate: 512 * 1024,
        burst: 64 * 1024,
        ..RelayCaps::default()
    })
    .await;
    let data = pattern(1024 * 1024, 2);
    let started = std::time::Instant::now();
    let exchange = async {
        let (written, read) = tokio::join!(
            async {
                a_send.write_all(&data).await.unwrap();
                a_send.finish().unwrap();
            },
            b_recv.read_to_end(8 << 20)
        );
        let () = written;
        read.unwrap()
    };
    let got = tokio::time::timeout(BOUND, exchange).await.unwrap();
    let took = started.elapsed();
    assert!(got == data, "the bytes arrived intact");
    // (1 MiB - 64 KiB of burst) at 512 KiB/s is 1.875 s; allow for a coarse clock.
    assert!(
        took >= Duration::from_millis(1500),
        "1 MiB took only {took:?}"
    );
    // B has nothing to say: once it finishes too, the session is over.
    b_send.finish().unwrap();
    let end = tokio::time::timeout(BOUND, pipe).await.unwrap().unwrap();
    assert_eq!(end.ended, RelayEndReason::Finished);
    assert_eq!((end.bytes_a_to_b, end.bytes_b_to_a), (1024 * 1024, 0));
}

#[tokio::test]
async fn max_duration_cuts_a_trickling_session() {
    let max_duration = Duration::from_secs(1);
    let Piped {
        a: (mut a_send, _a_recv),
        b: (_b_send, mut b_recv),
        pipe,
        _keep,
        _relay,
    } = piped(RelayCaps {
        max_duration,
        ..RelayCaps::default()
    })
    .await;
    let started = std::time::Instant::now();
    let trickle = tokio::spawn(async move {
        while a_send.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let end = tokio::time::timeout(BOUND, pipe).await.unwrap().unwrap();
    assert_eq!(end.ended, RelayEndReason::TimeCap);
    assert!(started.elapsed() >= max_duration);
    assert!(
        end.bytes_a_to_b > 0,
        "the trickle did pass until then: {end:?}"
    );
    let read = tokio::time::timeout(BOUND, b_recv.read_to_end(8 << 20))
        .await
        .unwrap();
    assert!(was_cut_off(&read), "B's leg is reset: {read:?}");
    // A's leg is stopped, so the trickle's writes fail and it ends.
    tokio::time::timeout(BOUND, trickle).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_leg_ends_the_session_for_both() {
    let Piped {
        a: (mut a_send, _a_recv),
        b: (_b_send, mut b_recv),
        pipe,
        _keep,
        _relay,
    } = piped(fast()).await;
    a_send.write_all(b"hello").await.unwrap();
    a_send.reset(VarInt::from_u32(9)).unwrap();
    let end = tokio::time::timeout(BOUND, pipe).await.unwrap().unwrap();
    assert_eq!(end.ended, RelayEndReason::Error);
    let read = tokio::time::timeout(BOUND, b_recv.read_to_end(8 << 20))
        .await
        .unwrap();
    assert!(was_cut_off(&read), "B's leg is reset: {read:?}");
}
