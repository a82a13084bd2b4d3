//! The system call filter: a deny-list of the calls an MCP server has no business making, each
//! refused with `EPERM` (so a program sees a clean error, not a crash), and `clone3` refused with
//! `ENOSYS` so that the C library falls back to `clone`, whose flags the filter can read.
//!
//! Refused: debugging other processes (ptrace, process_vm_*), mounting and changing roots, BPF,
//! the kernel keyring, kernel modules and kexec, namespaces (unshare, setns, clone with a
//! CLONE_NEW* flag), perf events, userfaultfd, io_uring (whose operations bypass this filter),
//! clocks, swap, reboot, accounting, quotas, file handles (open_by_handle_at escapes a
//! directory tree), the kernel log, and `socket(AF_UNIX, ...)` (a filesystem socket such as
//! Docker's or a database's is not covered by Landlock's file rules; `socketpair` still works),
//! raw and packet sockets (which Landlock's TCP rules do not see), UDP sockets (Landlock has no
//! UDP rules: name resolution goes over TCP, see [`crate::launch`]), and, for an upstream with
//! no declared destination, every `socket` call: its network is off even where no network
//! namespace can be made.
//!
//! Also refused: `listen` (an unbound socket would be given a port on every interface),
//! `setsid` and `setpgid` (the gateway stops a child by its process group), `memfd_create`
//! (pages no resource limit counts), and, where the child has no IPC namespace of its own,
//! SysV IPC and POSIX message queues.
//!
//! And: changing another process's limits, priority, scheduling, CPU affinity, I/O
//! priority or memory placement (`prlimit64`, `setpriority`, `sched_set*`, `ioprio_set`,
//! `migrate_pages`, `move_pages` naming a pid other than 0). The kernel allows these between
//! processes of the same user, Landlock does not cover them, and the gateway is a process of
//! the same user: without this a tool could set the gateway's open-file limit to 3. A process
//! still changes its own (pid 0, which is what the C library passes).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The calls refused outright, by name (for `sandbox check` and the docs) and number.
pub fn denied() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = vec![
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("kcmp", libc::SYS_kcmp),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("move_mount", libc::SYS_move_mount),
        ("open_tree", libc::SYS_open_tree),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("bpf", libc::SYS_bpf),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("reboot", libc::SYS_reboot),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("syslog", libc::SYS_syslog),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("sethostname", libc::SYS_sethostname),
        ("setdomainname", libc::SYS_setdomainname),
        ("personality", libc::SYS_personality),
        // Leaving the process group, by which the gateway stops every process of the child.
        ("setsid", libc::SYS_setsid),
        ("setpgid", libc::SYS_setpgid),
        // Anonymous memory files: their pages are counted by no resource limit of the process.
        ("memfd_create", libc::SYS_memfd_create),
        ("memfd_secret", libc::SYS_memfd_secret),
        // File metadata: Landlock has no rights for modes, owners, times or extended
        // attributes, and a path it refuses to open can still be named here. A child sharing
        // the gateway's uid (root maps to root) could make a key world-readable, or a binary
        // setuid. Refused on every file, even its own: install packages before, not inside.
        ("fchmod", libc::SYS_fchmod),
        ("fchmodat", libc::SYS_fchmodat),
        ("fchmodat2", FCHMODAT2),
        ("fchown", libc::SYS_fchown),
        ("fchownat", libc::SYS_fchownat),
        ("setxattr", libc::SYS_setxattr),
        ("lsetxattr", libc::SYS_lsetxattr),
        ("fsetxattr", libc::SYS_fsetxattr),
        ("setxattrat", SETXATTRAT),
        ("removexattr", libc::SYS_removexattr),
        ("lremovexattr", libc::SYS_lremovexattr),
        ("fremovexattr", libc::SYS_fremovexattr),
        ("removexattrat", REMOVEXATTRAT),
        ("utimensat", libc::SYS_utimensat),
        // Watches: inotify sees names and access times in directories it cannot read, and its
        // instances count against the user's host-wide quota (root's, for a root gateway).
        ("inotify_init1", libc::SYS_inotify_init1),
        ("fanotify_init", libc::SYS_fanotify_init),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("uselib", libc::SYS_uselib),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        // The path-only forms the newer `*at` calls replaced (absent on aarch64).
        ("chmod", libc::SYS_chmod),
        ("chown", libc::SYS_chown),
        ("lchown", libc::SYS_lchown),
        ("utime", libc::SYS_utime),
        ("utimes", libc::SYS_utimes),
        ("futimesat", libc::SYS_futimesat),
        ("inotify_init", libc::SYS_inotify_init),
    ]);
    v
}

/// System calls added since Linux 5.1 have one number on every architecture; these are newer
/// than the `libc` crate's tables on some targets.
const FCHMODAT2: i64 = 452;
const SETXATTRAT: i64 = 463;
const REMOVEXATTRAT: i64 = 466;

/// Namespace flags that `clone` may not carry.
const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(pub String);

fn arch() -> Result<seccompiler::TargetArch, SeccompError> {
    std::env::consts::ARCH.try_into().map_err(|_| {
        SeccompError(format!(
            "this machine's architecture ({}) has no system call filter here; x86_64, aarch64 and riscv64 do",
            std::env::consts::ARCH
        ))
    })
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError(e.to_string()))
}

/// A condition on a 32-bit argument (a pid, an `int`), so a negative value is not sign-extended.
fn dword(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| SeccompError(e.to_string()))
}

/// The two programs: the deny-list (`EPERM`), and `clone3` (`ENOSYS`). `network`: whether the
/// upstream declared destinations (without, no socket can be made at all).
/// `isolated`: whether the child has namespaces of its own (user, IPC...).
pub fn programs(network: bool, isolated: bool) -> Result<[BpfProgram; 2], SeccompError> {
    let e = |e: seccompiler::BackendError| SeccompError(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied().into_iter().map(|(_, n)| (n, vec![])).collect();
    // clone(flags, ...) with any namespace flag: one rule per flag, any of which matches.
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|f| SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(*f), *f)?]).map_err(e))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // Calls that take a pid (first argument) and act on another process when it is not 0.
    for call in [
        libc::SYS_prlimit64,
        libc::SYS_sched_setaffinity,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setattr,
        libc::SYS_migrate_pages,
        libc::SYS_move_pages,
    ] {
        rules.insert(
            call,
            vec![SeccompRule::new(vec![dword(0, SeccompCmpOp::Ne, 0)?]).map_err(e)?],
        );
    }
    // setpriority(which, who, prio) and ioprio_set(which, who, prio): only the caller itself
    // (PRIO_PROCESS = 0 / IOPRIO_WHO_PROCESS = 1, who = 0).
    for (call, own) in [(libc::SYS_setpriority, 0u64), (libc::SYS_ioprio_set, 1)] {
        rules.insert(
            call,
            vec![
                SeccompRule::new(vec![dword(0, SeccompCmpOp::Ne, own)?]).map_err(e)?,
                SeccompRule::new(vec![dword(1, SeccompCmpOp::Ne, 0)?]).map_err(e)?,
            ],
        );
    }
    let socket_rules = if network {
        // An allow-list, written as what is refused: socket(domain, type, protocol) only for
        // TCP over IPv4 or IPv6. Any other family (unix, packet, netlink, vsock...), any other
        // type (UDP, raw, seqpacket...) and any other protocol (MPTCP, SCTP: Landlock's port
        // rules see TCP only) is refused.
        let mut r = vec![SeccompRule::new(vec![
            dword(0, SeccompCmpOp::Ne, libc::AF_INET as u64)?,
            dword(0, SeccompCmpOp::Ne, libc::AF_INET6 as u64)?,
        ])
        .map_err(e)?];
        for t in (0..16u64).filter(|t| *t != libc::SOCK_STREAM as u64) {
            r.push(SeccompRule::new(vec![cond(1, SeccompCmpOp::MaskedEq(0xf), t)?]).map_err(e)?);
        }
        r.push(
            SeccompRule::new(vec![
                dword(2, SeccompCmpOp::Ne, 0)?,
                dword(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
            ])
            .map_err(e)?,
        );
        r
    } else {
        vec![]
    };
    rules.insert(libc::SYS_socket, socket_rules);
    // No listening: `listen` on an unbound socket binds it to a port of the kernel's choosing
    // on every interface, which Landlock's bind rule does not see.
    rules.insert(libc::SYS_listen, vec![]);
    // SysV IPC and POSIX message queues are shared by every process of the host's IPC
    // namespace: refused where the child has no namespace of its own.
    if !isolated {
        for call in [
            libc::SYS_shmget,
            libc::SYS_shmat,
            libc::SYS_shmctl,
            libc::SYS_semget,
            libc::SYS_semop,
            libc::SYS_semtimedop,
            libc::SYS_semctl,
            libc::SYS_msgget,
            libc::SYS_msgsnd,
            libc::SYS_msgrcv,
            libc::SYS_msgctl,
            libc::SYS_mq_open,
        ] {
            rules.insert(call, vec![]);
        }
    }
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(e)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(e)?;
    let deny: BpfProgram = deny.try_into().map_err(e)?;
    let clone3: BpfProgram = clone3.try_into().map_err(e)?;
    Ok([deny, clone3])
}

/// x86_64 only: refuses every x32-ABI call (numbers with bit 30 set, under the same
/// architecture value), which the rules above, keyed by the 64-bit numbers, would let through on
/// a kernel built with `CONFIG_X86_X32_ABI`. Written by hand: seccompiler has no rule on ranges
/// of numbers. `ENOSYS`, as a kernel without x32 answers.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> BpfProgram {
    use seccompiler::sock_filter;
    // BPF_LD | BPF_W | BPF_ABS (the first two are 0).
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x05 | 0x10;
    const JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// Installs both programs on the calling thread (and, through exec and fork, everything it
/// starts). Needs `no_new_privs`, which the caller sets first.
pub fn install(network: bool, isolated: bool) -> Result<(), SeccompError> {
    #[cfg(target_arch = "x86_64")]
    seccompiler::apply_filter(&no_x32()).map_err(|e| SeccompError(e.to_string()))?;
    for p in programs(network, isolated)? {
        seccompiler::apply_filter(&p).map_err(|e| SeccompError(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_for_this_machine() {
        for (network, isolated) in [(false, false), (true, true), (true, false)] {
            let [deny, clone3] = programs(network, isolated).unwrap();
            assert!(deny.len() > denied().len());
            assert!(!clone3.is_empty());
        }
        // Declared destinations keep sockets, with rules: a longer program.
        assert!(programs(true, true).unwrap()[0].len() > programs(false, true).unwrap()[0].len());
    }

    /// Runs a classic BPF program of loads, conditional jumps and returns on (nr, arch).
    #[cfg(target_arch = "x86_64")]
    fn run(p: &[seccompiler::sock_filter], nr: u32, arch: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &p[pc];
            match i.code {
                0x20 => acc = if i.k == 0 { nr } else { arch },
                0x15 | 0x35 => {
                    let yes = if i.code == 0x15 {
                        acc == i.k
                    } else {
                        acc >= i.k
                    };
                    pc += usize::from(if yes { i.jt } else { i.jf });
                }
                0x06 => return i.k,
                c => panic!("opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn x32_calls_are_refused_and_64_bit_ones_pass_to_the_rules() {
        let p = no_x32();
        let x86_64 = 62 | 0x8000_0000 | 0x4000_0000;
        let enosys = 0x0005_0000 | libc::ENOSYS as u32;
        assert_eq!(run(&p, 0x4000_0000 | 41, x86_64), enosys);
        assert_eq!(run(&p, 0x4000_0000 | 101, x86_64), enosys);
        assert_eq!(run(&p, 41, x86_64), 0x7fff_0000);
        // Another architecture is the main programs' business (they kill on a mismatch).
        assert_eq!(run(&p, 0x4000_0000 | 41, 3 | 0x4000_0000), 0x7fff_0000);
    }

    #[test]
    fn the_deny_list_names_each_call_once() {
        let d = denied();
        let mut nums: Vec<i64> = d.iter().map(|(_, n)| *n).collect();
        nums.sort_unstable();
        nums.dedup();
        assert_eq!(nums.len(), d.len());
        assert!(d.iter().any(|(n, _)| *n == "ptrace"));
    }
}
