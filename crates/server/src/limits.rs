//! The bounds on what one connection, one source or one request can make the server hold,
//! compute or write. Every limit here is listed with where it is enforced in docs/security.md;
//! `server.toml`'s `[limits]` section sets them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Request bodies larger than this are refused before parsing.
pub const MAX_BODY: usize = 64 * 1024;
/// Most evaluations in one AuthZEN batch.
pub const MAX_BATCH_EVALUATIONS: usize = 64;
/// Most evaluation time one AuthZEN batch may use; items left when it is spent are denied.
pub const BATCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// The server's limits. `Limits::default()` is what `mandate up` runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections open at once; at the bound, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Most connections one source may hold open; more are closed as soon as they are accepted,
    /// so that one client cannot take every slot.
    pub max_connections_per_source: usize,
    /// Most connections one network (an IPv4 /24, an IPv6 /48) may hold open, so that a client
    /// with a few addresses cannot take every slot either.
    pub max_connections_per_network: usize,
    /// A connection must finish sending a request's headers within this time of being accepted
    /// or of its previous response (so this is also the keep-alive idle time).
    pub header_timeout: Duration,
    /// A request must be read and answered within this time (the revocation feed's long poll
    /// excepted, which holds at most its own `wait`).
    pub request_timeout: Duration,
    /// A connection with no request in progress that moves no byte for this long is closed (a
    /// client that stops reading its response).
    pub idle_timeout: Duration,
    /// Requests per second one source may make, sustained (0 turns per-source limits off).
    pub per_source_rps: u32,
    /// Requests one source may make in a burst above the sustained rate.
    pub per_source_burst: u32,
    /// Refusals of unauthenticated requests are written to the audit log as one event per
    /// source per this window, with a count.
    pub refusal_window: Duration,
    /// A request body must have arrived within this time of the handler starting to read it.
    pub body_timeout: Duration,
    /// Most revocation feed long polls held at once; a poll over this (or over
    /// `max_long_polls_per_source`) is answered at once with `retry_after_ms`, so that waiting
    /// requests cannot take every connection.
    pub max_long_polls: usize,
    /// Most revocation feed long polls one source may hold at once.
    pub max_long_polls_per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_source: 64,
            max_connections_per_network: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            per_source_rps: 100,
            per_source_burst: 200,
            refusal_window: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_long_polls: 256,
            max_long_polls_per_source: 4,
        }
    }
}

/// Where a request comes from, as limits and refusal counts see it: an IPv4 address, or the /64
/// network of an IPv6 address (one host usually holds a whole /64, so counting addresses would
/// let it multiply itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a peer address.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let mut seg = v6.segments();
                    for s in &mut seg[4..] {
                        *s = 0;
                    }
                    Source(IpAddr::V6(seg.into()))
                }
            },
        }
    }
}

impl Source {
    /// The wider network the source is in (an IPv4 /24, an IPv6 /48) as a source of its own, for
    /// bounding many sources together.
    pub fn network_source(&self) -> Source {
        match self.0 {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Source(IpAddr::V4([o[0], o[1], o[2], 0].into()))
            }
            IpAddr::V6(v6) => {
                let mut seg = v6.segments();
                for s in &mut seg[3..] {
                    *s = 0;
                }
                Source(IpAddr::V6(seg.into()))
            }
        }
    }

    /// The wider network the source is in (an IPv4 /24, an IPv6 /48), for counting many sources
    /// together.
    pub fn network(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.0/24", o[0], o[1], o[2])
            }
            IpAddr::V6(v6) => {
                let mut seg = v6.segments();
                for s in &mut seg[3..] {
                    *s = 0;
                }
                format!("{}/48", std::net::Ipv6Addr::from(seg))
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Things held per source (connections, long polls), bounded in total and per source. A taken
/// [`Slot`] is given back when dropped.
#[derive(Debug)]
pub struct Slots {
    max_total: usize,
    max_per_source: usize,
    held: Mutex<(usize, HashMap<Source, usize>)>,
}

/// One thing held by a source; released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    source: Source,
}

impl Slots {
    /// At most `max_total` held at once, `max_per_source` by one source.
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max_total,
            max_per_source,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for `source`, unless the source or everyone together holds the most they may.
    pub fn try_take(self: &Arc<Self>, source: Source) -> Option<Slot> {
        let mut held = self.held.lock().expect("slots lock");
        let (total, per) = &mut *held;
        let n = per.entry(source).or_default();
        if *total >= self.max_total || *n >= self.max_per_source {
            if *n == 0 {
                per.remove(&source);
            }
            return None;
        }
        *n += 1;
        *total += 1;
        Some(Slot {
            slots: self.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().expect("slots lock");
        let (total, per) = &mut *held;
        *total -= 1;
        if let Some(n) = per.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_source_and_in_total_and_given_back_on_drop() {
        let slots = Slots::new(3, 2);
        let a = Source::of("10.0.0.1".parse().unwrap());
        let b = Source::of("10.0.0.2".parse().unwrap());
        let a1 = slots.try_take(a).unwrap();
        let _a2 = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none(), "per source");
        let _b1 = slots.try_take(b).unwrap();
        assert!(slots.try_take(b).is_none(), "in total");
        drop(a1);
        assert!(slots.try_take(b).is_some());
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped).to_string(), "127.0.0.1");
        assert_eq!(Source::of(mapped).network(), "127.0.0.0/24");
        assert_eq!(Source::of(a).network(), "2001:db8:1::/48");
    }
}
