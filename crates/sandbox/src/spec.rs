//! What the launcher hands the trampoline (`mandate sandbox-exec SPEC`): everything already
//! resolved, so the trampoline decides nothing and only applies it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::Limits;

/// A sandbox ready to enter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Existing paths (files or directory trees) readable, and executable, but not writable.
    pub read: Vec<PathBuf>,
    /// Existing paths readable and writable.
    pub write: Vec<PathBuf>,
    /// `None`: no network (a network namespace of its own). `Some(ports)`: the host's network,
    /// with TCP connections only to these ports and no listening.
    pub ports: Option<Vec<u16>>,
    /// Resource limits.
    pub limits: Limits,
    /// The working directory (the private temporary HOME).
    pub workdir: PathBuf,
    /// A pids cgroup to join first (when the kernel would not apply RLIMIT_NPROC: root).
    pub cgroup: Option<PathBuf>,
    /// The program (an absolute path) and its arguments.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// A random word the trampoline puts in its failure line ([`Spec::failure_mark`]), so the
    /// gateway can tell the trampoline's refusal from a program that prints the same words (the
    /// program never sees it: it was in the trampoline's arguments, replaced by `exec`).
    pub nonce: String,
}

impl Spec {
    /// What the trampoline writes before its one-line reason when it cannot sandbox.
    pub fn failure_mark(&self) -> String {
        format!("{}{}: ", crate::FAILURE_MARK, self.nonce)
    }
}

/// 16 random bytes from the kernel, as hex.
pub fn nonce() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Longest spec the trampoline reads (it is one command-line argument).
pub const MAX_SPEC: usize = 256 * 1024;
