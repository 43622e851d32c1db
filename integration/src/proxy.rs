//! A userspace UDP proxy that adds delay, jitter and loss: how the tests make round-trip
//! differences real on a machine whose kernel has no netem.
//!
//! A node is started with `--advertise PROXY_ADDR`, so others reach it through the proxy:
//!
//! 1. A datagram from a client arrives on the listening socket. The first one from a source
//!    address opens that client's own upstream socket (same IP as the listener, port 0),
//!    so the target sees one peer per client and its replies map back to that client
//!    (QUIC needs this: a connection is its 4-tuple).
//! 2. The `to_target` [`LinkShaper`] decides whether the datagram is lost and when it
//!    leaves; it waits in a FIFO delay line, then goes out of the upstream socket.
//! 3. Replies from the target on an upstream socket go the same way back through the
//!    `to_client` shaper and leave from the listening socket to the client.
//!
//! What a flood can make it hold is capped: at most [`MAX_CLIENTS`] client mappings (idle
//! ones expire after [`CLIENT_IDLE`]; a new client past the cap is dropped) and at most
//! [`MAX_QUEUED_BYTES`] waiting in each direction. Dropping the [`Proxy`] stops it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most clients (distinct source addresses) mapped at once.
pub const MAX_CLIENTS: usize = 1024;
/// A client silent this long loses its mapping (and its upstream socket).
pub const CLIENT_IDLE: Duration = Duration::from_secs(60);
/// Most payload bytes waiting in one direction's delay line; past it datagrams are dropped,
/// as a full router queue would.
pub const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;
/// Largest datagram carried.
pub const MAX_DATAGRAM: usize = 65535;
/// Bookkeeping charged per queued datagram, so that a flood of tiny ones is bounded too.
const QUEUE_ENTRY_COST: usize = 64;

/// What one direction of the path does to a datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Link {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `[0, jitter]`, drawn per datagram.
    pub jitter: Duration,
    /// Probability in `0..=1` that a datagram is lost.
    pub loss: f64,
}

impl Link {
    /// A lossless link with a fixed one-way `delay`.
    pub fn delay(delay: Duration) -> Link {
        Link {
            delay,
            ..Link::default()
        }
    }
}

/// How the proxy treats each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProxyConfig {
    /// Client to target.
    pub to_target: Link,
    /// Target to client.
    pub to_client: Link,
    /// Seed of the loss and jitter draws.
    pub seed: u64,
}

impl ProxyConfig {
    /// The same `link` both ways.
    pub fn symmetric(link: Link, seed: u64) -> ProxyConfig {
        ProxyConfig {
            to_target: link,
            to_client: link,
            seed,
        }
    }
}

/// The decisions of one direction, without sockets or clocks: whether a datagram is lost,
/// and when it leaves.
///
/// Departures never go backwards: a datagram leaves no earlier than the one before it, so
/// jitter delays but never reorders (reordering would make QUIC declare packets lost and
/// skew the very RTTs the tests compare). Under a steady stream this pushes the delay
/// towards `delay + jitter`.
#[derive(Debug)]
pub struct LinkShaper {
    link: Link,
    rng: StdRng,
    last_departure: Option<Instant>,
}

impl LinkShaper {
    /// A shaper for `link`, its draws seeded with `seed`.
    pub fn new(link: Link, seed: u64) -> LinkShaper {
        LinkShaper {
            link,
            rng: StdRng::seed_from_u64(seed),
            last_departure: None,
        }
    }

    /// A datagram arrived at `now`: when it leaves, or `None` when it is lost.
    pub fn handle_datagram(&mut self, now: Instant) -> Option<Instant> {
        // A draw in [0, 1): a loss of 1 drops everything, and a NaN loss drops nothing.
        let draw: f64 = self.rng.random();
        if draw < self.link.loss {
            return None;
        }
        let jitter_ns = u64::try_from(self.link.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.rng.random_range(0..=jitter_ns));
        let mut departure = now + self.link.delay + jitter;
        if let Some(last) = self.last_departure {
            departure = departure.max(last);
        }
        self.last_departure = Some(departure);
        Some(departure)
    }
}

/// A running proxy. Dropping it stops it.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `target`, shaping each
    /// direction as `config` says.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        config: ProxyConfig,
    ) -> io::Result<Proxy> {
        let socket = Arc::new(UdpSocket::bind(listen).await?);
        let addr = socket.local_addr()?;
        let (to_target, to_target_task) = DelayLine::spawn(config.to_target, config.seed);
        let (to_client, to_client_task) =
            DelayLine::spawn(config.to_client, config.seed ^ 0x9e37_79b9_7f4a_7c15);
        let clients = Clients {
            socket,
            target,
            to_target,
            to_client,
            mappings: HashMap::new(),
        };
        let main = tokio::spawn(clients.run());
        tracing::debug!(%addr, %target, ?config, "proxy started");
        Ok(Proxy {
            addr,
            tasks: vec![main, to_target_task, to_client_task],
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the client loop drops its mappings, which abort their readers.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A datagram waiting in a delay line.
struct Queued {
    departure: Instant,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// One direction: its shaper, and a FIFO of datagrams waiting for their departure.
struct DelayLine {
    shaper: Mutex<LinkShaper>,
    queue: mpsc::UnboundedSender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
}

impl DelayLine {
    fn spawn(link: Link, seed: u64) -> (Arc<DelayLine>, JoinHandle<()>) {
        let (queue, mut rx) = mpsc::unbounded_channel::<Queued>();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let line = Arc::new(DelayLine {
            shaper: Mutex::new(LinkShaper::new(link, seed)),
            queue,
            queued_bytes: queued_bytes.clone(),
        });
        // Departures are non-decreasing in queue order, so one sleeper serves the line.
        let task = tokio::spawn(async move {
            while let Some(q) = rx.recv().await {
                tokio::time::sleep_until(q.departure.into()).await;
                if let Err(e) = q.socket.send_to(&q.bytes, q.to).await {
                    tracing::debug!(to = %q.to, error = %e, "proxy send failed");
                }
                queued_bytes.fetch_sub(cost(&q.bytes), Ordering::Relaxed);
            }
        });
        (line, task)
    }

    /// Takes a datagram that arrived now, to leave through `socket` to `to` (or be lost).
    fn push(&self, socket: &Arc<UdpSocket>, to: SocketAddr, bytes: &[u8]) {
        let cost = cost(bytes);
        if self.queued_bytes.load(Ordering::Relaxed) + cost > MAX_QUEUED_BYTES {
            return;
        }
        // Decide and enqueue under one lock so queue order matches departure order.
        let mut shaper = self.shaper.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(departure) = shaper.handle_datagram(Instant::now()) else {
            return;
        };
        self.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        let queued = Queued {
            departure,
            socket: socket.clone(),
            to,
            bytes: bytes.to_vec(),
        };
        if self.queue.send(queued).is_err() {
            self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
        }
    }
}

fn cost(bytes: &[u8]) -> usize {
    bytes.len() + QUEUE_ENTRY_COST
}

/// One client's upstream socket and the task relaying the target's replies to it.
struct Mapping {
    upstream: Arc<UdpSocket>,
    last_seen: Instant,
    reader: JoinHandle<()>,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The listening side: reads clients' datagrams and keeps their mappings.
struct Clients {
    socket: Arc<UdpSocket>,
    target: SocketAddr,
    to_target: Arc<DelayLine>,
    to_client: Arc<DelayLine>,
    mappings: HashMap<SocketAddr, Mapping>,
}

impl Clients {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut sweep = tokio::time::interval(CLIENT_IDLE / 4);
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let datagram = buf.get(..n).unwrap_or_default();
                        self.on_datagram(from, datagram).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "proxy receive failed"),
                },
                _ = sweep.tick() => self.expire(Instant::now()),
            }
        }
    }

    async fn on_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let now = Instant::now();
        if !self.mappings.contains_key(&from) {
            if self.mappings.len() >= MAX_CLIENTS {
                self.expire(now);
            }
            if self.mappings.len() >= MAX_CLIENTS {
                tracing::debug!(%from, "proxy full: datagram from a new client dropped");
                return;
            }
            match self.open_mapping(from).await {
                Ok(mapping) => {
                    self.mappings.insert(from, mapping);
                }
                Err(e) => {
                    tracing::debug!(%from, error = %e, "proxy cannot open an upstream socket");
                    return;
                }
            }
        }
        if let Some(mapping) = self.mappings.get_mut(&from) {
            mapping.last_seen = now;
            self.to_target
                .push(&mapping.upstream, self.target, datagram);
        }
    }

    async fn open_mapping(&self, client: SocketAddr) -> io::Result<Mapping> {
        let local = SocketAddr::new(self.socket.local_addr()?.ip(), 0);
        let upstream = Arc::new(UdpSocket::bind(local).await?);
        let reader = tokio::spawn(relay_replies(
            upstream.clone(),
            self.target,
            self.socket.clone(),
            client,
            self.to_client.clone(),
        ));
        Ok(Mapping {
            upstream,
            last_seen: Instant::now(),
            reader,
        })
    }

    fn expire(&mut self, now: Instant) {
        self.mappings
            .retain(|_, m| now.saturating_duration_since(m.last_seen) < CLIENT_IDLE);
    }
}

/// Relays what the target sends on `upstream` to `client`, through the `to_client` line.
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    target: SocketAddr,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    to_client: Arc<DelayLine>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match upstream.recv_from(&mut buf).await {
            // Anyone else who finds the upstream port is ignored.
            Ok((n, from)) if from == target => {
                to_client.push(&socket, client, buf.get(..n).unwrap_or_default());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%client, error = %e, "proxy upstream receive failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use superpeer_common::wire::Role;
    use superpeer_common::{Endpoint, Identity, PeerAddr, TransportLimits};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn departures_stay_within_delay_and_jitter_and_never_reorder() {
        let link = Link {
            delay: 30 * MS,
            jitter: 10 * MS,
            loss: 0.0,
        };
        let mut shaper = LinkShaper::new(link, 7);
        let start = Instant::now();
        let mut last = start;
        let mut spread = Duration::ZERO;
        for i in 0..1000u32 {
            // One arrival every 5 ms: jitter (10 ms) larger than the gap tests the ordering.
            let now = start + 5 * MS * i;
            let departure = shaper.handle_datagram(now).unwrap();
            let added = departure - now;
            assert!(added >= link.delay, "{added:?} below the delay");
            assert!(added <= link.delay + 2 * link.jitter, "{added:?} too late");
            assert!(departure >= last, "datagram {i} overtook the one before");
            spread = spread.max(added - link.delay);
            last = departure;
        }
        assert!(spread > 5 * MS, "jitter never drawn: {spread:?}");
    }

    #[test]
    fn no_jitter_means_exactly_the_delay() {
        let mut shaper = LinkShaper::new(Link::delay(20 * MS), 1);
        let now = Instant::now();
        assert_eq!(shaper.handle_datagram(now), Some(now + 20 * MS));
    }

    #[test]
    fn loss_rate_matches_the_configured_probability() {
        let link = Link {
            loss: 0.25,
            ..Link::default()
        };
        let mut shaper = LinkShaper::new(link, 42);
        let now = Instant::now();
        let n = 20_000;
        let lost = (0..n)
            .filter(|_| shaper.handle_datagram(now).is_none())
            .count();
        let rate = lost as f64 / n as f64;
        // Standard deviation ~0.003: five of them either side.
        assert!((0.235..0.265).contains(&rate), "loss rate {rate}");
    }

    #[test]
    fn loss_extremes_and_nonsense() {
        let now = Instant::now();
        let mut all = LinkShaper::new(
            Link {
                loss: 1.0,
                ..Link::default()
            },
            3,
        );
        assert!((0..1000).all(|_| all.handle_datagram(now).is_none()));
        for loss in [0.0, -1.0, f64::NAN] {
            let mut none = LinkShaper::new(
                Link {
                    loss,
                    ..Link::default()
                },
                3,
            );
            assert!((0..1000).all(|_| none.handle_datagram(now).is_some()));
        }
    }

    #[test]
    fn the_same_seed_draws_the_same() {
        let link = Link {
            delay: MS,
            jitter: 50 * MS,
            loss: 0.3,
        };
        let now = Instant::now();
        let draws = |seed| {
            let mut shaper = LinkShaper::new(link, seed);
            (0..100)
                .map(|i| shaper.handle_datagram(now + 100 * MS * i))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(9), draws(9));
        assert_ne!(draws(9), draws(10));
    }

    /// A UDP echo server; reports each datagram's source on the channel.
    async fn echo() -> (
        SocketAddr,
        mpsc::UnboundedReceiver<SocketAddr>,
        JoinHandle<()>,
    ) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                let _ = tx.send(from);
                socket.send_to(&buf[..n], from).await.unwrap();
            }
        });
        (addr, rx, task)
    }

    async fn client() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Sends `payload` through and waits for it to come back; the round trip.
    async fn round_trip(socket: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Duration {
        let start = Instant::now();
        socket.send_to(payload, to).await.unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("no echo within 5 s")
            .unwrap();
        assert_eq!(from, to, "the reply must come from the proxy");
        assert_eq!(&buf[..n], payload);
        start.elapsed()
    }

    #[tokio::test]
    async fn echo_through_the_proxy_shows_the_added_round_trip() {
        let (target, _sources, _echo) = echo().await;
        let delay = 40 * MS;
        let config = ProxyConfig {
            to_target: Link::delay(delay),
            to_client: Link::delay(delay),
            seed: 1,
        };
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target, config)
            .await
            .unwrap();
        let socket = client().await;
        let direct = round_trip(&socket, target, b"direct").await;
        let mut rtts = Vec::new();
        for i in 0..5u8 {
            rtts.push(round_trip(&socket, proxy.addr(), &[i; 100]).await);
        }
        rtts.sort();
        println!("direct {direct:?}, through the proxy {rtts:?}");
        assert!(
            rtts[0] >= 2 * delay,
            "{rtts:?} shorter than twice the delay"
        );
        // Generous: timers round up to the millisecond and the machine may be busy.
        assert!(
            rtts[2] < 2 * delay + 60 * MS,
            "{rtts:?} far longer than the delay"
        );
    }

    #[tokio::test]
    async fn each_way_has_its_own_delay() {
        let (target, _sources, _echo) = echo().await;
        let config = ProxyConfig {
            to_target: Link::delay(50 * MS),
            to_client: Link::default(),
            seed: 1,
        };
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target, config)
            .await
            .unwrap();
        let rtt = round_trip(&client().await, proxy.addr(), b"one way").await;
        assert!(rtt >= 50 * MS && rtt < 100 * MS, "{rtt:?}");
    }

    #[tokio::test]
    async fn large_datagrams_pass() {
        let (target, _sources, _echo) = echo().await;
        let proxy = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            target,
            ProxyConfig::default(),
        )
        .await
        .unwrap();
        let big = vec![0xa5; 65_000];
        round_trip(&client().await, proxy.addr(), &big).await;
    }

    #[tokio::test]
    async fn loss_through_the_proxy_is_near_the_configured_rate() {
        let (target, _sources, _echo) = echo().await;
        let lossy = |loss| Link {
            loss,
            ..Link::default()
        };
        let config = ProxyConfig {
            to_target: lossy(0.2),
            to_client: lossy(0.1),
            seed: 5,
        };
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target, config)
            .await
            .unwrap();
        let socket = client().await;
        let sent = 2000u32;
        let mut received = 0u32;
        let mut buf = vec![0u8; 64];
        // Bursts small enough for the socket buffers, so only the proxy loses datagrams; the
        // echoes are collected between bursts, and at the end until the line is quiet.
        for burst in 0..sent / 50 {
            for i in 0..50 {
                socket
                    .send_to(&(burst * 50 + i).to_be_bytes(), proxy.addr())
                    .await
                    .unwrap();
            }
            let quiet = if burst + 1 == sent / 50 { 500 } else { 10 };
            while let Ok(r) =
                tokio::time::timeout(Duration::from_millis(quiet), socket.recv_from(&mut buf)).await
            {
                r.unwrap();
                received += 1;
            }
        }
        let rate = f64::from(received) / f64::from(sent);
        // Expected 0.8 * 0.9 = 0.72, standard deviation 0.01: five either side.
        println!("{received} of {sent} came back ({rate:.3})");
        assert!((0.67..0.77).contains(&rate), "delivery rate {rate}");
    }

    #[tokio::test]
    async fn each_client_gets_its_own_upstream_socket() {
        let (target, mut sources, _echo) = echo().await;
        let proxy = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            target,
            ProxyConfig::default(),
        )
        .await
        .unwrap();
        let (a, b) = (client().await, client().await);
        round_trip(&a, proxy.addr(), b"from a").await;
        round_trip(&b, proxy.addr(), b"from b").await;
        round_trip(&a, proxy.addr(), b"from a again").await;
        let seen: Vec<SocketAddr> = (0..3).map(|_| sources.try_recv().unwrap()).collect();
        assert_ne!(seen[0], seen[1], "two clients shared an upstream socket");
        assert_eq!(seen[0], seen[2], "a client changed upstream sockets");
        assert!(seen.iter().all(|s| s.ip() == proxy.addr().ip()));
        assert!(seen.iter().all(|s| *s != proxy.addr()));
    }

    #[tokio::test]
    async fn dropping_the_proxy_stops_it() {
        let (target, _sources, _echo) = echo().await;
        let proxy = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            target,
            ProxyConfig::default(),
        )
        .await
        .unwrap();
        let addr = proxy.addr();
        let socket = client().await;
        round_trip(&socket, addr, b"before").await;
        drop(proxy);
        // Once its tasks are gone the port is free again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the proxy still holds {addr}");
            tokio::time::sleep(10 * MS).await;
        }
    }

    #[tokio::test]
    async fn quic_connects_through_the_proxy_and_sees_its_delay() {
        let delay = 30 * MS;
        let server_id = Arc::new(Identity::generate().unwrap());
        let server = Endpoint::bind(
            server_id.clone(),
            "127.0.0.1:0".parse().unwrap(),
            TransportLimits::default(),
        )
        .unwrap();
        let proxy = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            server.local_addr().unwrap(),
            ProxyConfig::symmetric(Link::delay(delay), 11),
        )
        .await
        .unwrap();
        let serving = tokio::spawn(async move {
            let incoming = server.incoming().await.unwrap();
            let conn = superpeer_common::accept(incoming, Duration::from_secs(5))
                .await
                .unwrap();
            let (mut session, _hello) = conn.accept_session().await.unwrap();
            // Ends when the prober closes; how it ends is not what this test checks.
            let _ = superpeer_common::answer_probe(&mut session, Role::Supernode, || None).await;
        });
        let me = Arc::new(Identity::generate().unwrap());
        let client = Endpoint::client(me, proxy.addr(), TransportLimits::default()).unwrap();
        let conn = client
            .connect(&PeerAddr::pinned(server_id.node_id(), proxy.addr()))
            .await
            .unwrap();
        assert_eq!(conn.peer(), server_id.node_id());
        let probed = superpeer_common::probe(&conn, Role::Leaf, 5).await.unwrap();
        let quic_rtt = conn.rtt();
        println!("probe RTT {:?}, QUIC RTT {quic_rtt:?}", probed.rtt);
        assert!(probed.rtt >= 2 * delay, "probe {:?}", probed.rtt);
        assert!(probed.rtt < 2 * delay + 60 * MS, "probe {:?}", probed.rtt);
        assert!(quic_rtt >= 2 * delay, "QUIC {quic_rtt:?}");
        assert!(quic_rtt < 2 * delay + 60 * MS, "QUIC {quic_rtt:?}");
        conn.close(superpeer_common::wire::CloseCode::Normal, "done");
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .unwrap()
            .unwrap();
    }
}
