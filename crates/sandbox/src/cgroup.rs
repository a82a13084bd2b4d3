//! A pids cgroup per sandbox, for a gateway running as root: the kernel does not apply
//! RLIMIT_NPROC to root's user id (whatever namespace it is in), so the number of processes is
//! bounded by `pids.max` instead. cgroup v1 (a `pids` hierarchy) and v2 (the unified hierarchy,
//! where the gateway's cgroup may hand the controller down) are both used as found; where
//! neither can be written, sandboxed upstreams do not start (fail closed) and the error says to
//! run the gateway as an unprivileged user, which is the better fix anyway.
//!
//! The cgroup also makes stopping reliable: every process in it is killed when the upstream
//! stops, including any that left the process group (`setsid`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A cgroup made for one sandboxed child: removed (its processes killed) when dropped.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Makes a cgroup bounded to `max` tasks, for upstream `name`.
    pub fn create(name: &str, max: u64) -> Result<Cgroup, String> {
        let base = base()?;
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep(&base));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("mandate-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let cg = Cgroup { dir };
        let max_file = cg.dir.join("pids.max");
        std::fs::write(&max_file, max.to_string()).map_err(|e| {
            format!(
                "cannot bound {} (is the pids controller enabled for it?): {e}",
                max_file.display()
            )
        })?;
        Ok(cg)
    }

    /// The cgroup's directory (the trampoline joins it by writing `cgroup.procs`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills every process in the cgroup; whether it was empty already.
    pub fn kill_all(&self) -> bool {
        // cgroup v2 (5.14+) kills the whole tree at once; otherwise each process by pid.
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) else {
            return true;
        };
        let mut empty = true;
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            empty = false;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        empty
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.kill_all() && std::fs::remove_dir(&self.dir).is_ok() {
            return;
        }
        // A process forking as fast as it can may add a member between reading the list and
        // the kills: the list is read and killed again until the cgroup is empty and removed
        // (its `pids.max` bounds each round). On a thread of its own, never the caller's (an
        // async runtime's worker).
        let cg = Cgroup {
            dir: self.dir.clone(),
        };
        let _ = std::thread::Builder::new()
            .name("cgroup-remove".into())
            .spawn(move || {
                for _ in 0..2000 {
                    if cg.kill_all() && std::fs::remove_dir(&cg.dir).is_ok() {
                        break;
                    }
                    if !cg.dir.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                // Its work is done either way: the copy must not start another thread.
                std::mem::forget(cg);
            });
    }
}

/// Removes the cgroups of gateways that are gone (killed before they could clean up): their
/// names end in `-PID-N`, and a PID that no longer runs left them. Anything still in one (a tool
/// its gateway left behind) is killed first.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mandate-") else {
            continue;
        };
        let mut parts = rest.rsplit('-');
        let (_, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && pid != std::process::id() as i32 {
            drop(Cgroup { dir: e.path() });
        }
    }
}

/// Where this process's pids cgroup is, writable.
fn base() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    // v1: "N:pids:/path" under a `pids` hierarchy.
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "pids") {
            for mount in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids,cpuacct"] {
                let dir = Path::new(mount).join(path.trim_start_matches('/'));
                if dir.join("cgroup.procs").exists() {
                    return Ok(dir);
                }
            }
        }
    }
    // v2: "0::/path" under the unified hierarchy, with pids handed down to children.
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let dir = Path::new(mount).join(path.trim_start_matches('/'));
            let handed = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                .map(|s| s.split_whitespace().any(|c| c == "pids"))
                .unwrap_or(false);
            if handed {
                return Ok(dir);
            }
        }
    }
    Err("no pids cgroup this process can write was found".into())
}
