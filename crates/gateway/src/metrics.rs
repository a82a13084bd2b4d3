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

    /// The exposition text; `upstreams` is (name, kind, up, starts) for each upstream.
    pub fn render(&self, upstreams: &[(String, &'static str, bool, u64)]) -> String {
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
        for (u, kind, up, _) in upstreams {
            s.push_str(&format!(
                "mandate_gateway_upstream_up{{upstream=\"{u}\",transport=\"{kind}\"}} {}\n",
                u8::from(*up)
            ));
        }
        s.push_str("# HELP mandate_gateway_upstream_starts_total Times a stdio upstream was started (restarts included).\n");
        s.push_str("# TYPE mandate_gateway_upstream_starts_total counter\n");
        for (u, kind, _, starts) in upstreams {
            if *kind == "stdio" {
                s.push_str(&format!(
                    "mandate_gateway_upstream_starts_total{{upstream=\"{u}\"}} {starts}\n"
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_and_bucketed() {
        let m = Metrics::default();
        m.call("fs", "allowed", Duration::from_micros(700));
        m.call("fs", "denied", Duration::from_millis(20));
        let text = m.render(&[("fs".into(), "stdio", true, 2)]);
        assert!(text.contains("mandate_gateway_calls_total{upstream=\"fs\",outcome=\"allowed\"} 1"));
        assert!(
            text.contains("mandate_gateway_call_seconds_bucket{upstream=\"fs\",le=\"0.001\"} 1")
        );
        assert!(
            text.contains("mandate_gateway_call_seconds_bucket{upstream=\"fs\",le=\"0.025\"} 2")
        );
        assert!(text.contains("mandate_gateway_upstream_starts_total{upstream=\"fs\"} 2"));
    }
}
