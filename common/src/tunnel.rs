//! Relay tunnels: a QUIC connection between two leaves, carried inside a stream that a
//! supernode pipes between them, so that the supernode relays only ciphertext.
//!
//! Two leaves behind symmetric NATs cannot reach each other, so a supernode both are
//! attached to relays for them, as a last resort. Identity and encryption stay end to end:
//!
//! 1. Each leaf opens (or accepts) one bidirectional stream, its *relay leg*, on its
//!    connection to the supernode. The supernode copies the bytes of one leg into the other
//!    and never parses them (`superpeer-supernode`'s `relay` module).
//! 2. Each leaf turns its leg into a UDP socket for quinn ([`TunnelSocket`]): every datagram
//!    its QUIC stack sends becomes a frame `[u16 big-endian length][datagram]` on the leg,
//!    and every frame read from the leg is a datagram from [`TUNNEL_PEER_ADDR`].
//! 3. Over that socket each leaf runs an ordinary [`Endpoint`]
//!    ([`Endpoint::over_relay_leg`]): one dials [`TUNNEL_PEER_ADDR`] pinned to the other's
//!    node id, the other accepts. TLS with raw keys proves both ids through the relay, exactly
//!    as over UDP; the supernode sees framed ciphertext only.
//! 4. When the leg ends (finished, reset, a bad frame, the supernode cut the session off) the
//!    socket goes quiet: the inner connections time out after their idle timeout, as over a
//!    dead link. When the inner endpoint is gone, the leg is finished.
//!
//! The socket never blocks a sender: datagrams wait in a bounded queue for the leg, and when
//! the queue is full they are dropped, as a full UDP send buffer would drop them. The leg is a
//! reliable stream, so only this queue loses packets; the inner QUIC's congestion control
//! sees those losses and slows down to what the leg (and the relay's rate cap) carries.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, RecvStream, SendStream, UdpPoller, VarInt};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::identity::Identity;
use crate::transport::{Endpoint, TransportError, TransportLimits};

/// The address the peer at the other end of a relay leg appears at, and the one to dial it
/// at. A documentation address (RFC 5737, never routed): nothing real is ever sent there,
/// and a log line showing it means "through a relay".
pub const TUNNEL_PEER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1));

/// Our own side of the tunnel, as quinn asks for one. Also never routed.
const TUNNEL_LOCAL_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1));

/// Largest datagram a frame may carry: quinn's default largest UDP payload (1500 - 28),
/// which is also the size of its receive buffers. Our endpoints never send more than 1200
/// (no MTU discovery over a tunnel), so a longer frame (or an empty one) is not from a
/// tunnel of ours, and ends it.
pub const MAX_TUNNEL_DATAGRAM: usize = 1472;

/// Datagrams waiting for the leg. About 300 KB of 1200-byte packets: enough to keep a leg
/// busy, small enough that a stalled leg shows up as loss quickly.
const OUTBOUND_QUEUE: usize = 256;

/// Datagrams read from the leg that quinn has not taken yet. When full, the reader stops
/// reading and the leg's flow control holds the peer back: at most this many datagrams of
/// [`MAX_TUNNEL_DATAGRAM`] are buffered per tunnel.
const INBOUND_QUEUE: usize = 64;

/// Datagrams written to the leg in one go.
const WRITE_BATCH: usize = 32;

/// Stream error code for a leg ended normally (our side or the peer's finished).
const LEG_DONE: VarInt = VarInt::from_u32(0);
/// Stream error code for a leg ended by a bad frame or a failed stream.
const LEG_BROKEN: VarInt = VarInt::from_u32(1);

impl Endpoint {
    /// An endpoint whose only peer is whoever is at the other end of the relay leg
    /// `send`/`recv` (see the module docs), with the usual TLS, pinning and `limits`.
    ///
    /// Returns it with the address the peer is at: dial it with
    /// `connect(&PeerAddr::pinned(peer_id, addr))`, or take the peer's connection with
    /// [`Endpoint::incoming`]. Spawns the task that pumps the leg, so it must run inside a
    /// tokio runtime.
    pub fn over_relay_leg(
        identity: Arc<Identity>,
        limits: TransportLimits,
        send: SendStream,
        recv: RecvStream,
    ) -> Result<(Endpoint, SocketAddr), TransportError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| TransportError::Config(format!("relay tunnel: {e}")))?;
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let socket = Arc::new(TunnelSocket {
            outbound,
            inbound: Mutex::new(inbound),
        });
        let endpoint = Endpoint::over_socket(identity, socket, limits)?;
        runtime.spawn(pump(send, recv, outbound_rx, inbound_tx));
        Ok((endpoint, TUNNEL_PEER_ADDR))
    }
}

/// A UDP socket for quinn whose only link is a relay leg, through the pump task.
struct TunnelSocket {
    /// Framed datagrams for the pump to write. `try_send` only: quinn must never wait.
    outbound: mpsc::Sender<Bytes>,
    /// Datagrams the pump read. Only quinn's endpoint driver polls it; the lock is never
    /// contended, it only gives `poll_recv`'s `&self` a way to the receiver.
    inbound: Mutex<mpsc::Receiver<Bytes>>,
}

impl fmt::Debug for TunnelSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSocket").finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for TunnelSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // Nobody else is reachable through the leg; and an error here would stop quinn's
        // connection driver for good, so every failure is a lost datagram instead.
        if transmit.destination != TUNNEL_PEER_ADDR {
            return Ok(());
        }
        let contents = transmit.contents;
        let segment = transmit.segment_size.unwrap_or(contents.len()).max(1);
        let mut frames =
            BytesMut::with_capacity(contents.len() + 2 * contents.len().div_ceil(segment));
        for datagram in contents.chunks(segment) {
            let Ok(len) = u16::try_from(datagram.len()) else {
                return Ok(());
            };
            frames.put_u16(len);
            frames.put_slice(datagram);
        }
        if frames.is_empty() {
            return Ok(());
        }
        // A full queue, or a tunnel that has ended: the datagram is lost, QUIC recovers.
        let _ = self.outbound.try_send(frames.freeze());
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbound = self.inbound.lock().unwrap_or_else(PoisonError::into_inner);
        let mut count = 0;
        while let (Some(buf), Some(slot)) = (bufs.get_mut(count), meta.get_mut(count)) {
            let datagram = if count == 0 {
                match inbound.poll_recv(cx) {
                    Poll::Ready(Some(datagram)) => datagram,
                    // `None`: the tunnel has ended and nothing will ever arrive. Staying
                    // pending (rather than failing, which would stop quinn's endpoint
                    // driver with an error) lets the connections end as over a dead link.
                    Poll::Ready(None) | Poll::Pending => return Poll::Pending,
                }
            } else {
                match inbound.try_recv() {
                    Ok(datagram) => datagram,
                    Err(_) => break,
                }
            };
            // The pump checks frame lengths; a buffer smaller than that is quinn's choice,
            // and a datagram that does not fit is lost, as UDP would truncate it.
            let Some(target) = buf.get_mut(..datagram.len()) else {
                continue;
            };
            target.copy_from_slice(&datagram);
            *slot = RecvMeta {
                addr: TUNNEL_PEER_ADDR,
                len: datagram.len(),
                stride: datagram.len(),
                ecn: None,
                dst_ip: None,
            };
            count += 1;
        }
        Poll::Ready(Ok(count))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(TUNNEL_LOCAL_ADDR)
    }

    /// One datagram per transmit: no GSO over a stream (batches would be split anyway).
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    /// "May fragment" turns quinn's MTU discovery off: a stream has no path MTU to find,
    /// and the packets stay at quinn's initial 1200 bytes.
    fn may_fragment(&self) -> bool {
        true
    }
}

/// The tunnel socket never makes quinn wait: a full queue drops instead.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Why a tunnel's pump stopped (for the log line).
#[derive(Debug, thiserror::Error)]
enum TunnelEnd {
    /// The inner endpoint is gone (the socket was dropped).
    #[error("the endpoint closed")]
    SocketClosed,
    /// The peer finished its side of the leg.
    #[error("the peer finished the leg")]
    LegFinished,
    /// The leg failed (reset, stopped, connection to the supernode lost).
    #[error("the leg failed: {0}")]
    LegFailed(String),
    /// A frame of a length no tunnel of ours sends.
    #[error("a frame of {0} bytes")]
    BadFrame(usize),
}

/// Moves datagrams between the socket's queues and the leg until either ends, then closes
/// the leg: finished when our endpoint went away (after writing all it left, typically its
/// CONNECTION_CLOSE), reset and stopped otherwise.
async fn pump(
    mut send: SendStream,
    mut recv: RecvStream,
    mut outbound: mpsc::Receiver<Bytes>,
    inbound: mpsc::Sender<Bytes>,
) {
    let end = tokio::select! {
        end = write_frames(&mut send, &mut outbound) => end,
        end = read_frames(&mut recv, &inbound) => end,
    };
    match end {
        TunnelEnd::SocketClosed => {
            let _ = send.finish();
            let _ = recv.stop(LEG_DONE);
        }
        TunnelEnd::LegFinished => {
            let _ = send.reset(LEG_DONE);
            let _ = recv.stop(LEG_DONE);
        }
        TunnelEnd::LegFailed(_) | TunnelEnd::BadFrame(_) => {
            let _ = send.reset(LEG_BROKEN);
            let _ = recv.stop(LEG_BROKEN);
        }
    }
    tracing::debug!(%end, "relay tunnel ended");
}

/// Writes queued frames to the leg until the socket is dropped (and its queue drained).
async fn write_frames(send: &mut SendStream, outbound: &mut mpsc::Receiver<Bytes>) -> TunnelEnd {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        if outbound.recv_many(&mut batch, WRITE_BATCH).await == 0 {
            return TunnelEnd::SocketClosed;
        }
        if let Err(e) = send.write_all_chunks(&mut batch).await {
            return TunnelEnd::LegFailed(e.to_string());
        }
        batch.clear();
    }
}

/// Reads frames from the leg into the socket's queue, waiting when quinn is behind.
async fn read_frames(recv: &mut RecvStream, inbound: &mpsc::Sender<Bytes>) -> TunnelEnd {
    let mut reader = BufReader::with_capacity(64 * 1024, recv);
    loop {
        let len = match reader.read_u16().await {
            Ok(len) => usize::from(len),
            // Between frames: a clean end (or a cut in a header, which ends it just as well).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return TunnelEnd::LegFinished,
            Err(e) => return TunnelEnd::LegFailed(e.to_string()),
        };
        if len == 0 || len > MAX_TUNNEL_DATAGRAM {
            return TunnelEnd::BadFrame(len);
        }
        let mut datagram = vec![0; len];
        if let Err(e) = reader.read_exact(&mut datagram).await {
            return TunnelEnd::LegFailed(e.to_string());
        }
        if inbound.send(Bytes::from(datagram)).await.is_err() {
            // The endpoint is gone: the writer drains what it left and ends the tunnel
            // (ending here could cut a frame it is writing in half).
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
