//! From `prometheus_client`'s OpenMetrics text to the Prometheus text format (0.0.4), the
//! one every scraper and `promtool check metrics` read.
//!
//! The two differ in what concerns us in two places: OpenMetrics names a counter family
//! without its `_total` suffix in `# HELP` and `# TYPE` (the samples have it), and ends with
//! `# EOF`. Prometheus text wants the family named as its samples are; otherwise a strict
//! parser sees samples of an undeclared family. Histograms and gauges are the same in both.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// The registry in the Prometheus text format.
pub(super) fn exposition(registry: &Registry) -> String {
    let mut open_metrics = String::new();
    if let Err(e) = encode(&mut open_metrics, registry) {
        tracing::warn!("cannot encode the metrics: {e}");
    }
    to_prometheus_text(&open_metrics)
}

fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + counters.len() * 12);
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            (counters.contains(&name) && !name.ends_with("_total"))
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_take_their_samples_name_and_eof_goes() {
        let open_metrics = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
                            a_requests_total 3\n# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(open_metrics),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total 3\n# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"
        );
    }
}
