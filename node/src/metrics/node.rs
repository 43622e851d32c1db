//! A leaf's or supernode's metric families.
//!
//! Gauges and most counters are copied at scrape time from the status the control API
//! already reports ([`NodeMetrics::observe`]); searches are counted as they finish
//! ([`NodeMetrics::search_finished`]) because no other part of the daemon keeps them.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{Labels, labels, set_gauge, set_gauge_in, set_total, set_total_in};
use crate::control::{SharingJson, StatusJson};

/// Download states the control API reports; each gets a series, zeros included, so a
/// dashboard sees `0` rather than a missing series.
const DOWNLOAD_STATES: [&str; 6] = [
    "searching",
    "running",
    "finished",
    "failed",
    "paused",
    "cancelled",
];

/// How a search run through this daemon ended, against the results it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOutcome {
    /// As many results as asked for.
    Full,
    /// Some, but fewer than asked for.
    Partial,
    /// None (or an error before the first).
    Zero,
}

impl SearchOutcome {
    /// The outcome of a search that asked for `want` results and got `got`.
    pub fn of(got: usize, want: u32) -> Self {
        match got {
            0 => Self::Zero,
            n if n >= want as usize => Self::Full,
            _ => Self::Partial,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Partial => "partial",
            Self::Zero => "zero",
        }
    }
}

/// What a leaf or supernode exports.
pub struct NodeMetrics {
    registry: Registry,
    role: Family<Labels, Gauge>,
    connections: Family<Labels, Gauge>,
    bytes: Family<Labels, Counter>,
    searches: Family<Labels, Counter>,
    search_seconds: Histogram,
    overlay_queries: Family<Labels, Counter>,
    index_entries: Gauge,
    leaves: Gauge,
    neighbours: Gauge,
    downloads: Family<Labels, Gauge>,
    uploads: Gauge,
    uploaded_pieces: Counter,
    relay_sessions: Gauge,
    relay_sessions_total: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    shared_files: Gauge,
    unpublished_files: Gauge,
    published_files: Gauge,
    hashed_bytes: Counter,
    hashing_files: Gauge,
    hashing_bytes: Gauge,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    /// Registers every family under the `superpeer_` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("superpeer");
        let role = Family::<Labels, Gauge>::default();
        r.register(
            "role",
            "1 for the role this node plays now (leaf or supernode)",
            role.clone(),
        );
        let connections = Family::<Labels, Gauge>::default();
        r.register(
            "connections",
            "Open connections by kind: supernode (a leaf's), leaf and neighbour (a supernode's), upload peers, relayed sessions",
            connections.clone(),
        );
        let bytes = Family::<Labels, Counter>::default();
        r.register(
            "bytes",
            "Bytes moved by kind and direction: transfer in (downloaded), transfer out (uploaded), relay (carried for others)",
            bytes.clone(),
        );
        let searches = Family::<Labels, Counter>::default();
        r.register(
            "searches",
            "Searches run through this daemon by outcome: full (as many results as asked), partial, zero",
            searches.clone(),
        );
        // 10 ms to about 41 s: a loopback search ends in milliseconds, a wide one waits
        // for its deadline.
        let search_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        r.register(
            "search_duration_seconds",
            "Time from a search's start to its last result",
            search_seconds.clone(),
        );
        let overlay_queries = Family::<Labels, Counter>::default();
        r.register(
            "overlay_queries",
            "Query messages a supernode exchanged with neighbour supernodes, by direction: received or forwarded",
            overlay_queries.clone(),
        );
        let index_entries = Gauge::default();
        r.register(
            "index_entries",
            "Files a supernode indexes for its leaves",
            index_entries.clone(),
        );
        let leaves = Gauge::default();
        r.register(
            "leaves",
            "Leaves attached to this supernode",
            leaves.clone(),
        );
        let neighbours = Gauge::default();
        r.register(
            "neighbours",
            "Supernode links of this supernode",
            neighbours.clone(),
        );
        let downloads = Family::<Labels, Gauge>::default();
        r.register(
            "downloads",
            "Downloads this daemon knows, by state",
            downloads.clone(),
        );
        let uploads = Gauge::default();
        r.register("uploads", "Upload sessions open now", uploads.clone());
        let uploaded_pieces = Counter::default();
        r.register(
            "uploaded_pieces",
            "Verified pieces served to downloaders",
            uploaded_pieces.clone(),
        );
        let relay_sessions = Gauge::default();
        r.register(
            "relay_sessions",
            "Sessions this supernode relays now for firewalled leaves",
            relay_sessions.clone(),
        );
        let relay_sessions_total = Family::<Labels, Counter>::default();
        r.register(
            "relay_sessions_ended",
            "Relay requests by outcome: admitted, refused (at a cap), cut_off (past a byte or time cap)",
            relay_sessions_total.clone(),
        );
        let refusals = Family::<Labels, Counter>::default();
        r.register(
            "rate_limit_refusals",
            "Requests refused by a cap or a rate limit, by reason",
            refusals.clone(),
        );
        let shared_files = Gauge::default();
        r.register(
            "shared_files",
            "Files in the shared folder, hashed",
            shared_files.clone(),
        );
        let hashed_bytes = Counter::default();
        r.register(
            "hashed_bytes",
            "Bytes of shared files hashed since the node started (the first scan included)",
            hashed_bytes.clone(),
        );
        let hashing_files = Gauge::default();
        r.register(
            "hashing_pending_files",
            "Files the scan under way has still to hash (0 when none is hashing)",
            hashing_files.clone(),
        );
        let hashing_bytes = Gauge::default();
        r.register(
            "hashing_pending_bytes",
            "Bytes the scan under way has still to hash (0 when none is hashing)",
            hashing_bytes.clone(),
        );
        let unpublished_files = Gauge::default();
        r.register(
            "unpublished_files",
            "Hashed shared files the supernode does not index (yet)",
            unpublished_files.clone(),
        );
        let published_files = Gauge::default();
        r.register(
            "published_files",
            "Shared files the supernode has indexed",
            published_files.clone(),
        );
        Self {
            registry: r,
            role,
            connections,
            bytes,
            searches,
            search_seconds,
            overlay_queries,
            index_entries,
            leaves,
            neighbours,
            downloads,
            uploads,
            uploaded_pieces,
            relay_sessions,
            relay_sessions_total,
            refusals,
            shared_files,
            hashed_bytes,
            hashing_files,
            hashing_bytes,
            unpublished_files,
            published_files,
        }
    }

    /// Counts one search that ended with `outcome` after `took`.
    pub fn search_finished(&self, outcome: SearchOutcome, took: Duration) {
        self.searches
            .get_or_create(&labels(&[("outcome", outcome.label())]))
            .inc();
        self.search_seconds.observe(took.as_secs_f64());
    }

    /// Copies what the daemon reports into the families.
    pub fn observe(&self, status: &StatusJson, sharing: &SharingJson) {
        let supernode = status.role == "supernode";
        set_gauge_in(&self.role, &[("role", "supernode")], i64::from(supernode));
        set_gauge_in(&self.role, &[("role", "leaf")], i64::from(!supernode));
        let leaves = status.leaves.unwrap_or(0);
        let neighbours = status.neighbors.unwrap_or(0);
        let relayed = status.relay.as_ref().map_or(0, |r| r.active);
        for (kind, n) in [
            (
                "supernode",
                status
                    .supernodes
                    .len()
                    .max(usize::from(status.supernode.is_some())),
            ),
            ("leaf", leaves),
            ("neighbour", neighbours),
            ("upload_peer", sharing.upload_peers),
            ("relayed", relayed),
        ] {
            set_gauge_in(&self.connections, &[("kind", kind)], n);
        }
        let downloaded: u64 = status.downloads.iter().map(|d| d.bytes_done).sum();
        set_total_in(
            &self.bytes,
            &[("kind", "transfer"), ("direction", "in")],
            downloaded,
        );
        set_total_in(
            &self.bytes,
            &[("kind", "transfer"), ("direction", "out")],
            status.uploaded_bytes.max(sharing.uploaded_bytes),
        );
        let relay_bytes = status.relay.as_ref().map_or(0, |r| r.bytes);
        set_total_in(
            &self.bytes,
            &[("kind", "relay"), ("direction", "out")],
            relay_bytes,
        );
        for outcome in [
            SearchOutcome::Full,
            SearchOutcome::Partial,
            SearchOutcome::Zero,
        ] {
            // Creating the series shows zeros before the first search.
            let _ = self
                .searches
                .get_or_create(&labels(&[("outcome", outcome.label())]));
        }
        set_total_in(
            &self.overlay_queries,
            &[("direction", "received")],
            status.queries_received.unwrap_or(0),
        );
        set_total_in(
            &self.overlay_queries,
            &[("direction", "forwarded")],
            status.queries_forwarded.unwrap_or(0),
        );
        set_gauge(&self.index_entries, status.indexed.unwrap_or(0));
        set_gauge(&self.leaves, leaves);
        set_gauge(&self.neighbours, neighbours);
        for state in DOWNLOAD_STATES {
            let n = status.downloads.iter().filter(|d| d.state == state).count();
            set_gauge_in(&self.downloads, &[("state", state)], n);
        }
        set_gauge(&self.uploads, sharing.upload_sessions);
        set_total(&self.uploaded_pieces, sharing.uploaded_pieces);
        set_gauge(&self.relay_sessions, relayed);
        let relay = status.relay.as_ref();
        for (outcome, n) in [
            ("admitted", relay.map_or(0, |r| r.admitted)),
            ("refused", relay.map_or(0, |r| r.refused)),
            ("cut_off", relay.map_or(0, |r| r.cut_off)),
        ] {
            set_total_in(&self.relay_sessions_total, &[("outcome", outcome)], n);
        }
        let directory = status.directory.as_ref();
        for (reason, n) in [
            ("relay_cap", relay.map_or(0, |r| r.refused)),
            (
                "directory_owner_refused_us",
                directory.map_or(0, |d| d.refused_by_owners),
            ),
            (
                "directory_refused_as_owner",
                directory.map_or(0, |d| d.refused_as_owner),
            ),
        ] {
            set_total_in(&self.refusals, &[("reason", reason)], n);
        }
        set_gauge(&self.shared_files, status.shared_files);
        let hashing = status.hashing.unwrap_or_default();
        set_total(&self.hashed_bytes, hashing.hashed_bytes);
        set_gauge(
            &self.hashing_files,
            hashing.files.saturating_sub(hashing.files_done),
        );
        set_gauge(
            &self.hashing_bytes,
            hashing.bytes.saturating_sub(hashing.bytes_done),
        );
        let publication = status.publication.as_ref();
        set_gauge(
            &self.unpublished_files,
            publication.map_or(0, |p| p.pending),
        );
        set_gauge(&self.published_files, publication.map_or(0, |p| p.indexed));
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        super::text::exposition(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_compares_results_with_what_was_asked() {
        assert_eq!(SearchOutcome::of(0, 10), SearchOutcome::Zero);
        assert_eq!(SearchOutcome::of(3, 10), SearchOutcome::Partial);
        assert_eq!(SearchOutcome::of(10, 10), SearchOutcome::Full);
    }

    #[test]
    fn a_search_shows_in_the_text() {
        let m = NodeMetrics::new();
        m.search_finished(SearchOutcome::Partial, Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains("superpeer_searches_total{outcome=\"partial\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("superpeer_search_duration_seconds_count 1"),
            "{text}"
        );
    }
}
