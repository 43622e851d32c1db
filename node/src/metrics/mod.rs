//! Prometheus metrics: `--metrics ADDR` on every daemon serves `GET /metrics` in the text
//! exposition format.
//!
//! Counting only: nothing here takes part in a decision. Most values are read at scrape
//! time from what the daemon already reports (the control API's status, the uploads, the
//! list server's counters), so the state machines stay free of metrics code; the only
//! counters bumped as things happen are the searches run through this daemon (outcome and
//! latency), because nothing else remembers them.
//!
//! No secrets: the control token, keys and session cookies are never read here; node ids
//! and addresses are left out too (they are not secret, but labels must stay bounded).
//!
//! Layout:
//! - `node`: [`NodeMetrics`], the families of a leaf or supernode.
//! - `list_server`: [`ListServerMetrics`], the families of a list server.
//! - `text`: the encoder's OpenMetrics text turned into the Prometheus text format.
//! - `http`: the small axum server behind `--metrics`.

mod http;
mod list_server;
mod node;
mod text;

pub use http::serve;
pub use list_server::ListServerMetrics;
pub use node::{NodeMetrics, SearchOutcome};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Label sets: a few fixed `(name, value)` pairs.
type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Sets a counter the daemon already keeps (a total since start-up). `fetch_max` keeps it
/// monotonic even if the source shrinks (a cancelled download leaves the list), as a
/// Prometheus counter must be.
fn set_total(counter: &Counter, value: u64) {
    counter
        .inner()
        .fetch_max(value, std::sync::atomic::Ordering::Relaxed);
}

fn set_total_in(family: &Family<Labels, Counter>, pairs: &[(&str, &str)], value: u64) {
    set_total(&family.get_or_create(&labels(pairs)), value);
}

fn set_gauge(gauge: &Gauge, value: impl TryInto<i64>) {
    gauge.set(value.try_into().unwrap_or(i64::MAX));
}

fn set_gauge_in(family: &Family<Labels, Gauge>, pairs: &[(&str, &str)], value: impl TryInto<i64>) {
    set_gauge(&family.get_or_create(&labels(pairs)), value);
}
