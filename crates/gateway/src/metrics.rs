//! The gateway's Prometheus metrics: calls by upstream and outcome, call latency histograms by
//! upstream, and each upstream's health and restarts. Rendered in the text exposition format
//! (version 0.0.4) by [`Metrics::render`]; labels are upstream names (validated to `[a-z0-9_-]`),
//! so nothing needs escaping.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// Counters and histograms.
#[derive(Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// One call on `upstream` ended with `outcome` (`allowed`, `denied`, `approval`, `scope`,
    /// `unauthenticated`, `rate_limited`, `upstream_error`, `invalid`) after `took`.
    pub fn call(&self, upstream: &str, outcome: &'static str, took: Duration) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((upstream.to_string(), outcome))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(upstream.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.total += 1;
    }

    /// The exposition text, with each upstream's health.
    pub fn render(&self, upstreams: &[UpstreamHealth]) -> String {
        let mut s = String::new();
        s.push_str("# HELP mandate_gateway_calls_total Calls through the gateway, by upstream and outcome.\n");
        s.push_str("# TYPE mandate_gateway_calls_total counter\n");
        for ((u, o), n) in self.calls.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.push_str(&format!(
                "mandate_gateway_calls_total{{upstream=\"{u}\",outcome=\"{o}\"}} {n}\n"
            ));
        }
        s.push_str(
            "# HELP mandate_gateway_call_seconds Time from request to answer, by upstream.\n",
        );
        s.push_str("# TYPE mandate_gateway_call_seconds histogram\n");
        for (u, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                s.push_str(&format!(
                    "mandate_gateway_call_seconds_bucket{{upstream=\"{u}\",le=\"{b}\"}} {}\n",
                    h.counts[i]
                ));
            }
            s.push_str(&format!(
                "mandate_gateway_call_seconds_bucket{{upstream=\"{u}\",le=\"+Inf\"}} {}\n",
                h.total
            ));
            s.push_str(&format!(
                "mandate_gateway_call_seconds_sum{{upstream=\"{u}\"}} {}\n",
                h.sum
            ));
            s.push_str(&format!(
                "mandate_gateway_call_seconds_count{{upstream=\"{u}\"}} {}\n",
                h.total
            ));
        }
        s.push_str("# HELP mandate_gateway_upstream_up Whether the upstream can take calls (a stdio child is running).\n");
        s.push_str("# TYPE mandate_gateway_upstream_up gauge\n");
        for h in upstreams {
            s.push_str(&format!(
                "mandate_gateway_upstream_up{{upstream=\"{}\",transport=\"{}\"}} {}\n",
                h.name,
                h.kind,
                u8::from(h.up)
            ));
        }
        let stdio: Vec<&UpstreamHealth> = upstreams.iter().filter(|h| h.kind == "stdio").collect();
        for (name, help, kind, value) in [
            (
                "upstream_starts_total",
                "Times a stdio upstream was started (restarts included).",
                "counter",
                (|h: &UpstreamHealth| h.starts) as fn(&UpstreamHealth) -> u64,
            ),
            (
                "upstream_killed_total",
                "Times a stdio upstream was killed by a signal the gateway did not send (a sandbox limit such as CPU time, or a crash); each is restarted with backoff.",
                "counter",
                |h| h.killed,
            ),
            (
                "upstream_sandboxed",
                "Whether a stdio upstream runs in the sandbox (0: sandbox = \"off\", with the gateway's rights).",
                "gauge",
                |h| u64::from(h.sandboxed),
            ),
        ] {
            s.push_str(&format!("# HELP mandate_gateway_{name} {help}\n"));
            s.push_str(&format!("# TYPE mandate_gateway_{name} {kind}\n"));
            for h in &stdio {
                s.push_str(&format!(
                    "mandate_gateway_{name}{{upstream=\"{}\"}} {}\n",
                    h.name,
                    value(h)
                ));
            }
        }
        s
    }
}

/// One upstream's health, as `/metrics` reports it.
#[derive(Debug, Clone)]
pub struct UpstreamHealth {
    /// Its name.
    pub name: String,
    /// Its transport (`stdio`, `mcp-http`, `http`).
    pub kind: &'static str,
    /// Whether it can take calls.
    pub up: bool,
    /// stdio: times started.
    pub starts: u64,
    /// stdio: times killed by a signal the gateway did not send.
    pub killed: u64,
    /// stdio: whether it runs in the sandbox.
    pub sandboxed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_and_bucketed() {
        let m = Metrics::default();
        m.call("fs", "allowed", Duration::from_micros(700));
        m.call("fs", "denied", Duration::from_millis(20));
        let text = m.render(&[UpstreamHealth {
            name: "fs".into(),
            kind: "stdio",
            up: true,
            starts: 2,
            killed: 1,
            sandboxed: true,
        }]);
        assert!(text.contains("mandate_gateway_calls_total{upstream=\"fs\",outcome=\"allowed\"} 1"));
        assert!(
            text.contains("mandate_gateway_call_seconds_bucket{upstream=\"fs\",le=\"0.001\"} 1")
        );
        assert!(
            text.contains("mandate_gateway_call_seconds_bucket{upstream=\"fs\",le=\"0.025\"} 2")
        );
        assert!(text.contains("mandate_gateway_upstream_starts_total{upstream=\"fs\"} 2"));
        assert!(text.contains("mandate_gateway_upstream_killed_total{upstream=\"fs\"} 1"));
        assert!(text.contains("mandate_gateway_upstream_sandboxed{upstream=\"fs\"} 1"));
    }
}
