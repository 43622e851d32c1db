//! Real QUIC on 127.0.0.1: two leaves' legs to a relay, spliced by a test task, and a QUIC
//! connection of their own through them.

use std::time::Duration;

use quinn::{ReadError, ReadToEndError};

use super::*;
use crate::address::PeerAddr;
use crate::identity::NodeId;
use crate::transport::{ConnectError, Connection, accept};

/// Bound on every wait: a broken tunnel fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(10);

fn limits() -> TransportLimits {
    TransportLimits {
        idle_timeout: Duration::from_secs(1),
        keep_alive: Duration::from_millis(300),
        handshake_timeout: Duration::from_secs(2),
        ..TransportLimits::default()
    }
}

fn identity() -> Arc<Identity> {
    Arc::new(Identity::generate().unwrap())
}

fn udp_endpoint() -> Endpoint {
    Endpoint::bind(
        identity(),
        "127.0.0.1:0".parse().unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

/// One leaf's connection to the relay and the leg on it: the leaf's ends and the relay's.
struct Leg {
    leaf: (SendStream, RecvStream),
    relay: (SendStream, RecvStream),
    _keep: (Endpoint, Connection, Connection),
}

async fn leg(relay: &Endpoint) -> Leg {
    let leaf_endpoint = udp_endpoint();
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

/// The relay's part, as plainly as possible: copy each leg into the other.
fn splice(a: (SendStream, RecvStream), b: (SendStream, RecvStream)) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ((mut a_send, mut a_recv), (mut b_send, mut b_recv)) = (a, b);
        let a_to_b = async {
            let _ = tokio::io::copy(&mut a_recv, &mut b_send).await;
            let _ = b_send.finish();
        };
        let b_to_a = async {
            let _ = tokio::io::copy(&mut b_recv, &mut a_send).await;
            let _ = a_send.finish();
        };
        tokio::join!(a_to_b, b_to_a);
    })
}

/// Two leaves with tunnel endpoints on spliced legs; the legs and splice stay alive with it.
struct Tunnel {
    a: Endpoint,
    b: Endpoint,
    peer_addr: SocketAddr,
    splice: tokio::task::JoinHandle<()>,
    _relay: Endpoint,
    _legs: Vec<(Endpoint, Connection, Connection)>,
}

async fn tunnel() -> Tunnel {
    let relay = udp_endpoint();
    let (leg_a, leg_b) = (leg(&relay).await, leg(&relay).await);
    let splice = splice(leg_a.relay, leg_b.relay);
    let (a, peer_addr) =
        Endpoint::over_relay_leg(identity(), limits(), leg_a.leaf.0, leg_a.leaf.1).unwrap();
    let (b, b_peer_addr) =
        Endpoint::over_relay_leg(identity(), limits(), leg_b.leaf.0, leg_b.leaf.1).unwrap();
    assert_eq!(
        (peer_addr, b_peer_addr),
        (TUNNEL_PEER_ADDR, TUNNEL_PEER_ADDR)
    );
    Tunnel {
        a,
        b,
        peer_addr,
        splice,
        _relay: relay,
        _legs: vec![leg_a._keep, leg_b._keep],
    }
}

/// Accepts one connection on `endpoint` in the background.
fn accept_one(endpoint: &Endpoint) -> tokio::task::JoinHandle<Result<Connection, ConnectError>> {
    let endpoint = endpoint.clone();
    tokio::spawn(async move {
        let incoming = endpoint.incoming().await.unwrap();
        accept(incoming, BOUND).await
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test]
async fn a_tunnel_carries_megabytes_and_proves_the_peer_id_end_to_end() {
    let t = tunnel().await;
    let (a_id, b_id) = (t.a.node_id(), t.b.node_id());
    let request = pattern(4 * 1024 * 1024, 0x5a);
    let answer = pattern(1024 * 1024, 0xa5);

    let accepted = accept_one(&t.b);
    let b_side = {
        let answer = answer.clone();
        tokio::spawn(async move {
            let conn = accepted.await.unwrap().unwrap();
            conn.admit(TransportLimits::default().receive_window);
            let (mut send, mut recv) = conn.quinn().accept_bi().await.unwrap();
            let got = recv.read_to_end(16 * 1024 * 1024).await.unwrap();
            send.write_all(&answer).await.unwrap();
            send.finish().unwrap();
            // Keep the connection until A has read the answer and closes it.
            conn.closed().await;
            (conn.peer(), got)
        })
    };

    let exchange = async {
        let conn =
            t.a.connect(&PeerAddr::pinned(b_id, t.peer_addr))
                .await
                .unwrap();
        assert_eq!(conn.peer(), b_id, "the tunnel proved B's key, end to end");
        assert_eq!(conn.remote_addr(), TUNNEL_PEER_ADDR);
        let (mut send, mut recv) = conn.quinn().open_bi().await.unwrap();
        send.write_all(&request).await.unwrap();
        send.finish().unwrap();
        let got = recv.read_to_end(16 * 1024 * 1024).await.unwrap();
        conn.close(crate::wire::CloseCode::Normal, "done");
        got
    };
    let got_answer = tokio::time::timeout(BOUND, exchange).await.unwrap();
    let (seen_by_b, got_request) = tokio::time::timeout(BOUND, b_side).await.unwrap().unwrap();
    assert_eq!(seen_by_b, a_id, "B saw A's key, end to end");
    assert!(got_request == request, "A's 4 MiB arrived intact");
    assert!(got_answer == answer, "B's 1 MiB arrived intact");
}

#[tokio::test]
async fn a_wrong_pinned_id_fails_the_handshake() {
    let t = tunnel().await;
    let _accepted = accept_one(&t.b);
    let someone_else = NodeId::from_bytes([7; 32]);
    let result = tokio::time::timeout(
        BOUND,
        t.a.connect(&PeerAddr::pinned(someone_else, t.peer_addr)),
    )
    .await
    .unwrap();
    match result {
        Err(ConnectError::WrongNode {
            expected, found, ..
        }) => {
            assert_eq!(expected, someone_else);
            assert_eq!(found, t.b.node_id());
        }
        other => panic!("expected WrongNode, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_frame_length_ends_the_tunnel() {
    let relay = udp_endpoint();
    let too_long = u16::try_from(MAX_TUNNEL_DATAGRAM + 1).unwrap();
    for bad in [0u16, too_long, u16::MAX] {
        let leg = leg(&relay).await;
        let quick = TransportLimits {
            handshake_timeout: Duration::from_millis(500),
            ..limits()
        };
        let (endpoint, peer_addr) =
            Endpoint::over_relay_leg(identity(), quick, leg.leaf.0, leg.leaf.1).unwrap();
        let (mut relay_send, mut relay_recv) = leg.relay;
        relay_send.write_all(&bad.to_be_bytes()).await.unwrap();
        relay_send.write_all(&[0; 64]).await.unwrap();

        // The pump gives up on the leg: it resets its side and stops reading ours.
        let read = tokio::time::timeout(BOUND, relay_recv.read_to_end(1 << 20))
            .await
            .unwrap();
        assert!(
            matches!(read, Err(ReadToEndError::Read(ReadError::Reset(code))) if code == LEG_BROKEN),
            "length {bad}: {read:?}"
        );
        let stopped = tokio::time::timeout(BOUND, relay_send.stopped())
            .await
            .unwrap();
        assert_eq!(stopped, Ok(Some(LEG_BROKEN)), "length {bad}");

        // The socket went quiet rather than failing: a dial times out like one over a dead
        // link, and nothing panicked on the way.
        let peer = PeerAddr::pinned(NodeId::from_bytes([1; 32]), peer_addr);
        let dial = tokio::time::timeout(BOUND, endpoint.connect(&peer))
            .await
            .unwrap();
        assert!(
            matches!(dial, Err(ConnectError::Timeout { .. })),
            "length {bad}: {dial:?}"
        );
    }
}

#[tokio::test]
async fn an_inner_connection_ends_when_the_leg_ends() {
    let t = tunnel().await;
    let accepted = accept_one(&t.b);
    let conn = tokio::time::timeout(
        BOUND,
        t.a.connect(&PeerAddr::pinned(t.b.node_id(), t.peer_addr)),
    )
    .await
    .unwrap()
    .unwrap();
    let b_conn = accepted.await.unwrap().unwrap();
    // The relay drops both legs (as when it cuts a session off).
    t.splice.abort();
    let _ = t.splice.await;
    // Nothing arrives any more: both sides hit their idle timeout (1 s here).
    tokio::time::timeout(BOUND, conn.closed()).await.unwrap();
    tokio::time::timeout(BOUND, b_conn.closed()).await.unwrap();
}

#[tokio::test]
async fn dropping_the_tunnel_endpoint_finishes_the_leg() {
    let relay = udp_endpoint();
    let leg = leg(&relay).await;
    let (endpoint, _) =
        Endpoint::over_relay_leg(identity(), limits(), leg.leaf.0, leg.leaf.1).unwrap();
    let (_relay_send, mut relay_recv) = leg.relay;
    drop(endpoint);
    let read = tokio::time::timeout(BOUND, relay_recv.read_to_end(1 << 20))
        .await
        .unwrap();
    assert_eq!(
        read.unwrap(),
        Vec::<u8>::new(),
        "finished cleanly, nothing sent"
    );
}
