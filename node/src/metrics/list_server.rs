//! The list server's metric families, filled from its counters at scrape time.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use superpeer_bootstrap_list::ListServerStats;

use super::{Labels, set_gauge, set_total, set_total_in};

/// What a list server exports.
pub struct ListServerMetrics {
    registry: Registry,
    stats: Arc<ListServerStats>,
    listed: Box<dyn Fn() -> usize + Send + Sync>,
    listed_supernodes: Gauge,
    connections: Counter,
    messages: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
}

impl ListServerMetrics {
    /// Families over `stats`; `listed` counts the supernodes listed right now.
    pub fn new(
        stats: Arc<ListServerStats>,
        listed: impl Fn() -> usize + Send + Sync + 'static,
    ) -> Self {
        let mut registry = Registry::with_prefix("superpeer");
        let listed_supernodes = Gauge::default();
        registry.register(
            "listed_supernodes",
            "Supernodes the list server lists now (verified by dial-back, not expired)",
            listed_supernodes.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "list_server_connections",
            "Connections the list server accepted (past its caps and rate limits)",
            connections.clone(),
        );
        let messages = Family::<Labels, Counter>::default();
        registry.register(
            "list_server_messages",
            "Registry messages received, by type",
            messages.clone(),
        );
        let refusals = Family::<Labels, Counter>::default();
        registry.register(
            "rate_limit_refusals",
            "Connections and requests refused by a cap or a rate limit, by reason",
            refusals.clone(),
        );
        Self {
            registry,
            stats,
            listed: Box::new(listed),
            listed_supernodes,
            connections,
            messages,
            refusals,
        }
    }

    /// Reads the counters and renders the text exposition.
    pub fn render(&self) -> String {
        set_gauge(&self.listed_supernodes, (self.listed)());
        set_total(&self.connections, self.stats.connections());
        for (kind, n) in self.stats.messages() {
            set_total_in(&self.messages, &[("type", kind)], n);
        }
        for (reason, n) in self.stats.refusals() {
            set_total_in(&self.refusals, &[("reason", reason)], n);
        }
        super::text::exposition(&self.registry)
    }
}
