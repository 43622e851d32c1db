//! The leaf's network tasks: probing candidates, attaching to a supernode, and the two
//! halves of a session with it. Each reports back to the driver through its event channel.
//!
//! Writes never wait inside the driver's loop: a session has a writer task fed through a
//! bounded queue. A write that waits past [`WRITE_TIMEOUT`] for flow control, or a queue
//! that fills up, means the supernode is not reading: the connection is closed and the
//! reader reports the session ended, so the leaf fails over instead of freezing.

use std::net::SocketAddr;
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, FrameReader, FrameWriter, Hello, HelloReply, Intent, LeafToSupernode, Load, Role,
    SupernodeInfo, SupernodeToLeaf, WireError,
};
use superpeer_common::{Connection, Endpoint, PeerAddr, Session, probe};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::Event;
use crate::leaf::SessionNo;

/// Pings per probe: the median of a few samples, not one noisy handshake.
const PROBE_SAMPLES: usize = 3;

/// Longest a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Longest the welcome may take once connected.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest one write to the supernode may wait for flow control.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages queued for the supernode at most (a publish of 20,000 files is 10).
pub const OUTBOX: usize = 256;

/// Probes `target` and reports its RTT and load (or failure).
pub async fn run_probe(endpoint: Endpoint, target: PeerAddr, events: mpsc::Sender<Event>) {
    let Some(node_id) = target.node_id else {
        return;
    };
    let probed = tokio::time::timeout(PROBE_TIMEOUT, probe_once(&endpoint, &target))
        .await
        .ok()
        .flatten();
    let observed = probed.as_ref().and_then(|(_, seen)| *seen);
    let result = probed.map(|(result, _)| result);
    let _ = events
        .send(Event::Probed {
            node_id,
            result,
            observed,
        })
        .await;
}

/// The probe's RTT and load, and where the supernode saw us.
type Probed = ((Duration, Option<Load>), Option<SocketAddr>);

async fn probe_once(endpoint: &Endpoint, target: &PeerAddr) -> Option<Probed> {
    let conn = endpoint.connect(target).await.ok()?;
    let result = probe(&conn, Role::Leaf, PROBE_SAMPLES).await.ok();
    conn.close(CloseCode::Normal, "probe done");
    let result = result?;
    (result.role == Role::Supernode).then_some(((result.rtt, result.load), result.observed))
}

/// How an attach attempt ended.
pub enum Attached {
    /// Welcome: the session is open (its reader already runs).
    Yes(SessionLink),
    /// The supernode is full; try these.
    Full(Vec<SupernodeInfo>),
    /// No connection or no welcome.
    Failed(String),
}

/// What goes to the writer task.
enum Outgoing {
    Message(LeafToSupernode),
    /// Say goodbye, end the stream, close.
    Leave(&'static str),
}

/// The driver's end of an open session.
pub struct SessionLink {
    conn: Connection,
    outbox: mpsc::Sender<Outgoing>,
    writer: JoinHandle<()>,
}

impl SessionLink {
    /// Queues `msg`. A full queue means the supernode is not reading: the session is closed
    /// (and reported ended by the reader).
    pub fn send(&self, msg: LeafToSupernode) {
        if self.outbox.try_send(Outgoing::Message(msg)).is_err() {
            debug!("the supernode is not reading; closing the session");
            self.conn
                .close(CloseCode::Overloaded, "the supernode does not read");
        }
    }

    /// Says goodbye (the supernode drops our files at once) and closes, in the background.
    pub fn leave(self, reason: &'static str) -> Leaving {
        if self.outbox.try_send(Outgoing::Leave(reason)).is_err() {
            self.conn.close(CloseCode::Normal, reason);
        }
        Leaving {
            writer: self.writer,
            conn: self.conn,
            reason,
        }
    }

    /// Closes at once.
    pub fn close(self, reason: &'static str) {
        self.conn.close(CloseCode::Normal, reason);
    }
}

/// A session saying goodbye.
pub struct Leaving {
    writer: JoinHandle<()>,
    conn: Connection,
    reason: &'static str,
}

impl Leaving {
    /// Whether the goodbye is over.
    pub fn is_finished(&self) -> bool {
        self.writer.is_finished()
    }

    /// Waits up to `within` for the goodbye to go out, then closes regardless (a supernode
    /// that does not read must not hold up a shutdown).
    pub async fn finish(self, within: Duration) {
        let _ = tokio::time::timeout(within, self.writer).await;
        self.conn.close(CloseCode::Normal, self.reason);
    }
}

/// Attaches to `target` and reports how it went ([`Event::Attached`]); on success the
/// reader (its messages tagged with `session`) starts only after that report, so the
/// driver never hears a message of a session before the session itself.
pub async fn run_attach(
    endpoint: Endpoint,
    target: PeerAddr,
    advertise: std::net::SocketAddr,
    session: SessionNo,
    events: mpsc::Sender<Event>,
) {
    let (result, reader) = match attach(endpoint, target, advertise).await {
        Ok((link, reader)) => (Attached::Yes(link.0), Some((link.1, reader))),
        Err(other) => (other, None),
    };
    if events
        .send(Event::Attached { session, result })
        .await
        .is_err()
    {
        return;
    }
    if let Some((conn, reader)) = reader {
        tokio::spawn(read(conn, reader, session, events));
    }
}

type Opened = ((SessionLink, Connection), FrameReader<quinn::RecvStream>);

async fn attach(
    endpoint: Endpoint,
    target: PeerAddr,
    advertise: std::net::SocketAddr,
) -> Result<Opened, Attached> {
    let conn = match endpoint.connect(&target).await {
        Ok(conn) => conn,
        Err(e) => return Err(Attached::Failed(e.to_string())),
    };
    let hello = Hello::new(Role::Leaf, Intent::Attach, Some(advertise));
    let opened = tokio::time::timeout(WELCOME_TIMEOUT, conn.open_session(&hello)).await;
    let (opened, reply) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(Attached::Failed(e.to_string())),
        Err(_) => {
            conn.close(CloseCode::Normal, "no welcome");
            return Err(Attached::Failed(format!(
                "no welcome within {WELCOME_TIMEOUT:?}"
            )));
        }
    };
    match reply {
        HelloReply::Welcome {
            role: Role::Supernode,
        } => {
            let Session { reader, writer } = opened;
            let (outbox, queue) = mpsc::channel(OUTBOX);
            let writer = tokio::spawn(write(conn.clone(), writer, queue));
            let link = SessionLink {
                conn: conn.clone(),
                outbox,
                writer,
            };
            Ok(((link, conn), reader))
        }
        HelloReply::Welcome { role } => {
            conn.close(CloseCode::Normal, "not a supernode");
            Err(Attached::Failed(format!("it is a {role}, not a supernode")))
        }
        HelloReply::Refused { try_instead, .. } => {
            conn.close(CloseCode::Normal, "refused");
            Err(Attached::Full(try_instead))
        }
    }
}

async fn write(
    conn: Connection,
    mut writer: FrameWriter<quinn::SendStream>,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    while let Some(next) = queue.recv().await {
        match next {
            Outgoing::Message(msg) => {
                match tokio::time::timeout(WRITE_TIMEOUT, writer.send(&msg)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!("write to the supernode failed: {e}");
                        conn.close_for(&e);
                        return;
                    }
                    Err(_) => {
                        debug!("the supernode has not read for {WRITE_TIMEOUT:?}; closing");
                        conn.close(CloseCode::Overloaded, "the supernode does not read");
                        return;
                    }
                }
            }
            Outgoing::Leave(reason) => {
                let leaving = writer.send(&LeafToSupernode::Leaving);
                let _ = tokio::time::timeout(WRITE_TIMEOUT, leaving).await;
                let _ = writer.inner_mut().finish();
                // The supernode closes once it has dropped our files; do not wait long.
                let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
                conn.close(CloseCode::Normal, reason);
                return;
            }
        }
    }
}

async fn read(
    conn: Connection,
    mut reader: FrameReader<quinn::RecvStream>,
    session: SessionNo,
    events: mpsc::Sender<Event>,
) {
    let why = loop {
        match reader.recv::<SupernodeToLeaf>().await {
            Ok(Some(msg)) => {
                if events
                    .send(Event::FromSupernode { session, msg })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break "the supernode ended the session".to_string(),
            Err(e) => {
                if !matches!(e, WireError::PeerClosed { .. } | WireError::Connection(_)) {
                    conn.close_for(&e);
                }
                break e.to_string();
            }
        }
    };
    let _ = events.send(Event::SessionEnded { session, why }).await;
}
