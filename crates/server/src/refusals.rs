//! Refusals and how they reach the audit log.
//!
//! A refused request from a caller that did not authenticate names nobody: one durable event per
//! request would let a stranger grow the log at line rate. Such refusals are counted in memory per
//! source ([`crate::limits::Source`]) and written as **one event per source per window** (the
//! `refusal_window` limit, 10 s by default) carrying the count, the actions and codes refused, the
//! principals the requests claimed to be and a few sample reasons. A window counts at most
//! [`MAX_SOURCES`] sources apart; past that, new sources are counted by network (IPv4 /24, IPv6
//! /48, at most [`MAX_NETWORKS`]) and then all together as `other`, so that many addresses cannot
//! multiply the events: at most 129 a window, about 1.5 KiB each. A refusal after authentication
//! names its caller and is written as its own event.
//!
//! [`audit_refusals`] is the one layer that makes sure every refused API call is recorded: the
//! authentication extractors record their own refusals and mark the response [`Audited`];
//! anything else the handlers or axum refuse is recorded by the layer, for the caller the
//! extractor found (kept in a [`CallerSlot`]) or as unauthenticated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mandate_audit::event::{kinds, Event};

use crate::limits::Source;
use crate::state::AppState;

/// Most sources counted apart in one window.
pub const MAX_SOURCES: usize = 64;
/// Most networks counted apart in one window once [`MAX_SOURCES`] are; the rest is `other`.
pub const MAX_NETWORKS: usize = 64;
/// Distinct actions, codes and claimed principals kept per source and window.
const MAX_KINDS: usize = 8;
/// Sample reasons kept per source and window.
const MAX_SAMPLES: usize = 2;

/// One unauthenticated refusal.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// What was asked (`token.request`, `admin.request`, `pdp.request`, ...).
    pub action: &'a str,
    /// The reason code (`invalid_client`, `invalid_token`, `rate_limited`, ...).
    pub code: &'a str,
    /// The description the caller was given.
    pub reason: &'a str,
    /// The principal the request claimed to be, if it named a valid one.
    pub claimed: Option<&'a str>,
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    actions: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
    claimed: BTreeSet<String>,
    samples: Vec<String>,
}

impl Tally {
    fn add(&mut self, r: &Refused<'_>, now_ms: i64) {
        if self.count == 0 {
            self.first_ms = now_ms;
        }
        self.count += 1;
        self.last_ms = now_ms;
        bump(&mut self.actions, r.action);
        bump(&mut self.codes, r.code);
        if let Some(c) = r.claimed {
            if self.claimed.len() < MAX_KINDS {
                self.claimed.insert(c.to_string());
            }
        }
        if self.samples.len() < MAX_SAMPLES && !self.samples.iter().any(|s| s == r.reason) {
            self.samples.push(r.reason.chars().take(200).collect());
        }
    }
}

/// Counts `key` in a map bounded to [`MAX_KINDS`] keys (the rest count under `other`).
fn bump(m: &mut BTreeMap<String, u64>, key: &str) {
    let key = if m.contains_key(key) || m.len() < MAX_KINDS {
        key
    } else {
        "other"
    };
    *m.entry(key.chars().take(64).collect()).or_default() += 1;
}

/// Unauthenticated refusals of the current window.
#[derive(Debug, Default)]
pub struct RefusalCounter {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    sources: HashMap<Option<Source>, Tally>,
    networks: HashMap<String, Tally>,
    overflow: Tally,
}

impl RefusalCounter {
    /// Counts one refusal from `source` (None when the peer address is unknown).
    pub fn record(&self, source: Option<Source>, r: Refused<'_>) {
        let now = crate::audit::now_ms();
        let mut w = self.window.lock().expect("refusal counter lock");
        if w.sources.len() < MAX_SOURCES || w.sources.contains_key(&source) {
            w.sources.entry(source).or_default().add(&r, now);
            return;
        }
        let network = source.map_or_else(|| "unknown".to_string(), |s| s.network());
        if w.networks.len() < MAX_NETWORKS || w.networks.contains_key(&network) {
            w.networks.entry(network).or_default().add(&r, now);
            return;
        }
        w.overflow.add(&r, now);
    }

    /// Ends the window: one event per source counted in it.
    pub fn take(&self) -> Vec<Event> {
        let w = std::mem::take(&mut *self.window.lock().expect("refusal counter lock"));
        let mut out: Vec<Event> = w
            .sources
            .into_iter()
            .map(|(s, t)| event(s.map(|s| s.to_string()).as_deref().unwrap_or("unknown"), t))
            .collect();
        out.extend(w.networks.into_iter().map(|(n, t)| event(&n, t)));
        if w.overflow.count > 0 {
            out.push(event("other", w.overflow));
        }
        out
    }
}

fn event(source: &str, t: Tally) -> Event {
    let mut ev = crate::audit::new_event(
        kinds::REQUEST_REFUSED,
        "unauthenticated",
        "refusals.unauthenticated",
    );
    ev.resource = Some(source.to_string());
    ev.result = "refused".into();
    ev.error = t
        .codes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, _)| c.clone());
    ev.reasons = t.samples;
    let d = &mut ev.details;
    d.insert("source".into(), source.into());
    d.insert("count".into(), t.count.into());
    d.insert(
        "first".into(),
        mandate_audit::event::rfc3339_millis(t.first_ms).into(),
    );
    d.insert(
        "last".into(),
        mandate_audit::event::rfc3339_millis(t.last_ms).into(),
    );
    d.insert("actions".into(), serde_json::json!(t.actions));
    d.insert("codes".into(), serde_json::json!(t.codes));
    if !t.claimed.is_empty() {
        d.insert("claimed_clients".into(), serde_json::json!(t.claimed));
    }
    d.insert("authenticated".into(), false.into());
    ev
}

/// Writes the window's refusal events every `refusal_window` until stopped.
pub async fn flush_every_window(st: Arc<AppState>) {
    let mut tick = tokio::time::interval(st.cfg.limits.refusal_window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        flush(&st).await;
    }
}

/// Writes the refusal events counted so far (also at shutdown).
pub async fn flush(st: &AppState) {
    for ev in st.refusals.take() {
        // A refusal stays a refusal when the log cannot take its record; `audit` logs the failure.
        let _ = st.audit(&ev).await;
    }
}

/// Marks a response whose refusal is already recorded (by an extractor or an audited change).
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// The code and description of a refusal, attached to the response for [`audit_refusals`].
#[derive(Debug, Clone)]
pub struct RefusalInfo {
    /// Reason code.
    pub code: &'static str,
    /// Description given to the caller.
    pub description: String,
}

/// Who the authentication extractor found, for [`audit_refusals`] (set once per request).
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(pub Arc<std::sync::OnceLock<CallerSummary>>);

/// What an event records of an authenticated caller.
#[derive(Debug, Clone)]
pub struct CallerSummary {
    /// The holder of the mandate.
    pub principal: String,
    /// Its chain, root first.
    pub chain: Vec<String>,
    /// The mandate's jti.
    pub jti: String,
}

/// The kind of event a refused call of a router is recorded as.
#[derive(Debug, Clone, Copy)]
pub struct RefusalKind {
    /// Event kind for refusals after authentication.
    pub kind: &'static str,
    /// The action recorded (`admin.request`, `pdp.request`).
    pub action: &'static str,
}

/// The layer that records every refused call of the routes it wraps (see the module doc).
pub async fn audit_refusals(
    State((st, what)): State<(Arc<AppState>, RefusalKind)>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let source = crate::pdp::peer_source(req.extensions());
    let target = format!("{} {}", req.method(), req.uri().path());
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<Audited>().is_some()
    {
        return res;
    }
    let (code, description) = match res.extensions().get::<RefusalInfo>() {
        Some(i) => (i.code, i.description.clone()),
        None => (
            "invalid_request",
            status.canonical_reason().unwrap_or("refused").to_string(),
        ),
    };
    match slot.0.get() {
        Some(who) => {
            let mut ev = crate::audit::new_event(what.kind, &who.principal, what.action);
            ev.chain = who.chain.clone();
            ev.jti = Some(who.jti.clone());
            ev.resource = Some(target.chars().take(200).collect());
            ev.result = if status.is_server_error() {
                "failed"
            } else {
                "refused"
            }
            .into();
            ev.error = Some(code.to_string());
            ev.reasons = vec![description];
            ev.details.insert("authenticated".into(), true.into());
            let _ = st.audit(&ev).await;
        }
        None => st.refusals.record(
            source,
            Refused {
                action: what.action,
                code,
                reason: &description,
                claimed: None,
            },
        ),
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r<'a>(code: &'a str, claimed: Option<&'a str>) -> Refused<'a> {
        Refused {
            action: "token.request",
            code,
            reason: "bad",
            claimed,
        }
    }

    #[test]
    fn refusals_are_one_event_per_source_with_a_count() {
        let c = RefusalCounter::default();
        let a = Some(Source::of("10.0.0.1".parse().unwrap()));
        let b = Some(Source::of("10.0.0.2".parse().unwrap()));
        for _ in 0..1000 {
            c.record(a, r("invalid_client", Some("agent:x")));
        }
        c.record(b, r("invalid_request", None));
        let mut evs = c.take();
        evs.sort_by(|x, y| x.resource.cmp(&y.resource));
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].details["count"], 1000);
        assert_eq!(
            evs[0].details["claimed_clients"],
            serde_json::json!(["agent:x"])
        );
        assert_eq!(evs[0].error.as_deref(), Some("invalid_client"));
        assert_eq!(evs[0].principal, "unauthenticated");
        assert_eq!(evs[1].details["count"], 1);
        // The window is over: nothing is counted twice.
        assert!(c.take().is_empty());
    }

    #[test]
    fn the_counter_is_bounded_in_sources_networks_kinds_and_samples() {
        let c = RefusalCounter::default();
        for i in 0..256u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            c.record(Some(Source::of(ip.into())), r("x", None));
        }
        let one = Some(Source::of("10.9.9.9".parse().unwrap()));
        for i in 0..100 {
            let code = format!("code{i}");
            let who = format!("agent:a{i}");
            c.record(
                one,
                Refused {
                    action: "a",
                    code: &code,
                    reason: &code,
                    claimed: Some(&who),
                },
            );
        }
        let evs = c.take();
        // 64 sources apart, then the rest of 10.0.0.0/24, and 10.9.9.0/24, by network.
        assert_eq!(evs.len(), MAX_SOURCES + 2);
        let net = |n: &str| {
            evs.iter()
                .find(|e| e.resource.as_deref() == Some(n))
                .unwrap_or_else(|| panic!("no event for {n}"))
        };
        assert_eq!(net("10.0.0.0/24").details["count"], 256 - 64);
        let nine = net("10.9.9.0/24");
        assert_eq!(nine.details["count"], 100);
        assert!(nine.details["codes"].as_object().unwrap().len() <= MAX_KINDS + 1);
        assert!(nine.details["claimed_clients"].as_array().unwrap().len() <= MAX_KINDS);
        assert!(nine.reasons.len() <= MAX_SAMPLES);
        // Many networks: at most MAX_NETWORKS of them, then `other`; every refusal is counted.
        let c = RefusalCounter::default();
        for i in 0..20_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i * 256);
            c.record(Some(Source::of(ip.into())), r("x", None));
        }
        let evs = c.take();
        assert_eq!(evs.len(), MAX_SOURCES + MAX_NETWORKS + 1);
        let total: u64 = evs
            .iter()
            .map(|e| e.details["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 20_000);
    }
}
