//! The sandbox every stdio upstream runs in, set up by Mandate itself with the kernel's own
//! mechanisms (no container runtime): Landlock for the filesystem and TCP ports, a user
//! namespace (and a network namespace when no destination is declared), a seccomp filter with
//! `no_new_privs`, resource limits, and only the configured environment.
//!
//! Because our crates forbid `unsafe` (so no `pre_exec` hook), the restrictions are applied by a
//! trampoline: the gateway starts its own binary as `mandate sandbox-exec SPEC`, which, while
//! still single-threaded, applies [`spec::Spec`] to itself and then `exec`s the upstream's
//! program. See `docs/sandbox.md` for what this guarantees and what it does not.
//!
//! - [`policy`]: `[upstream.NAME.sandbox]` as written, and checked (pure);
//! - [`launch`]: the gateway's side, resolving paths and building the trampoline's command;
//! - [`enter`]: the trampoline's side, applying the spec and executing the program;
//! - [`seccomp`]: the system call filter;
//! - [`probe`]: what the running kernel supports;
//! - [`cgroup`]: the pids cgroup that bounds processes when the gateway runs as root;
//! - [`selftest`]: `mandate sandbox check`'s proof, a sandboxed child attacking its sandbox.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cgroup;
pub mod enter;
pub mod launch;
pub mod policy;
pub mod probe;
pub mod seccomp;
pub mod selftest;
pub mod spec;

pub use launch::{prepare, set_launcher, LaunchError, Prepared, Request};
pub use policy::{Destination, Limits, Policy, PolicyError, SandboxConfig};

/// The start of what the trampoline writes before its one-line reason when it cannot sandbox;
/// the spec's nonce follows ([`spec::Spec::failure_mark`]).
pub const FAILURE_MARK: &str = "mandate sandbox ";

/// The trampoline: `mandate sandbox-exec SPEC`. Applies the spec and becomes the program; on any
/// failure prints the spec's failure mark and the reason on stderr and exits with 126, having
/// run nothing.
pub fn trampoline(spec_json: &str) -> std::process::ExitCode {
    let code = std::process::ExitCode::from(126);
    if spec_json.len() > spec::MAX_SPEC {
        eprintln!(
            "{FAILURE_MARK}: the spec is longer than {} bytes",
            spec::MAX_SPEC
        );
        return code;
    }
    let spec: spec::Spec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{FAILURE_MARK}: unreadable spec: {e}");
            return code;
        }
    };
    let e = enter::enter(&spec);
    eprintln!("{}{e}", spec.failure_mark());
    code
}
