//! The trampoline's work: in a fresh, single-threaded process (`mandate sandbox-exec SPEC`), apply
//! every restriction to itself, then `exec` the upstream's program, which inherits them all and
//! can shed none. Order matters:
//!
//! 1. join the pids cgroup, if one was made (root only: see [`crate::launch`]);
//! 2. resource limits (RLIMIT_AS, NPROC, NOFILE, CPU; no core dumps);
//! 3. a user namespace (dropping every capability the caller had on the host) and, without
//!    declared destinations, a network namespace with no interface but a down loopback. Where
//!    the host forbids unprivileged user namespaces (Ubuntu's default), an unprivileged gateway
//!    goes on without them: its children have no capabilities to drop, and their network is
//!    off by the seccomp filter (no `socket` call) and Landlock's TCP rules instead. A gateway
//!    running as root requires them;
//!    With the user namespace comes a mount namespace, where the private home becomes a tmpfs
//!    of `disk` bytes: a tool fills its own memory-backed home, never the host's disk;
//! 4. `no_new_privs`, so nothing executed later can gain privileges (setuid binaries);
//! 5. Landlock: the filesystem rules, TCP port rules and signal/abstract-socket scoping;
//! 6. the seccomp filter, last, so the calls above are not themselves refused;
//! 7. every inherited descriptor but stdin, stdout and stderr marked close-on-exec;
//! 8. `exec`.
//!
//! Any step that fails stops here with a one-line reason on stderr: the program never runs
//! unsandboxed (fail closed).

use std::os::unix::process::CommandExt as _;
use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::spec::Spec;

/// The Landlock ABI whose rights are asked for (the newest this code was tested with). Older
/// kernels get the subset they know (the crate's best effort); newer rights are not asked for.
pub const LANDLOCK_ABI: ABI = ABI::V6;

/// Why the sandbox could not be entered: which mechanism, and how to proceed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnterError(pub String);

fn fail(mechanism: &str, why: impl std::fmt::Display, how: &str) -> EnterError {
    EnterError(format!(
        "{mechanism}: {why}; {how}, or set sandbox = \"off\" for this upstream (it then runs with the gateway's rights)"
    ))
}

/// Enters the sandbox described by `spec` and executes its program. Returns only on failure.
pub fn enter(spec: &Spec) -> EnterError {
    match setup(spec) {
        Ok(()) => {
            let e = std::process::Command::new(&spec.program)
                .args(&spec.args)
                .exec();
            EnterError(format!("cannot run {}: {e}", spec.program.display()))
        }
        Err(e) => e,
    }
}

fn setup(spec: &Spec) -> Result<(), EnterError> {
    if let Some(dir) = &spec.cgroup {
        // "0" is the writer itself. On cgroup v1 the trampoline, single-threaded, moves its one
        // thread through `tasks`: the kernel then skips the global lock a whole-process move
        // takes (cgroup.procs), which costs an RCU grace period, 10-20 ms here.
        let tasks = dir.join("tasks");
        let file = if tasks.exists() {
            tasks
        } else {
            dir.join("cgroup.procs")
        };
        std::fs::write(file, "0").map_err(|e| {
            fail(
                "process limit",
                format!("cannot join the pids cgroup {}: {e}", dir.display()),
                "run the gateway as an unprivileged user (RLIMIT_NPROC then bounds the processes)",
            )
        })?;
    }
    limits(spec)?;
    let isolated = namespaces(spec)?;
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| fail("no_new_privs", e, "use Linux 3.5 or later"))?;
    landlock(spec)?;
    crate::seccomp::install(spec.ports.is_some(), isolated).map_err(|e| {
        fail(
            "seccomp",
            e,
            "use a kernel built with CONFIG_SECCOMP_FILTER",
        )
    })?;
    close_inherited();
    std::env::set_current_dir(&spec.workdir)
        .map_err(|e| EnterError(format!("cannot enter {}: {e}", spec.workdir.display())))?;
    Ok(())
}

fn limits(spec: &Spec) -> Result<(), EnterError> {
    use rlimit::Resource;
    let l = &spec.limits;
    // The CPU hard limit a little above the soft one: SIGXCPU first, SIGKILL if it is ignored.
    let set = [
        (Resource::AS, l.memory, l.memory, "memory"),
        (Resource::NPROC, l.processes, l.processes, "processes"),
        (Resource::NOFILE, l.open_files, l.open_files, "open files"),
        (
            Resource::CPU,
            l.cpu_seconds,
            l.cpu_seconds.saturating_add(5),
            "CPU time",
        ),
        (Resource::CORE, 0, 0, "core dumps"),
    ];
    for (r, soft, hard, what) in set {
        // A hard limit already below ours stays (we can only lower it).
        let (_, cur_hard) = r
            .get()
            .map_err(|e| fail("resource limits", format!("{what}: {e}"), "check ulimit"))?;
        let hard = hard.min(cur_hard);
        r.set(soft.min(hard), hard)
            .map_err(|e| fail("resource limits", format!("{what}: {e}"), "check ulimit"))?;
    }
    Ok(())
}

/// Enters the child's namespaces; whether it could (an unprivileged gateway on a host that
/// forbids user namespaces goes on without them).
fn namespaces(spec: &Spec) -> Result<bool, EnterError> {
    use nix::sched::CloneFlags;
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    // IPC: SysV shared memory, semaphores and message queues, and POSIX queues, of its own (they
    // die with it instead of outliving it, and it cannot reach the host's).
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
    if spec.ports.is_none() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = nix::sched::unshare(flags) {
        if !uid.is_root() {
            return Ok(false);
        }
        return Err(fail(
            "user namespaces",
            format!("unshare: {e}"),
            "a gateway running as root needs them to drop its capabilities in the child: enable them (sysctl user.max_user_namespaces=15000), or better, run the gateway as an unprivileged user",
        ));
    }
    // The same ids inside as outside, so files keep their owners; no supplementary groups.
    let write = |f: &str, v: String| {
        std::fs::write(f, v).map_err(|e| {
            fail(
                "user namespaces",
                format!("cannot write {f}: {e}"),
                "enable unprivileged user namespaces",
            )
        })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    private_home(spec, uid, gid)?;
    Ok(true)
}

/// Mounts a tmpfs of `disk` bytes on the private home, in the child's own mount namespace (the
/// gateway still sees the empty directory on disk), with its `tmp` inside.
fn private_home(
    spec: &Spec,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> Result<(), EnterError> {
    use nix::mount::{mount, MsFlags};
    let how =
        "a user namespace lets its owner mount a tmpfs; check that nothing (an LSM) forbids it";
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| {
        fail(
            "mount namespace",
            format!("making mounts private: {e}"),
            how,
        )
    })?;
    let data = format!("size={},mode=0700,uid={uid},gid={gid}", spec.limits.disk);
    mount(
        Some("tmpfs"),
        &spec.workdir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| {
        fail(
            "private home",
            format!("mounting a tmpfs on {}: {e}", spec.workdir.display()),
            how,
        )
    })?;
    std::fs::create_dir(spec.workdir.join("tmp"))
        .map_err(|e| EnterError(format!("cannot make the private tmp: {e}")))
}

fn landlock(spec: &Spec) -> Result<(), EnterError> {
    let abi = LANDLOCK_ABI;
    let how = "use Linux 5.13 or later with Landlock enabled (CONFIG_SECURITY_LANDLOCK, `landlock` in the lsm= boot parameter)";
    let err = |e: landlock::RulesetError| fail("Landlock", e, how);
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    ruleset = match &spec.ports {
        // The host's network: TCP rules are then the only network barrier, so they are required.
        Some(_) => ruleset
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| {
                fail(
                    "Landlock TCP rules",
                    e,
                    "they need Linux 6.7 or later (Landlock ABI 4); without them declare no network (the upstream then gets a network namespace of its own)",
                )
            })?
            .set_compatibility(CompatLevel::BestEffort),
        // A network namespace of its own already; TCP rules too where the kernel has them.
        None => ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(err)?,
    };
    // Signals to, and abstract sockets of, processes outside the sandbox (Linux 6.12+).
    ruleset = ruleset.scope(Scope::from_all(abi)).map_err(err)?;
    let mut created = ruleset.create().map_err(err)?;
    for (paths, access) in [
        (&spec.read, AccessFs::from_read(abi)),
        (&spec.write, AccessFs::from_all(abi)),
    ] {
        for p in paths {
            created = add_path(created, p, access, abi)?;
        }
    }
    for port in spec.ports.iter().flatten() {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(fail("Landlock", "this kernel does not enforce it", how));
    }
    Ok(())
}

fn add_path(
    created: landlock::RulesetCreated,
    p: &Path,
    access: landlock::BitFlags<AccessFs>,
    abi: ABI,
) -> Result<landlock::RulesetCreated, EnterError> {
    let fd = PathFd::new(p)
        .map_err(|e| EnterError(format!("cannot open {} for its rule: {e}", p.display())))?;
    // A file takes only the rights that apply to files (otherwise the ruleset reads as partial).
    let access = if p.is_dir() {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    created
        .add_rule(PathBeneath::new(fd, access))
        .map_err(|e| EnterError(format!("Landlock rule for {}: {e}", p.display())))
}

/// Marks every descriptor above stderr close-on-exec, so nothing the gateway held open (a
/// database, a listening socket) reaches the program.
fn close_inherited() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}
