//! Real QUIC on 127.0.0.1: handshakes, pinning, forged keys, and bad input on live streams.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::wire::{Intent, LeafToSupernode, PROTOCOL_VERSION, Role, SupernodeToLeaf};

fn endpoint() -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::bind(
        identity,
        "127.0.0.1:0".parse().unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

fn pinned(to: &Endpoint) -> PeerAddr {
    PeerAddr::pinned(to.node_id(), to.local_addr().unwrap())
}

/// Accepts one connection on `server` in the background.
fn accept_one(server: &Endpoint) -> tokio::task::JoinHandle<Result<Connection, ConnectError>> {
    let server = server.clone();
    tokio::spawn(async move {
        let incoming = server.incoming().await.expect("endpoint open");
        accept(incoming, Duration::from_secs(5)).await
    })
}

#[tokio::test]
async fn mutual_handshake_both_sides_learn_the_peer_id() {
    let (server, client) = (endpoint(), endpoint());
    let accepted = accept_one(&server);
    let conn = client.connect(&pinned(&server)).await.unwrap();
    let server_side = accepted.await.unwrap().unwrap();
    assert_eq!(conn.peer(), server.node_id());
    assert_eq!(server_side.peer(), client.node_id());

    // The session works end to end: hello, welcome, one message each way.
    let server_task = tokio::spawn(async move {
        let (mut session, hello) = server_side.accept_session().await.unwrap();
        assert_eq!((hello.role, hello.intent), (Role::Leaf, Intent::Attach));
        session
            .reply(&HelloReply::Welcome {
                role: Role::Supernode,
            })
            .await
            .unwrap();
        let msg: LeafToSupernode = session.reader.recv_required().await.unwrap();
        assert_eq!(msg, LeafToSupernode::Ping { nonce: 42 });
        session
            .writer
            .send(&SupernodeToLeaf::Pong { nonce: 42 })
            .await
            .unwrap();
        server_side
    });
    let hello = Hello::new(Role::Leaf, Intent::Attach, None);
    let (mut session, reply) = conn.open_session(&hello).await.unwrap();
    assert_eq!(
        reply,
        HelloReply::Welcome {
            role: Role::Supernode
        }
    );
    session
        .writer
        .send(&LeafToSupernode::Ping { nonce: 42 })
        .await
        .unwrap();
    let pong: SupernodeToLeaf = session.reader.recv_required().await.unwrap();
    assert_eq!(pong, SupernodeToLeaf::Pong { nonce: 42 });
    server_task.await.unwrap();
}

#[tokio::test]
async fn unpinned_connect_learns_whoever_answers() {
    let (server, client) = (endpoint(), endpoint());
    let _accepted = accept_one(&server);
    let conn = client
        .connect(&PeerAddr::unpinned(server.local_addr().unwrap()))
        .await
        .unwrap();
    assert_eq!(conn.peer(), server.node_id());
}

#[tokio::test]
async fn pinned_connect_to_the_wrong_node_id_fails() {
    let (server, client) = (endpoint(), endpoint());
    let someone_else = Identity::generate().unwrap().node_id();
    let accepted = accept_one(&server);
    let target = PeerAddr::pinned(someone_else, server.local_addr().unwrap());
    match client.connect(&target).await {
        Err(ConnectError::WrongNode {
            expected, found, ..
        }) => {
            assert_eq!(expected, someone_else);
            assert_eq!(found, server.node_id());
        }
        other => panic!("expected WrongNode, got {other:?}"),
    }
    // The server never gets an authenticated connection out of it.
    assert!(accepted.await.unwrap().is_err());
}

#[tokio::test]
async fn a_client_claiming_a_key_it_does_not_hold_is_refused() {
    let server = endpoint();
    let victim = Identity::generate().unwrap();
    let forger = Identity::generate().unwrap();
    // Present the victim's public key but sign the handshake with the forger's private key.
    let provider = tls::provider();
    let signer = provider
        .key_provider
        .load_private_key(forger.pkcs8_der().into())
        .unwrap();
    let forged = Arc::new(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(tls::spki_der(&victim.node_id()))],
        signer,
    ));
    let (crypto, _) =
        tls::client_config_with_key(provider, forged, Some(server.node_id())).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto).unwrap()));
    let raw = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();

    let accepted = accept_one(&server);
    let attempt = raw
        .connect_with(config, server.local_addr().unwrap(), tls::SERVER_NAME)
        .unwrap();
    let client_result: Result<(), quinn::ConnectionError> =
        tokio::time::timeout(Duration::from_secs(5), async {
            // The client may finish its side before learning of the refusal; the server's
            // refusal then arrives as a connection close.
            match attempt.await {
                Ok(conn) => Err(conn.closed().await),
                Err(e) => Err(e),
            }
        })
        .await
        .unwrap();
    assert!(client_result.is_err());
    match accepted.await.unwrap() {
        Err(ConnectError::Handshake { reason, .. }) => assert!(
            reason.contains("ignature") || reason.contains("crypto"),
            "{reason}"
        ),
        other => panic!("forged key accepted: {other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_times_out() {
    let client = endpoint();
    let limits = TransportLimits {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let client = Endpoint::bind(
        client.identity().clone(),
        "127.0.0.1:0".parse().unwrap(),
        limits,
    )
    .unwrap();
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = PeerAddr::unpinned(silent.local_addr().unwrap());
    assert!(matches!(
        client.connect(&target).await,
        Err(ConnectError::Timeout { .. })
    ));
}

/// Opens a raw stream to `server` and returns the server's view of the connection.
async fn connected_pair() -> (Connection, Connection) {
    let (server, client) = (endpoint(), endpoint());
    let accepted = accept_one(&server);
    let conn = client.connect(&pinned(&server)).await.unwrap();
    let server_side = accepted.await.unwrap().unwrap();
    // Keep the endpoints alive as long as the connections.
    std::mem::forget((server, client));
    (conn, server_side)
}

#[tokio::test]
async fn version_mismatch_is_refused_on_both_sides() {
    let (client, server) = connected_pair().await;
    let server_task = tokio::spawn(async move { server.accept_session().await.map(|_| ()) });

    let (send, recv) = client.quinn().open_bi().await.unwrap();
    let mut writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv);
    let future_hello = (
        PROTOCOL_VERSION + 1,
        Hello::new(Role::Leaf, Intent::Attach, None),
    );
    writer.send(&future_hello).await.unwrap();
    // The newer client learns our version, and nothing else.
    let body = reader.read_frame().await.unwrap().unwrap().to_vec();
    assert_eq!(
        postcard::from_bytes::<u16>(&body).unwrap(),
        PROTOCOL_VERSION
    );
    assert_eq!(body.len(), 1);

    let server_err = server_task.await.unwrap().unwrap_err();
    assert!(
        matches!(server_err, WireError::VersionMismatch { theirs, .. } if theirs == PROTOCOL_VERSION + 1)
    );
    assert!(matches!(
        client.closed().await,
        WireError::PeerClosed {
            code: CloseCode::VersionMismatch,
            ..
        }
    ));
}

/// Sends `bytes` after a valid hello and returns how the server's read failed and how the
/// client saw the connection close.
async fn send_after_hello(bytes: Vec<u8>) -> (WireError, WireError) {
    let (client, server) = connected_pair().await;
    let server_task = tokio::spawn(async move {
        let (mut session, _) = server.accept_session().await.unwrap();
        session
            .reply(&HelloReply::Welcome {
                role: Role::Supernode,
            })
            .await
            .unwrap();
        let err = session
            .reader
            .recv_required::<LeafToSupernode>()
            .await
            .unwrap_err();
        server.close_for(&err);
        err
    });
    let (mut session, _) = client
        .open_session(&Hello::new(Role::Leaf, Intent::Attach, None))
        .await
        .unwrap();
    session.writer.write_frame(&bytes).await.unwrap();
    let server_err = server_task.await.unwrap();
    let client_saw = client.closed().await;
    (server_err, client_saw)
}

#[tokio::test]
async fn garbage_on_a_live_stream_closes_with_protocol_violation() {
    let (server_err, client_saw) = send_after_hello(vec![0, 0, 0, 3, 0xee, 0xff, 0x01]).await;
    assert!(
        matches!(server_err, WireError::UnknownVariant),
        "{server_err:?}"
    );
    assert!(
        matches!(
            client_saw,
            WireError::PeerClosed {
                code: CloseCode::ProtocolViolation,
                ..
            }
        ),
        "{client_saw:?}"
    );
}

#[tokio::test]
async fn oversize_frame_on_a_live_stream_closes_with_frame_too_large() {
    let (server_err, client_saw) = send_after_hello(vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    assert!(
        matches!(server_err, WireError::FrameTooLarge { .. }),
        "{server_err:?}"
    );
    assert!(
        matches!(
            client_saw,
            WireError::PeerClosed {
                code: CloseCode::FrameTooLarge,
                ..
            }
        ),
        "{client_saw:?}"
    );
}

#[tokio::test]
async fn truncated_frame_then_finish_is_truncated() {
    let (client, server) = connected_pair().await;
    let server_task = tokio::spawn(async move {
        let (mut session, _) = server.accept_session().await.unwrap();
        session
            .reply(&HelloReply::Welcome {
                role: Role::Supernode,
            })
            .await
            .unwrap();
        session
            .reader
            .recv_required::<LeafToSupernode>()
            .await
            .unwrap_err()
    });
    let (mut session, _) = client
        .open_session(&Hello::new(Role::Leaf, Intent::Attach, None))
        .await
        .unwrap();
    session
        .writer
        .write_frame(&[0, 0, 0, 10, 1, 2])
        .await
        .unwrap();
    session.writer.inner_mut().finish().unwrap();
    assert!(matches!(server_task.await.unwrap(), WireError::Truncated));
}

#[tokio::test]
async fn a_responder_of_another_version_is_refused_by_the_initiator() {
    let (client, server) = connected_pair().await;
    // A newer responder: answers every hello with its own version.
    let server_task = tokio::spawn(async move {
        let (send, recv) = server.quinn().accept_bi().await.unwrap();
        let mut reader = FrameReader::new(recv);
        let _ = reader.read_frame().await.unwrap();
        let mut writer = FrameWriter::new(send);
        writer.send(&(PROTOCOL_VERSION + 1)).await.unwrap();
        server.closed().await
    });
    let err = client
        .open_session(&Hello::new(Role::Leaf, Intent::Attach, None))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, WireError::VersionMismatch { ours, theirs } if ours == PROTOCOL_VERSION && theirs == PROTOCOL_VERSION + 1),
        "{err:?}"
    );
    // The initiator closed with the version-mismatch code.
    let server_saw = server_task.await.unwrap();
    assert!(
        matches!(
            server_saw,
            WireError::PeerClosed {
                code: CloseCode::VersionMismatch,
                ..
            }
        ),
        "{server_saw:?}"
    );
}

#[tokio::test]
async fn a_server_claiming_a_key_it_does_not_hold_is_refused() {
    let victim = Identity::generate().unwrap();
    let forger = Identity::generate().unwrap();
    let provider = tls::provider();
    let signer = provider
        .key_provider
        .load_private_key(forger.pkcs8_der().into())
        .unwrap();
    let forged = Arc::new(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(tls::spki_der(&victim.node_id()))],
        signer,
    ));
    let crypto = tls::server_config_with_key(provider, forged).unwrap();
    let config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(crypto).unwrap()));
    let server = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    let client = endpoint();
    // Pinned to the victim, whose key the forger presents but cannot sign with: the pin
    // matches, so only the signature check stands between us and the impostor.
    match client
        .connect(&PeerAddr::pinned(victim.node_id(), server_addr))
        .await
    {
        Err(ConnectError::Handshake { reason, .. }) => {
            assert!(reason.contains("BadSignature"), "{reason}")
        }
        other => panic!("impostor accepted: {other:?}"),
    }
    serving.abort();
}

/// What the responder reads after the hello: how large a frame it takes before and after
/// the session is admitted.
async fn frame_limit_after_hello(admit: bool, body_len: usize) -> Result<usize, WireError> {
    let (client, server) = connected_pair().await;
    let server_task = tokio::spawn(async move {
        let (mut session, _) = server.accept_session().await.unwrap();
        if admit {
            session.admitted();
        }
        session
            .reply(&HelloReply::Welcome {
                role: Role::Supernode,
            })
            .await
            .unwrap();
        let frame = session.reader.read_frame().await;
        frame.map(|body| body.map_or(0, <[u8]>::len))
    });
    let (mut session, _) = client
        .open_session(&Hello::new(Role::Leaf, Intent::Attach, None))
        .await
        .unwrap();
    let mut frame = (body_len as u32).to_be_bytes().to_vec();
    frame.resize(4 + body_len, 7);
    // The server may close before it has all of a refused frame: the write's result is moot.
    let _ = session.writer.write_frame(&frame).await;
    server_task.await.unwrap()
}

#[tokio::test]
async fn a_session_takes_large_frames_only_once_admitted() {
    let big = 64 * 1024;
    assert!(matches!(
        frame_limit_after_hello(false, big).await,
        Err(WireError::FrameTooLarge {
            max: UNADMITTED_MAX_FRAME,
            ..
        })
    ));
    assert_eq!(
        frame_limit_after_hello(false, UNADMITTED_MAX_FRAME)
            .await
            .unwrap(),
        UNADMITTED_MAX_FRAME
    );
    assert_eq!(frame_limit_after_hello(true, big).await.unwrap(), big);
}
