//! What this kernel offers, read without changing the calling process (the gateway is threaded,
//! so it cannot itself try `unshare`): the Landlock ABI, seccomp filtering, user namespaces, and
//! how the number of processes can be bounded. `mandate sandbox check` prints it and then proves
//! it with a real sandboxed child (see [`crate::selftest`]).

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope, ABI,
};
use serde::Serialize;

/// The mechanisms found.
#[derive(Debug, Clone, Serialize)]
pub struct Support {
    /// The highest Landlock ABI usable (0: none).
    pub landlock_abi: u8,
    /// Seccomp filters (`SECCOMP_MODE_FILTER`).
    pub seccomp: bool,
    /// Why user namespaces cannot be made, if a setting forbids them (required only when the
    /// gateway runs as root; otherwise they add a network namespace when available).
    pub user_namespaces: Result<(), String>,
    /// The gateway runs as root, where the kernel does not apply RLIMIT_NPROC.
    pub root: bool,
}

impl Support {
    /// Reads the running kernel's support.
    pub fn probe() -> Support {
        Support {
            landlock_abi: landlock_abi(),
            seccomp: seccomp(),
            user_namespaces: user_namespaces(),
            root: nix::unistd::geteuid().is_root(),
        }
    }

    /// Whether a sandbox with (`network`) or without declared destinations can be made, or the
    /// first missing mechanism and how to proceed.
    pub fn require(&self, network: bool) -> Result<(), String> {
        let off =
            "or set sandbox = \"off\" for this upstream (it then runs with the gateway's rights)";
        if self.landlock_abi == 0 {
            return Err(format!("Landlock is not available on this kernel: use Linux 5.13 or later with Landlock enabled (CONFIG_SECURITY_LANDLOCK, `landlock` in the lsm= boot parameter), {off}"));
        }
        if network && self.landlock_abi < 4 {
            return Err(format!("Landlock TCP rules need Linux 6.7 or later (Landlock ABI 4; this kernel has ABI {}): declare no network (the upstream then gets a network namespace of its own), {off}", self.landlock_abi));
        }
        if !self.seccomp {
            return Err(format!(
                "seccomp filtering is not available: use a kernel built with CONFIG_SECCOMP_FILTER, {off}"
            ));
        }
        if let (true, Err(e)) = (self.root, &self.user_namespaces) {
            return Err(format!("user namespaces are not available ({e}), and a gateway running as root needs them to drop its capabilities in the child: enable them or run the gateway as an unprivileged user, {off}"));
        }
        Ok(())
    }
}

/// The highest ABI this code asks for that the kernel fully supports.
fn landlock_abi() -> u8 {
    for (n, abi) in [
        (6, ABI::V6),
        (5, ABI::V5),
        (4, ABI::V4),
        (3, ABI::V3),
        (2, ABI::V2),
        (1, ABI::V1),
    ] {
        let made = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| {
                if n >= 4 {
                    r.handle_access(AccessNet::from_all(abi))
                } else {
                    Ok(r)
                }
            })
            .and_then(|r| {
                if n >= 6 {
                    r.scope(Scope::from_all(abi))
                } else {
                    Ok(r)
                }
            })
            .and_then(landlock::Ruleset::create);
        if made.is_ok() {
            return n;
        }
    }
    0
}

fn seccomp() -> bool {
    std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists()
        && std::fs::read_to_string("/proc/self/status")
            .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
            .unwrap_or(false)
}

fn read_number(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn user_namespaces() -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    if read_number("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Err("sysctl user.max_user_namespaces is 0".into());
    }
    if !root && read_number("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Err("sysctl kernel.unprivileged_userns_clone is 0".into());
    }
    if !root && read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return Err("sysctl kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu's AppArmor restriction)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Support {
        Support {
            landlock_abi: 6,
            seccomp: true,
            user_namespaces: Ok(()),
            root: false,
        }
    }

    #[test]
    fn each_missing_mechanism_is_named_with_the_way_forward() {
        assert!(full().require(true).is_ok());
        type Case = (fn(&mut Support), bool, &'static str);
        let cases: [Case; 4] = [
            (|s| s.landlock_abi = 0, false, "Landlock is not available"),
            (
                |s| s.landlock_abi = 3,
                true,
                "Landlock TCP rules need Linux 6.7",
            ),
            (
                |s| s.seccomp = false,
                false,
                "seccomp filtering is not available",
            ),
            (
                |s| {
                    s.root = true;
                    s.user_namespaces = Err("sysctl user.max_user_namespaces is 0".into());
                },
                false,
                "user namespaces are not available",
            ),
        ];
        for (break_it, network, says) in cases {
            let mut s = full();
            break_it(&mut s);
            let e = s.require(network).unwrap_err();
            assert!(e.contains(says), "{e}");
            assert!(
                e.contains("sandbox = \"off\""),
                "the way round is named: {e}"
            );
        }
        // Without declared destinations, an old Landlock is enough (a network namespace).
        let mut s = full();
        s.landlock_abi = 3;
        assert!(s.require(false).is_ok());
        // An unprivileged gateway goes on without user namespaces.
        let mut s = full();
        s.user_namespaces = Err("sysctl kernel.unprivileged_userns_clone is 0".into());
        assert!(s.require(true).is_ok());
    }
}
