//! What an operator declares for one stdio upstream (`[upstream.NAME.sandbox]`), and the same
//! checked: absolute paths, `host:port` destinations and limits within their bounds. Pure: nothing
//! here touches the filesystem or the kernel.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Most paths, or destinations, one upstream may declare.
pub const MAX_DECLARED: usize = 64;
/// Default address space of each sandboxed process (RLIMIT_AS): Node.js needs about 1 GiB of
/// reservations to start, so 2 GiB leaves it room to work.
pub const DEFAULT_MEMORY: u64 = 2 << 30;
/// Least memory accepted: below it no interpreter starts.
pub const MIN_MEMORY: u64 = 64 << 20;
/// Default number of tasks (processes and threads) in one sandbox.
pub const DEFAULT_PROCESSES: u64 = 256;
/// Default open files per process.
pub const DEFAULT_OPEN_FILES: u64 = 1024;
/// Default size of the private home (a tmpfs of its own where the kernel lets the sandbox mount
/// one): what a tool can write there, in memory, before it gets `ENOSPC`.
pub const DEFAULT_DISK: u64 = 512 << 20;
/// Default CPU time of each sandboxed process (RLIMIT_CPU), in seconds: an hour of CPU, after
/// which the process is killed and the upstream restarted.
pub const DEFAULT_CPU_SECONDS: u64 = 3600;

/// `[upstream.NAME.sandbox]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Paths the upstream may read (files or directories, recursively), beyond the system's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Paths the upstream may read and write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Destinations (`host:port`) it may open TCP connections to. Empty: no network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// Address space of each process (`512MiB`, `2GiB`; default 2GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Processes and threads, all told (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Open files per process (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// CPU time of each process (`30m`, `2h`; default 1h), after which it is killed and restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Size of the private home and temporary directory (`256MiB`; default 512MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
}

/// A TCP destination an upstream declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The host as declared (a name or an address).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Resource limits of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// RLIMIT_AS of each process, in bytes.
    pub memory: u64,
    /// Tasks (processes and threads) in the sandbox.
    pub processes: u64,
    /// RLIMIT_NOFILE of each process.
    pub open_files: u64,
    /// RLIMIT_CPU of each process, in seconds.
    pub cpu_seconds: u64,
    /// Size of the private home, in bytes.
    #[serde(default = "default_disk")]
    pub disk: u64,
}

fn default_disk() -> u64 {
    DEFAULT_DISK
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            processes: DEFAULT_PROCESSES,
            open_files: DEFAULT_OPEN_FILES,
            cpu_seconds: DEFAULT_CPU_SECONDS,
            disk: DEFAULT_DISK,
        }
    }
}

/// A sandbox configuration checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Declared read-only paths.
    pub read: Vec<PathBuf>,
    /// Declared read-write paths.
    pub write: Vec<PathBuf>,
    /// Declared TCP destinations (empty: no network).
    pub network: Vec<Destination>,
    /// Limits.
    pub limits: Limits,
}

impl Policy {
    /// The TCP ports connections may go to (the kernel filters by port: see docs/sandbox.md).
    pub fn ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.network.iter().map(|d| d.port).collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// One line per setting, as `mandate upstream show` prints them.
    pub fn describe(&self) -> Vec<(String, String)> {
        let list = |v: &[PathBuf]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let network = if self.network.is_empty() {
            "none (a network namespace of its own)".to_string()
        } else {
            let d: Vec<String> = self.network.iter().map(|d| d.to_string()).collect();
            let ports: Vec<String> = self.ports().iter().map(|p| p.to_string()).collect();
            format!(
                "{} (TCP to port {} only; the kernel filters by port, not host)",
                d.join(", "),
                ports.join(", ")
            )
        };
        vec![
            ("read".into(), list(&self.read)),
            ("write".into(), list(&self.write)),
            ("network".into(), network),
            ("memory".into(), format_size(self.limits.memory)),
            ("processes".into(), self.limits.processes.to_string()),
            ("open_files".into(), self.limits.open_files.to_string()),
            (
                "cpu".into(),
                mandate_core::duration::format_duration(self.limits.cpu_seconds as i64),
            ),
            (
                "disk".into(),
                format!("{} (private home)", format_size(self.limits.disk)),
            ),
        ]
    }
}

/// Why a sandbox configuration was refused: one line that says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox: {0}")]
pub struct PolicyError(pub String);

impl SandboxConfig {
    /// Checks the configuration.
    pub fn check(&self) -> Result<Policy, PolicyError> {
        let err = |m: String| Err(PolicyError(m));
        for (what, list) in [
            ("read", &self.read),
            ("write", &self.write),
            ("network", &self.network),
        ] {
            if list.len() > MAX_DECLARED {
                return err(format!("at most {MAX_DECLARED} entries in `{what}`"));
            }
        }
        let read = self
            .read
            .iter()
            .map(|p| check_path(p, "read"))
            .collect::<Result<Vec<_>, _>>()?;
        let write = self
            .write
            .iter()
            .map(|p| check_path(p, "write"))
            .collect::<Result<Vec<_>, _>>()?;
        let network = self
            .network
            .iter()
            .map(|d| parse_destination(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut limits = Limits::default();
        if let Some(m) = &self.memory {
            limits.memory = parse_size(m)?;
            if !(MIN_MEMORY..=1 << 40).contains(&limits.memory) {
                return err(format!(
                    "memory = {m:?}: give between 64MiB and 1TiB (the address space of each process)"
                ));
            }
        }
        if let Some(n) = self.processes {
            if !(1..=65_536).contains(&n) {
                return err(format!("processes = {n}: give 1 to 65536"));
            }
            limits.processes = n;
        }
        if let Some(n) = self.open_files {
            if !(16..=1 << 20).contains(&n) {
                return err(format!("open_files = {n}: give 16 to 1048576"));
            }
            limits.open_files = n;
        }
        if let Some(d) = &self.disk {
            limits.disk = parse_size(d)?;
            if !(1 << 20..=1 << 40).contains(&limits.disk) {
                return err(format!("disk = {d:?}: give between 1MiB and 1TiB"));
            }
        }
        if let Some(c) = &self.cpu {
            let secs = mandate_core::duration::parse_duration(c)
                .map_err(|e| PolicyError(format!("cpu: {e}")))?;
            if secs > 366 * 86_400 {
                return err(format!("cpu = {c:?}: give at most 366d"));
            }
            limits.cpu_seconds = secs as u64;
        }
        Ok(Policy {
            read,
            write,
            network,
            limits,
        })
    }
}

/// An absolute path with no `.` or `..` components (so what is shown is what is granted).
fn check_path(p: &str, what: &str) -> Result<PathBuf, PolicyError> {
    use std::path::Component;
    let path = PathBuf::from(p);
    if !path.is_absolute() {
        return Err(PolicyError(format!(
            "{what} path {p:?} is not absolute: write the full path (/srv/repo)"
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(PolicyError(format!(
            "{what} path {p:?} has `.` or `..` in it: write the path it means"
        )));
    }
    if path.parent().is_none() {
        return Err(PolicyError(format!(
            "{what} path \"/\" would open the whole machine (the server's keys too): name the directories the upstream needs"
        )));
    }
    if p.chars().any(char::is_control) {
        return Err(PolicyError(format!(
            "{what} path {p:?} has control characters in it"
        )));
    }
    Ok(path)
}

/// `host:port`, `[v6]:port`.
pub fn parse_destination(s: &str) -> Result<Destination, PolicyError> {
    let bad = || {
        PolicyError(format!(
            "network destination {s:?} is not HOST:PORT (api.github.com:443, 10.0.0.5:5432, [::1]:8080)"
        ))
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && (host.contains(':')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !valid_host {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(Destination {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `512MiB`, `2GiB`, `1G`, `65536` (bytes).
pub fn parse_size(s: &str) -> Result<u64, PolicyError> {
    let bad = || {
        PolicyError(format!(
            "size {s:?} is not a whole number with an optional unit (512MiB, 2GiB, 1G)"
        ))
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        "T" | "TB" | "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// The largest exact unit: `2GiB`, `512MiB`, `1000B`.
pub fn format_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_apply_when_nothing_is_declared() {
        let p = SandboxConfig::default().check().unwrap();
        assert_eq!(p.limits, Limits::default());
        assert!(p.network.is_empty() && p.read.is_empty() && p.write.is_empty());
    }

    #[test]
    fn relative_dotted_and_root_paths_are_refused_with_a_reason() {
        for (p, why) in [
            ("srv/repo", "not absolute"),
            ("/srv/../etc", "`..`"),
            ("/", "whole machine"),
        ] {
            let c = SandboxConfig {
                read: vec![p.into()],
                ..Default::default()
            };
            let e = c.check().unwrap_err().0;
            assert!(e.contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn destinations_parse_names_addresses_and_bracketed_ipv6() {
        assert_eq!(
            parse_destination("API.github.com:443").unwrap(),
            Destination {
                host: "api.github.com".into(),
                port: 443
            }
        );
        assert_eq!(parse_destination("[::1]:8080").unwrap().port, 8080);
        assert_eq!(
            parse_destination("[::1]:8080").unwrap().to_string(),
            "[::1]:8080"
        );
        for bad in [
            "github.com",
            ":443",
            "h:0",
            "h:65536",
            "[zz]:1",
            "a b:1",
            "h:-1",
        ] {
            assert!(parse_destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_outside_their_bounds_are_refused() {
        let c = |f: fn(&mut SandboxConfig)| {
            let mut c = SandboxConfig::default();
            f(&mut c);
            c.check()
        };
        assert!(c(|c| c.memory = Some("1MiB".into())).is_err());
        assert!(c(|c| c.memory = Some("lots".into())).is_err());
        assert!(c(|c| c.processes = Some(0)).is_err());
        assert!(c(|c| c.open_files = Some(1)).is_err());
        assert!(c(|c| c.cpu = Some("forever".into())).is_err());
        let p = c(|c| {
            c.memory = Some("512MiB".into());
            c.processes = Some(8);
            c.cpu = Some("30m".into());
        })
        .unwrap();
        assert_eq!(p.limits.memory, 512 << 20);
        assert_eq!(p.limits.processes, 8);
        assert_eq!(p.limits.cpu_seconds, 1800);
    }

    #[test]
    fn more_than_the_bound_of_entries_is_refused() {
        let c = SandboxConfig {
            write: (0..=MAX_DECLARED).map(|i| format!("/d{i}")).collect(),
            ..Default::default()
        };
        assert!(c.check().unwrap_err().0.contains("at most"));
    }

    #[test]
    fn describe_names_the_port_filter_honestly() {
        let c = SandboxConfig {
            network: vec!["api.github.com:443".into()],
            ..Default::default()
        };
        let d = c.check().unwrap().describe();
        let net = &d.iter().find(|(k, _)| k == "network").unwrap().1;
        assert!(
            net.contains("port 443") && net.contains("not host"),
            "{net}"
        );
    }

    proptest! {
        #[test]
        fn sizes_round_trip_through_their_format(n in 1u64..(1 << 50)) {
            prop_assert_eq!(parse_size(&format_size(n)).unwrap(), n);
        }
    }
}
