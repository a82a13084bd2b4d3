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
}

/// Longest spec the trampoline reads (it is one command-line argument).
pub const MAX_SPEC: usize = 256 * 1024;
