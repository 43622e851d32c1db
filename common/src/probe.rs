//! Probes: a short conversation that proves a node answers at an address and measures the
//! round trip. Leaves probe candidate supernodes; the list server probes a registering
//! supernode's advertised address (the dial-back) before listing it.
//!
//! 1. The prober connects (pinned when it knows the node id) and sends a hello with
//!    [`Intent::Probe`].
//! 2. It sends `samples` pings one after another; each pong carries the node's role and load.
//! 3. The round trip is the median of the samples: one handshake is too noisy, and quinn's
//!    own estimate starts at 333 ms before any sample.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::address::PeerAddr;
use crate::identity::NodeId;
use crate::transport::{Connection, Endpoint, Session};
use crate::wire::{
    CloseCode, Hello, HelloReply, Intent, Load, ProbeReply, ProbeRequest, Role, WireError,
};

/// What a probe learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// Median application-level round trip.
    pub rtt: Duration,
    /// The role the node reports.
    pub role: Role,
    /// Its load, when it is a supernode.
    pub load: Option<Load>,
    /// Where it saw our connection come from, if it says (supernodes do).
    pub observed: Option<SocketAddr>,
}

/// Probes the node at the other end of `conn` with `samples` pings (at least one).
pub async fn probe(
    conn: &Connection,
    my_role: Role,
    samples: usize,
) -> Result<ProbeResult, WireError> {
    let (mut session, reply) = conn
        .open_session(&Hello::new(my_role, Intent::Probe, None))
        .await?;
    if let HelloReply::Refused { reason, .. } = reply {
        return Err(WireError::Invalid(format!("probe refused: {reason}")));
    }
    let samples = samples.clamp(1, MAX_PINGS_PER_PROBE as usize);
    let mut rtts = Vec::with_capacity(samples);
    let mut last = None;
    for nonce in 0..samples as u64 {
        let sent = Instant::now();
        session.writer.send(&ProbeRequest::Ping { nonce }).await?;
        let ProbeReply::Pong {
            nonce: echoed,
            role,
            load,
            observed,
        } = session.reader.recv_required().await?;
        if echoed != nonce {
            return Err(WireError::Unexpected("pong for another ping"));
        }
        rtts.push(sent.elapsed());
        last = Some((role, load, observed));
    }
    let _ = session.writer.inner_mut().finish();
    rtts.sort();
    let (role, load, observed) = last.ok_or(WireError::Closed)?;
    let rtt = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
    Ok(ProbeResult {
        rtt,
        role,
        load,
        observed,
    })
}

/// Dial-back: whether node `node_id` answers at `addr` within `within`. The handshake is
/// pinned, and only the holder of that node's key can complete it, so `true` proves the
/// address reaches that node (not merely someone). Nothing is said on the connection.
pub async fn answers_at(
    endpoint: &Endpoint,
    node_id: NodeId,
    addr: SocketAddr,
    within: Duration,
) -> bool {
    let target = PeerAddr::pinned(node_id, addr);
    let dialling = endpoint.connect(&target);
    match tokio::time::timeout(within, dialling).await {
        Ok(Ok(conn)) => {
            conn.close(CloseCode::Normal, "dial-back done");
            true
        }
        _ => false,
    }
}

/// Most pings answered on one probe session; a prober needs a handful.
pub const MAX_PINGS_PER_PROBE: u64 = 16;

/// Longest a probe session is answered, from the welcome: a prober's few pings take a few
/// round trips. A probe session holds a connection slot, so one that lingers is closed
/// ([`WireError::TimedOut`]) rather than held for as long as its keep-alives go on.
pub const PROBE_SESSION_LIMIT: Duration = Duration::from_secs(5);

/// Responder: welcomes a probe and answers its pings until the prober finishes, within
/// [`PROBE_SESSION_LIMIT`]. `load` is read at each ping so the answer is current.
pub async fn answer_probe(
    session: &mut Session,
    role: Role,
    load: impl Fn() -> Option<Load>,
) -> Result<(), WireError> {
    answer_probe_seeing(session, role, load, None).await
}

/// [`answer_probe`], telling the prober where its connection comes from (`observed`):
/// supernodes do, so leaves learn their NAT's mapping.
pub async fn answer_probe_seeing(
    session: &mut Session,
    role: Role,
    load: impl Fn() -> Option<Load>,
    observed: Option<SocketAddr>,
) -> Result<(), WireError> {
    tokio::time::timeout(
        PROBE_SESSION_LIMIT,
        answer_pings(session, role, load, observed),
    )
    .await
    .unwrap_or(Err(WireError::TimedOut("the prober to finish")))
}

async fn answer_pings(
    session: &mut Session,
    role: Role,
    load: impl Fn() -> Option<Load>,
    observed: Option<SocketAddr>,
) -> Result<(), WireError> {
    session.reply(&HelloReply::Welcome { role }).await?;
    for _ in 0..MAX_PINGS_PER_PROBE {
        match session.reader.recv::<ProbeRequest>().await? {
            Some(ProbeRequest::Ping { nonce }) => {
                session
                    .writer
                    .send(&ProbeReply::Pong {
                        nonce,
                        role,
                        load: load(),
                        observed,
                    })
                    .await?;
            }
            None => return Ok(()),
        }
    }
    Err(WireError::Invalid(format!(
        "more than {MAX_PINGS_PER_PROBE} pings on one probe"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Endpoint, Identity, PeerAddr, TransportLimits, accept};

    /// A node's endpoint on 127.0.0.1, any port, with a fresh identity.
    fn loopback() -> Endpoint {
        let identity = Arc::new(Identity::generate().unwrap());
        Endpoint::bind(
            identity,
            "127.0.0.1:0".parse().unwrap(),
            TransportLimits::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn probe_reports_role_load_and_a_real_rtt() {
        let (server, client) = (loopback(), loopback());
        let s = server.clone();
        let answering = tokio::spawn(async move {
            let conn = accept(s.incoming().await.unwrap(), Duration::from_secs(5))
                .await
                .unwrap();
            let (mut session, hello) = conn.accept_session().await.unwrap();
            assert_eq!(hello.intent, Intent::Probe);
            let load = Load {
                leaves: 7,
                capacity: 500,
                neighbors: 2,
            };
            answer_probe(&mut session, Role::Supernode, || Some(load)).await
        });
        let conn = client
            .connect(&PeerAddr::pinned(
                server.node_id(),
                server.local_addr().unwrap(),
            ))
            .await
            .unwrap();
        let result = probe(&conn, Role::Leaf, 5).await.unwrap();
        assert_eq!(result.role, Role::Supernode);
        assert_eq!(
            result.load,
            Some(Load {
                leaves: 7,
                capacity: 500,
                neighbors: 2
            })
        );
        // Loopback: well under quinn's 333 ms initial estimate, and not zero.
        assert!(
            result.rtt < Duration::from_millis(100) && result.rtt > Duration::ZERO,
            "{:?}",
            result.rtt
        );
        answering.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_prober_that_says_nothing_is_cut_off() {
        let (server, client) = (loopback(), loopback());
        let s = server.clone();
        let answering = tokio::spawn(async move {
            let conn = accept(s.incoming().await.unwrap(), Duration::from_secs(5))
                .await
                .unwrap();
            let (mut session, _) = conn.accept_session().await.unwrap();
            let started = Instant::now();
            let result = answer_probe(&mut session, Role::Leaf, || None).await;
            (result, started.elapsed())
        });
        let conn = client
            .connect(&PeerAddr::pinned(
                server.node_id(),
                server.local_addr().unwrap(),
            ))
            .await
            .unwrap();
        // Welcomed, then silent: keep-alives alone would hold the session forever.
        let (_session, reply) = conn
            .open_session(&Hello::new(Role::Leaf, Intent::Probe, None))
            .await
            .unwrap();
        assert!(matches!(reply, HelloReply::Welcome { .. }));
        let (result, took) = answering.await.unwrap();
        assert!(matches!(result, Err(WireError::TimedOut(_))), "{result:?}");
        assert!(
            took >= PROBE_SESSION_LIMIT && took < PROBE_SESSION_LIMIT + Duration::from_secs(1),
            "{took:?}"
        );
    }
}
