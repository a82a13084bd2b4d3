//! The bounds on what one connection, one source or one request can make the server hold,
//! compute or write. Every limit here is listed with where it is enforced in docs/security.md;
//! `server.toml`'s `[limits]` section sets them.

use std::net::IpAddr;
use std::time::Duration;

/// Request bodies larger than this are refused before parsing.
pub const MAX_BODY: usize = 64 * 1024;
/// Most evaluations in one AuthZEN batch.
pub const MAX_BATCH_EVALUATIONS: usize = 64;

/// The server's limits. `Limits::default()` is what `mandate up` runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections open at once; at the bound, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Most connections one source may hold open; more are closed as soon as they are accepted,
    /// so that one client cannot take every slot.
    pub max_connections_per_source: usize,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_source: 128,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            per_source_rps: 100,
            per_source_burst: 200,
            refusal_window: Duration::from_secs(10),
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

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
