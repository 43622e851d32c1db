//! QUIC endpoints that carry a node's identity, with bounded resources.
//!
//! [`Endpoint`] wraps a quinn endpoint configured from an [`Identity`]: TLS 1.3 with raw
//! Ed25519 keys both ways (see `tls.rs`), the limits of [`TransportLimits`], and dialling by
//! [`PeerAddr`] (pinned or not). Every [`Connection`] knows the peer's verified [`NodeId`].
//! A [`Session`] is the first bidirectional stream of a connection after the hello exchange.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::CertificateDer;

use crate::address::PeerAddr;
use crate::identity::{Identity, NodeId};
use crate::tls::{self, TlsError};
use crate::wire::{
    self, CloseCode, FrameReader, FrameWriter, Hello, HelloReply, WireError, close_for,
};

/// Resource limits of every connection. The defaults suit a supernode with hundreds of
/// leaves: quinn's own default receive window is unbounded, which lets one peer make us
/// buffer without limit.
#[derive(Clone, Debug)]
pub struct TransportLimits {
    /// A connection with no traffic for this long is dead. Keep-alives keep live ones open,
    /// so this bounds how long a crashed peer goes unnoticed.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this much quiet.
    pub keep_alive: Duration,
    /// Give up on a handshake after this long.
    pub handshake_timeout: Duration,
    /// Concurrent bidirectional streams a peer may open.
    pub max_bidi_streams: u32,
    /// Concurrent unidirectional streams a peer may open.
    pub max_uni_streams: u32,
    /// Bytes a peer may have in flight on one stream.
    pub stream_receive_window: u32,
    /// Bytes a peer may have in flight on the whole connection.
    pub receive_window: u32,
    /// Bytes we keep in flight to a peer.
    pub send_window: u64,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(4),
            keep_alive: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            max_bidi_streams: 32,
            max_uni_streams: 8,
            stream_receive_window: 1024 * 1024,
            receive_window: 4 * 1024 * 1024,
            send_window: 4 * 1024 * 1024,
        }
    }
}

/// What an incoming connection may make us hold before its hello is accepted: the whole
/// connection's unread bytes (a hello is at most [`UNADMITTED_MAX_FRAME`]). Credit granted
/// in the handshake cannot be taken back, so incoming connections start here and get the
/// full [`TransportLimits::receive_window`] only once admitted
/// ([`Connection::admit`]): a crowd of peers that never finish their hello, or stuff
/// streams nobody reads, cost at most this much each.
pub const UNADMITTED_RECEIVE_WINDOW: u32 = 64 * 1024;

impl TransportLimits {
    /// Incoming connections: one stream each (every conversation of ours is one session
    /// per connection), and the small window until admitted.
    fn quinn_server_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        let mut config = self.quinn_config()?;
        config
            .max_concurrent_bidi_streams(1u32.into())
            .max_concurrent_uni_streams(self.max_uni_streams.min(1).into())
            .receive_window(UNADMITTED_RECEIVE_WINDOW.into());
        Ok(config)
    }

    fn quinn_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        let mut config = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::Config("idle timeout out of range".into()))?;
        config
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .max_concurrent_bidi_streams(self.max_bidi_streams.into())
            .max_concurrent_uni_streams(self.max_uni_streams.into())
            .stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.receive_window.into())
            .send_window(self.send_window)
            .datagram_receive_buffer_size(None);
        Ok(config)
    }
}

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A limit is out of range or quinn refused the configuration.
    #[error("transport configuration: {0}")]
    Config(String),
}

/// Why a connection could not be made or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nobody completed a handshake in time (nothing listening, or packets lost).
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// The address answered with another node id than the one pinned.
    #[error("{addr} is node {found}, not the expected {expected}")]
    WrongNode {
        addr: SocketAddr,
        expected: NodeId,
        found: NodeId,
    },
    /// The TLS handshake failed (no or bad key, bad signature, wrong protocol).
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    /// The local endpoint refused to start the connection (closed, bad address family).
    #[error("cannot connect to {addr}: {reason}")]
    Local { addr: SocketAddr, reason: String },
    /// TLS setup for this connection failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A QUIC endpoint bound to a UDP port, speaking as one identity.
#[derive(Clone, Debug)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Arc<Identity>,
    transport: Arc<quinn::TransportConfig>,
    limits: TransportLimits,
}

impl Endpoint {
    /// Listens on `addr` (accepts connections and makes them).
    pub fn bind(
        identity: Arc<Identity>,
        addr: SocketAddr,
        limits: TransportLimits,
    ) -> Result<Self, TransportError> {
        let transport = Arc::new(limits.quinn_config()?);
        let server = server_config(&identity, &limits)?;
        let inner = quinn::Endpoint::server(server, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self {
            inner,
            identity,
            transport,
            limits,
        })
    }

    /// Like [`Endpoint::bind`] (same TLS, same limits, accepts and dials), but over `socket`
    /// instead of a UDP port of its own: a relay tunnel (`tunnel.rs`). Needs a tokio runtime.
    pub(crate) fn over_socket(
        identity: Arc<Identity>,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        limits: TransportLimits,
    ) -> Result<Self, TransportError> {
        let transport = Arc::new(limits.quinn_config()?);
        let server = server_config(&identity, &limits)?;
        let inner = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| TransportError::Config(e.to_string()))?;
        Ok(Self {
            inner,
            identity,
            transport,
            limits,
        })
    }

    /// An endpoint that only dials out (command-line clients), on an ephemeral port of the
    /// address family of `peer`.
    pub fn client(
        identity: Arc<Identity>,
        peer: SocketAddr,
        limits: TransportLimits,
    ) -> Result<Self, TransportError> {
        let addr = match peer {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let transport = Arc::new(limits.quinn_config()?);
        let inner = quinn::Endpoint::client(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self {
            inner,
            identity,
            transport,
            limits,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// This endpoint's node id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// The identity this endpoint speaks as.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The limits this endpoint applies.
    pub fn limits(&self) -> &TransportLimits {
        &self.limits
    }

    /// Dials `peer`. When it is pinned, any other key is refused during the handshake,
    /// before we authenticate ourselves to it.
    pub async fn connect(&self, peer: &PeerAddr) -> Result<Connection, ConnectError> {
        let addr = peer.addr;
        let (crypto, presented) = tls::client_config(&self.identity, peer.node_id)?;
        let crypto = QuicClientConfig::try_from(crypto).map_err(|e| ConnectError::Local {
            addr,
            reason: e.to_string(),
        })?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let connecting = self
            .inner
            .connect_with(config, addr, tls::SERVER_NAME)
            .map_err(|e| ConnectError::Local {
                addr,
                reason: e.to_string(),
            })?;
        let timeout = self.limits.handshake_timeout;
        let result = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout { addr, timeout })?;
        let conn = result.map_err(|e| match (peer.node_id, presented.node_id()) {
            (Some(expected), Some(found)) if expected != found => ConnectError::WrongNode {
                addr,
                expected,
                found,
            },
            _ => match e {
                quinn::ConnectionError::TimedOut => ConnectError::Timeout { addr, timeout },
                other => ConnectError::Handshake {
                    addr,
                    reason: other.to_string(),
                },
            },
        })?;
        let connection = Connection::from_quinn(conn).ok_or_else(|| ConnectError::Handshake {
            addr,
            reason: "peer presented no usable key".into(),
        })?;
        match peer.node_id {
            Some(expected) if expected != connection.peer => {
                connection.close(CloseCode::Refused, "wrong node id");
                Err(ConnectError::WrongNode {
                    addr,
                    expected,
                    found: connection.peer,
                })
            }
            _ => Ok(connection),
        }
    }

    /// The next incoming connection attempt, or `None` once the endpoint is closed.
    /// Complete it with [`accept`].
    pub async fn incoming(&self) -> Option<quinn::Incoming> {
        self.inner.accept().await
    }

    /// The node id of whoever answers at `addr` (learning the id behind an address given
    /// without one), or `None` if nobody does.
    pub async fn identify(&self, addr: SocketAddr) -> Option<NodeId> {
        let conn = self.connect(&PeerAddr::unpinned(addr)).await.ok()?;
        let id = conn.peer();
        conn.close(CloseCode::Normal, "identified");
        Some(id)
    }

    /// Closes every connection (telling peers we are shutting down) and waits, bounded,
    /// for the close to reach them.
    pub async fn shutdown(&self) {
        self.inner
            .close(CloseCode::ShuttingDown.varint(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.wait_idle()).await;
    }
}

/// What incoming connections get: our TLS server side and the unadmitted limits.
fn server_config(
    identity: &Identity,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    let crypto = QuicServerConfig::try_from(tls::server_config(identity)?)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(limits.quinn_server_config()?));
    Ok(server)
}

/// Completes an incoming connection: the TLS handshake, bounded by `timeout`.
pub async fn accept(
    incoming: quinn::Incoming,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let addr = incoming.remote_address();
    let connecting = incoming.accept().map_err(|e| ConnectError::Handshake {
        addr,
        reason: e.to_string(),
    })?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout { addr, timeout })?
        .map_err(|e| ConnectError::Handshake {
            addr,
            reason: e.to_string(),
        })?;
    Connection::from_quinn(conn).ok_or_else(|| ConnectError::Handshake {
        addr,
        reason: "peer presented no usable key".into(),
    })
}

/// An established connection and the verified node id of the peer.
#[derive(Clone, Debug)]
pub struct Connection {
    inner: quinn::Connection,
    peer: NodeId,
}

impl Connection {
    fn from_quinn(inner: quinn::Connection) -> Option<Self> {
        let certs = inner
            .peer_identity()?
            .downcast::<Vec<CertificateDer<'static>>>()
            .ok()?;
        let peer = tls::node_id_from_spki(certs.first()?)?;
        Some(Self { inner, peer })
    }

    /// Gives an incoming connection whose session was accepted (a leaf attached, a link
    /// taken) the full receive window: until then it has [`UNADMITTED_RECEIVE_WINDOW`].
    pub fn admit(&self, receive_window: u32) {
        self.inner.set_receive_window(receive_window.into());
    }

    /// The peer's node id, proven in the handshake.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The peer's address as seen from here.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// QUIC's current round-trip estimate (333 ms until the first sample).
    pub fn rtt(&self) -> Duration {
        self.inner.rtt()
    }

    /// The quinn connection, for streams beyond the session.
    pub fn quinn(&self) -> &quinn::Connection {
        &self.inner
    }

    /// Closes the connection with `code`.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.inner.close(code.varint(), reason.as_bytes());
    }

    /// Closes the connection because of `error`, with the close code it calls for.
    pub fn close_for(&self, error: &WireError) {
        close_for(&self.inner, error);
    }

    /// Finishes `session`'s stream, gives the peer a moment to read the last frames (a close
    /// sent at once can overtake them), then closes with `code`.
    pub async fn finish_and_close(&self, session: &mut Session, code: CloseCode, reason: &str) {
        let _ = session.writer.inner_mut().finish();
        let _ = tokio::time::timeout(LINGER, self.inner.closed()).await;
        self.close(code, reason);
    }

    /// Waits until the connection is closed, by either side or by idle timeout.
    pub async fn closed(&self) -> WireError {
        self.inner.closed().await.into()
    }

    /// Initiator: opens the session stream and exchanges hellos.
    pub async fn open_session(&self, hello: &Hello) -> Result<(Session, HelloReply), WireError> {
        let (send, recv) = self.inner.open_bi().await?;
        let mut session = Session {
            reader: FrameReader::new(recv),
            writer: FrameWriter::new(send),
        };
        let reply = wire::send_hello(&mut session.reader, &mut session.writer, hello).await;
        match reply {
            Ok(reply) => Ok((session, reply)),
            Err(e) => {
                self.close_for(&e);
                Err(e)
            }
        }
    }

    /// Responder: accepts the session stream and reads the hello; the caller answers with
    /// [`Session::reply`]. A bad or missing hello (none within [`HELLO_TIMEOUT`]) closes the
    /// connection with the matching close code.
    pub async fn accept_session(&self) -> Result<(Session, Hello), WireError> {
        let opened = async {
            let (send, recv) = self.inner.accept_bi().await?;
            Ok::<_, WireError>(Self::hello_of(send, recv).await)
        };
        let result = match tokio::time::timeout(HELLO_TIMEOUT, opened).await {
            Ok(Ok(done)) => return self.settle_hello(done).await,
            Ok(Err(e)) => e,
            Err(_) => WireError::TimedOut("the hello"),
        };
        self.close_for(&result);
        Err(result)
    }

    /// Responder, on a connection that carries many sessions one after another (a
    /// downloader's to a holder): the session of a stream already taken with
    /// `quinn().accept_bi()` (waiting for streams is the caller's, with no time limit while
    /// its sessions run), its hello read within [`HELLO_TIMEOUT`].
    pub async fn session_of(
        &self,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Result<(Session, Hello), WireError> {
        match tokio::time::timeout(HELLO_TIMEOUT, Self::hello_of(send, recv)).await {
            Ok(done) => self.settle_hello(done).await,
            Err(_) => {
                let e = WireError::TimedOut("the hello");
                self.close_for(&e);
                Err(e)
            }
        }
    }

    async fn hello_of(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> (Session, Result<Hello, WireError>) {
        let mut session = Session {
            reader: FrameReader::new(recv),
            writer: FrameWriter::new(send),
        };
        // A hello is small, and so is all a session says until it is admitted (probe
        // pings, transfer requests): do not let a peer make us buffer a large frame.
        // Conversations with larger messages raise the limit: [`Session::admitted`]
        // once a leaf or link is taken, the transfer and list services to theirs.
        session.reader.limit_frames(UNADMITTED_MAX_FRAME);
        let hello = wire::receive_hello(&mut session.reader, &mut session.writer).await;
        (session, hello)
    }

    /// A hello read: the session, or the connection closed with the code the error calls
    /// for (after the version reply had a moment to reach the initiator).
    async fn settle_hello(
        &self,
        (mut session, hello): (Session, Result<Hello, WireError>),
    ) -> Result<(Session, Hello), WireError> {
        match hello {
            Ok(hello) => Ok((session, hello)),
            Err(e) => {
                let _ = session.writer.inner_mut().finish();
                let _ = tokio::time::timeout(LINGER, self.inner.closed()).await;
                self.close_for(&e);
                Err(e)
            }
        }
    }
}

/// How long a closing side waits for the peer to read its last frames.
const LINGER: Duration = Duration::from_millis(500);

/// How long an accepted connection may take to open its session and say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest frame accepted on an incoming session until it is admitted: the hello (well
/// under 200 bytes) and probe pings (a dozen) fit many times over. A crowd of sessions that
/// are never admitted thus pins at most this much each in frame buffers, not a megabyte.
pub const UNADMITTED_MAX_FRAME: usize = 1024;

/// The first bidirectional stream of a connection, after the hello exchange.
pub struct Session {
    /// Frames from the peer.
    pub reader: FrameReader<quinn::RecvStream>,
    /// Frames to the peer.
    pub writer: FrameWriter<quinn::SendStream>,
}

impl Session {
    /// Responder: answers the hello.
    pub async fn reply(&mut self, reply: &HelloReply) -> Result<(), WireError> {
        wire::send_hello_reply(&mut self.writer, reply).await
    }

    /// Responder: the session was admitted (a leaf attached, a link taken): its frames may
    /// now be as large as [`wire::MAX_FRAME_SIZE`] (publishes), instead of
    /// [`UNADMITTED_MAX_FRAME`].
    pub fn admitted(&mut self) {
        self.reader.limit_frames(wire::MAX_FRAME_SIZE);
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
