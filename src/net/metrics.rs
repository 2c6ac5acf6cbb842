//! Axon metrics in the Prometheus text format: requests by synapse and status, and a
//! request-latency histogram.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters and histograms, updated per request.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Records one finished request.
    pub(crate) fn record(&self, synapse: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((synapse.to_string(), status))
            .or_default() += 1;
        let mut lat = self.latency.lock().expect("metrics lock");
        let h = lat.entry(synapse.to_string()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, in_flight: usize, connections: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP axon_requests_total Requests handled, by synapse and HTTP status.\n");
        out.push_str("# TYPE axon_requests_total counter\n");
        for ((synapse, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "axon_requests_total{{synapse=\"{}\",status=\"{status}\"}} {n}",
                escape(synapse)
            );
        }
        out.push_str("# HELP axon_request_duration_seconds Request latency, by synapse.\n");
        out.push_str("# TYPE axon_request_duration_seconds histogram\n");
        for (synapse, h) in self.latency.lock().expect("metrics lock").iter() {
            let s = escape(synapse);
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "axon_request_duration_seconds_bucket{{synapse=\"{s}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "axon_request_duration_seconds_bucket{{synapse=\"{s}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "axon_request_duration_seconds_sum{{synapse=\"{s}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "axon_request_duration_seconds_count{{synapse=\"{s}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP axon_requests_in_flight Requests being processed.\n");
        out.push_str("# TYPE axon_requests_in_flight gauge\n");
        let _ = writeln!(out, "axon_requests_in_flight {in_flight}");
        out.push_str("# HELP axon_open_connections Open client connections.\n");
        out.push_str("# TYPE axon_open_connections gauge\n");
        let _ = writeln!(out, "axon_open_connections {connections}");
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.record("Dummy", 200, Duration::from_millis(3));
        m.record("Dummy", 401, Duration::from_millis(30));
        let text = m.render(1, 2);
        assert!(text.contains("axon_requests_total{synapse=\"Dummy\",status=\"200\"} 1"));
        assert!(
            text.contains("axon_request_duration_seconds_bucket{synapse=\"Dummy\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("axon_request_duration_seconds_bucket{synapse=\"Dummy\",le=\"0.05\"} 2")
        );
        assert!(text.contains("axon_request_duration_seconds_count{synapse=\"Dummy\"} 2"));
        assert!(text.contains("axon_open_connections 2"));
    }
}
