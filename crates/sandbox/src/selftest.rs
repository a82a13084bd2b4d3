//! `mandate sandbox check`'s self-test: a real sandboxed child (this same binary, run through
//! the trampoline as `sandbox-selftest`) attempts what a hostile tool would, and reports each
//! attempt. The check passes when every attack is refused and the child can still work in its
//! own home.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::launch::{prepare, Request};
use crate::policy::{Limits, Policy};

/// What the child is pointed at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Targets {
    /// A file outside the sandbox it must not read.
    pub secret: PathBuf,
    /// A directory outside the sandbox it must not write in.
    pub outside: PathBuf,
    /// A TCP port listening on 127.0.0.1 it must not reach.
    pub port: u16,
    /// The checker's pid (its parent): no signal, no ptrace, no /proc/PID/environ.
    pub parent: i32,
    /// The sandbox's memory limit, to allocate beyond.
    pub memory: u64,
    /// The sandbox's process limit, to fork beyond.
    pub processes: u64,
    /// The private home's size, to write beyond (`None`: no user namespace here, so the home is
    /// on disk and not bounded by the sandbox).
    pub disk: Option<u64>,
}

/// One attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// What was tried.
    pub check: String,
    /// Whether it was refused (for `write_home`: whether it failed).
    pub refused: bool,
    /// What happened.
    pub detail: String,
}

impl Outcome {
    /// Whether the result is the one a working sandbox gives.
    pub fn as_expected(&self) -> bool {
        if self.check == "write_home" {
            !self.refused
        } else {
            self.refused
        }
    }
}

fn outcome(check: &str, r: Result<String, String>) -> Outcome {
    match r {
        Ok(d) => Outcome {
            check: check.into(),
            refused: false,
            detail: d,
        },
        Err(d) => Outcome {
            check: check.into(),
            refused: true,
            detail: d,
        },
    }
}

/// The child's side: tries each attack, returns what happened.
pub fn attempt(t: &Targets) -> Vec<Outcome> {
    let s = |e: std::io::Error| e.to_string();
    let mut out = vec![];
    out.push(outcome(
        "read_outside",
        std::fs::read_to_string(&t.secret)
            .map(|_| "read it".into())
            .map_err(s),
    ));
    out.push(outcome(
        "write_outside",
        std::fs::write(t.outside.join("escaped"), "x")
            .map(|_| "wrote it".into())
            .map_err(s),
    ));
    {
        use std::os::unix::fs::PermissionsExt as _;
        out.push(outcome(
            "chmod_outside",
            std::fs::set_permissions(&t.secret, std::fs::Permissions::from_mode(0o644))
                .map(|_| "changed its mode".into())
                .map_err(s),
        ));
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    out.push(outcome(
        "write_home",
        std::fs::write(home.join("work"), "ok")
            .map(|_| "wrote in its home".into())
            .map_err(s),
    ));
    out.push(outcome(
        "tcp_connect",
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], t.port)),
            std::time::Duration::from_secs(2),
        )
        .map(|_| "connected".into())
        .map_err(s),
    ));
    out.push(outcome(
        "parent_environ",
        std::fs::read(format!("/proc/{}/environ", t.parent))
            .map(|b| format!("read {} bytes", b.len()))
            .map_err(s),
    ));
    let parent = nix::unistd::Pid::from_raw(t.parent);
    out.push(outcome(
        "signal_parent",
        nix::sys::signal::kill(parent, None)
            .map(|_| "could signal it".into())
            .map_err(|e| e.to_string()),
    ));
    out.push(outcome(
        "ptrace_parent",
        nix::sys::ptrace::attach(parent)
            .map(|_| "attached".into())
            .map_err(|e| e.to_string()),
    ));
    out.push(outcome(
        "new_namespace",
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map(|_| "made one".into())
            .map_err(|e| e.to_string()),
    ));
    let mut v: Vec<u8> = Vec::new();
    out.push(outcome(
        "memory_beyond_limit",
        v.try_reserve_exact(t.memory as usize)
            .map(|_| format!("reserved {} bytes", t.memory))
            .map_err(|e| e.to_string()),
    ));
    drop(v);
    let mut children = vec![];
    let mut forked: Result<String, String> = Ok(String::new());
    for _ in 0..t.processes + 8 {
        match std::process::Command::new("/bin/sleep")
            .arg("10")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(e) => {
                forked = Err(format!("stopped after {} processes: {e}", children.len()));
                break;
            }
        }
    }
    if forked.is_ok() {
        forked = Ok(format!("started {} processes", children.len()));
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    out.push(outcome("fork_beyond_limit", forked));
    if let Some(disk) = t.disk {
        let chunk = vec![0u8; 1 << 20];
        let filled = (|| -> Result<String, String> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(home.join("fill")).map_err(s)?;
            for _ in 0..(disk >> 20) * 2 {
                f.write_all(&chunk).map_err(s)?;
            }
            f.sync_all().map_err(s)?;
            Ok(format!("wrote {} MiB in its home", (disk >> 20) * 2))
        })();
        let _ = std::fs::remove_file(home.join("fill"));
        out.push(outcome("disk_beyond_limit", filled));
    }
    out
}

/// The child's entry: reads targets from the argument, prints outcomes as JSON.
pub fn child_main(arg: &str) -> std::process::ExitCode {
    let Ok(t) = serde_json::from_str::<Targets>(arg) else {
        eprintln!("sandbox-selftest: bad targets");
        return std::process::ExitCode::FAILURE;
    };
    let out = attempt(&t);
    let _ = std::io::stdout().write_all(serde_json::to_string(&out).unwrap_or_default().as_bytes());
    std::process::ExitCode::SUCCESS
}

/// The checker's side: runs the child in a sandbox, returns its outcomes, or why it could not.
pub fn run() -> Result<Vec<Outcome>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not for the sandbox").map_err(|e| e.to_string())?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let policy = Policy {
        limits: Limits {
            memory: 256 << 20,
            processes: 16,
            disk: 8 << 20,
            ..Limits::default()
        },
        ..Policy::default()
    };
    let targets = Targets {
        secret: secret.clone(),
        outside: dir.path().to_path_buf(),
        port,
        parent: std::process::id() as i32,
        memory: policy.limits.memory,
        processes: policy.limits.processes,
        disk: crate::launch::support()
            .user_namespaces
            .is_ok()
            .then_some(policy.limits.disk),
    };
    let launcher = std::env::current_exe().map_err(|e| e.to_string())?;
    let args = vec![
        "sandbox-selftest".to_string(),
        serde_json::to_string(&targets).map_err(|e| e.to_string())?,
    ];
    let launcher_s = launcher.display().to_string();
    let mut prepared = prepare(Request {
        name: "selftest",
        policy: &policy,
        program: &launcher_s,
        args: &args,
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        protected: vec![dir.path().to_path_buf()],
    })
    .map_err(|e| e.to_string())?;
    let mut child = prepared
        .command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the self-test: {e}"))?;
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    drop(listener);
    serde_json::from_str(&text).map_err(|_| {
        format!(
            "the self-test child did not report ({status}): {}",
            err.lines().last().unwrap_or("no message")
        )
    })
}
