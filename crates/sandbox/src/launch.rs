//! The gateway's side: turns an upstream's checked [`Policy`] and command into the trampoline's
//! command line (`mandate sandbox-exec SPEC`), with everything resolved here, where errors can
//! be reported well:
//!
//! - the program is found on the child's `PATH`; the installation it belongs to (the directory
//!   above its `bin/`, for the path as found and as resolved, and for a `#!` interpreter) is
//!   made readable, so `node`, a virtualenv's `python` or a pyenv install just work;
//! - the system's read-only parts: `/usr`, `/lib*`, `/bin`, `/sbin`, the few files in `/etc`
//!   programs read (the loader's cache, name resolution, time zones, CA certificates, users),
//!   `/proc`, a few devices (`/dev/null`, `/dev/urandom`, ...), CPU and cgroup facts in `/sys`;
//! - declared paths must exist and must neither lie in nor contain a protected path (the
//!   server's directory, keys, any upstream's secret file): refused with the reason;
//!   automatically granted paths that contain one are narrowed around it instead;
//! - a private temporary directory is the child's HOME, TMPDIR and working directory, removed
//!   when the child has gone.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cgroup::Cgroup;
use crate::policy::Policy;
use crate::probe::Support;
use crate::spec::Spec;

/// System trees readable (and executable) by every sandboxed program, where they exist.
const SYSTEM_READ: [&str; 10] = [
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
];
/// Entries of `/etc` readable: what the loader, name resolution, TLS, time zones and user
/// lookups read. Nothing else in `/etc` (where credentials are often kept) is reachable.
const ETC_READ: [&str; 26] = [
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ld.so.preload",
    "localtime",
    "timezone",
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "passwd",
    "group",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "mime.types",
    "os-release",
    "debian_version",
    "alternatives",
    "locale.alias",
    "terminfo",
];
/// Devices readable and writable.
const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];
/// Name resolution over TCP, allowed with any declared destination.
const DNS_PORT: u16 = 53;
/// Most filesystem rules one sandbox gets (narrowing around protected paths adds some).
const MAX_RULES: usize = 2048;

static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();
static SUPPORT: OnceLock<Support> = OnceLock::new();

/// Registers the program that runs `sandbox-exec` (the `mandate` binary, at start-up). Without
/// it no sandboxed child can be started.
pub fn set_launcher(path: PathBuf) {
    let _ = LAUNCHER.set(path);
}

/// What this kernel supports (read once).
pub fn support() -> &'static Support {
    SUPPORT.get_or_init(Support::probe)
}

/// Why a sandboxed child cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox: {0}")]
pub struct LaunchError(pub String);

/// A child ready to spawn, and what must live as long as it runs.
#[derive(Debug)]
pub struct Prepared {
    /// The trampoline's command, environment set; stdio is the caller's to set.
    pub command: std::process::Command,
    /// The private HOME (removed when dropped).
    pub home: tempfile::TempDir,
    /// The pids cgroup, when one was needed (its processes killed and it removed when dropped).
    pub cgroup: Option<Cgroup>,
    /// The spec the trampoline applies (for logs and `upstream show`).
    pub spec: Spec,
}

/// One child to sandbox.
pub struct Request<'a> {
    /// The upstream's name.
    pub name: &'a str,
    /// Its sandbox.
    pub policy: &'a Policy,
    /// The program as configured (a name looked up on `PATH`, or a path).
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [String],
    /// Its whole environment (HOME and TMPDIR are replaced by the private directory).
    pub env: Vec<(String, String)>,
    /// Paths no sandboxed program may reach: the server's directory, keys, secret files.
    pub protected: Vec<PathBuf>,
}

/// Prepares the child.
pub fn prepare(r: Request<'_>) -> Result<Prepared, LaunchError> {
    let fail = |m: String| LaunchError(m);
    let launcher = LAUNCHER.get().ok_or_else(|| {
        fail("this program cannot start sandboxed children (no sandbox launcher registered)".into())
    })?;
    let support = support();
    support
        .require(!r.policy.network.is_empty())
        .map_err(fail)?;
    let protected: Vec<PathBuf> = r
        .protected
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let path_var = r
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let program = find_program(r.program, &path_var).map_err(fail)?;

    let mut read: Vec<PathBuf> = Vec::new();
    let mut auto: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    auto.extend(ETC_READ.iter().map(|e| Path::new("/etc").join(e)));
    auto.extend(installations(&program, &path_var));
    // The script the interpreter is given (`python3 /srv/tool/server.py`): that file, not its
    // directory (which may hold anything).
    if let Some(script) = r
        .args
        .iter()
        .map(Path::new)
        .find(|a| a.is_absolute() && a.is_file())
    {
        auto.push(script.to_path_buf());
    }
    let home_dir = std::env::var_os("HOME").map(PathBuf::from);
    for p in auto {
        let Ok(real) = p.canonicalize() else { continue };
        // A whole home directory is never granted for being an installation's prefix.
        if home_dir.as_deref() == Some(real.as_path()) || real.parent().is_none() {
            continue;
        }
        read.extend(narrow(&real, &protected));
    }
    let mut write: Vec<PathBuf> = DEVICES
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    let (declared_read, declared_write) = declared(r.name, r.policy, &protected)?;
    read.extend(declared_read);
    write.extend(declared_write);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_homes);
    let home = tempfile::Builder::new()
        .prefix(&format!("{HOME_PREFIX}{}-{}-", r.name, std::process::id()))
        .tempdir()
        .map_err(|e| fail(format!("cannot make the private home directory: {e}")))?;
    write.push(home.path().to_path_buf());
    read.sort();
    read.dedup();
    write.sort();
    write.dedup();
    if read.len() + write.len() > MAX_RULES {
        return Err(fail(format!(
            "upstream {}: more than {MAX_RULES} filesystem rules; declare fewer paths",
            r.name
        )));
    }
    let cgroup = if support.root {
        Some(Cgroup::create(r.name, r.policy.limits.processes).map_err(|e| {
            fail(format!(
                "the gateway runs as root, where the kernel does not bound processes by RLIMIT_NPROC, and {e}: run the gateway as an unprivileged user, or set sandbox = \"off\" for this upstream (it then runs with the gateway's rights)"
            ))
        })?)
    } else {
        None
    };
    // With declared destinations, UDP is refused (Landlock has no UDP rules), so the C library
    // resolves names over TCP (RES_OPTIONS=use-vc) to port 53, which is allowed with them.
    let network = !r.policy.network.is_empty();
    let ports = network.then(|| {
        let mut p = r.policy.ports();
        if !p.contains(&DNS_PORT) {
            p.push(DNS_PORT);
        }
        p
    });
    let spec = Spec {
        read,
        write,
        ports,
        limits: r.policy.limits,
        workdir: home.path().to_path_buf(),
        cgroup: cgroup.as_ref().map(|c| c.dir().to_path_buf()),
        program,
        args: r.args.to_vec(),
        nonce: crate::spec::nonce().map_err(|e| fail(format!("cannot read /dev/urandom: {e}")))?,
    };
    let json = serde_json::to_string(&spec)
        .map_err(|e| fail(format!("cannot write the sandbox spec: {e}")))?;
    let mut command = std::process::Command::new(launcher);
    let tmp = home.path().join("tmp");
    std::fs::create_dir(&tmp).map_err(|e| fail(format!("cannot make {}: {e}", tmp.display())))?;
    command
        .arg("sandbox-exec")
        .arg(json)
        .env_clear()
        .envs(
            r.env
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "HOME" | "TMPDIR" | "PWD")),
        )
        .env("HOME", home.path())
        .env("TMPDIR", &tmp)
        .envs(network.then_some(("RES_OPTIONS", "use-vc")))
        .current_dir(home.path());
    Ok(Prepared {
        command,
        home,
        cgroup,
        spec,
    })
}

/// The declared paths resolved (read, write): each must exist, and must neither lie in nor
/// contain a protected path. Checked when an upstream is added, and again at every start.
pub fn declared(
    name: &str,
    policy: &Policy,
    protected: &[PathBuf],
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), LaunchError> {
    let protected: Vec<PathBuf> = protected
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let mut out = (vec![], vec![]);
    for (what, declared, into) in [
        ("read", &policy.read, &mut out.0),
        ("write", &policy.write, &mut out.1),
    ] {
        for p in declared {
            let real = p.canonicalize().map_err(|e| {
                LaunchError(format!(
                    "upstream {name}: {what} path {} cannot be used ({e}); create it or remove it from the sandbox",
                    p.display()
                ))
            })?;
            if let Some(q) = protected
                .iter()
                .find(|q| real.starts_with(q) || q.starts_with(&real))
            {
                return Err(LaunchError(format!(
                    "upstream {name}: {what} path {} would reach {}, which no upstream may (MANDATE_HOME, the server's keys and configuration, or a secret file); name a directory that does not contain it",
                    p.display(),
                    q.display()
                )));
            }
            into.push(real);
        }
    }
    Ok(out)
}

/// How private homes are named: `mandate-sandbox-NAME-GATEWAYPID-RANDOM`.
const HOME_PREFIX: &str = "mandate-sandbox-";

/// Removes the private homes of gateways that are gone (killed before they could clean up).
fn sweep_homes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(HOME_PREFIX) {
            continue;
        }
        let mut parts = name.rsplit('-');
        let (_, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && e.file_type().is_ok_and(|t| t.is_dir()) {
            // remove_dir_all does not follow symbolic links out of the directory.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The program's absolute path: as given when it names a path, else the first executable file
/// of that name on `path_var`.
pub fn find_program(program: &str, path_var: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = std::path::absolute(program).map_err(|e| format!("{program}: {e}"))?;
        return if runnable(&p) {
            Ok(p)
        } else {
            Err(format!("{program} is not an executable file"))
        };
    }
    path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| runnable(p))
        .ok_or_else(|| {
            format!(
                "{program} was not found on the upstream's PATH ({path_var}); give its full path, or pass PATH in pass_env"
            )
        })
}

/// The installation prefixes a program needs to read: for the program as found and as
/// resolved, and for its `#!` interpreter (followed twice, for `env` and wrappers), the
/// directory above `bin/`, or the program's own directory otherwise.
fn installations(program: &Path, path_var: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![program.to_path_buf()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for p in todo.drain(..) {
            for q in [p.clone(), p.canonicalize().unwrap_or_else(|_| p.clone())] {
                out.push(prefix(&q));
                out.push(q.clone());
                if let Some(interp) = shebang(&q, path_var) {
                    next.push(interp);
                }
            }
        }
        todo = next;
    }
    out.sort();
    out.dedup();
    out
}

fn prefix(p: &Path) -> PathBuf {
    let dir = p.parent().unwrap_or(p);
    match (dir.file_name(), dir.parent()) {
        (Some(n), Some(up)) if n == "bin" || n == "sbin" => up.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The interpreter a `#!` line names (`/usr/bin/env node` resolves `node` on the PATH).
fn shebang(p: &Path, path_var: &str) -> Option<PathBuf> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(p).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let interp = words.next()?;
    if interp.ends_with("/env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        return find_program(name, path_var).ok();
    }
    Some(PathBuf::from(interp))
}

/// `root` itself when no protected path lies inside it; otherwise its entries, each narrowed
/// the same way, leaving out the protected paths (a snapshot: entries made later are not in it).
pub fn narrow(root: &Path, protected: &[PathBuf]) -> Vec<PathBuf> {
    if protected.iter().any(|q| root.starts_with(q)) {
        return vec![];
    }
    if !protected.iter().any(|q| q.starts_with(root)) {
        return vec![root.to_path_buf()];
    }
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten().take(MAX_RULES) {
            out.extend(narrow(&e.path(), protected));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_leaves_out_the_protected_path_and_keeps_its_siblings() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/keys")).unwrap();
        std::fs::create_dir_all(root.join("a/lib")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        let got = narrow(&root, &[root.join("a/keys")]);
        assert!(got.contains(&root.join("b")));
        assert!(got.contains(&root.join("a/lib")));
        assert!(!got.iter().any(|p| p.starts_with(root.join("a/keys"))));
        assert!(!got.contains(&root) && !got.contains(&root.join("a")));
        assert_eq!(
            narrow(&root.join("b"), &[root.join("a")]),
            vec![root.join("b")]
        );
        assert!(narrow(&root.join("a/keys/x"), &[root.join("a/keys")]).is_empty());
    }

    #[test]
    fn programs_are_found_on_the_path_and_their_installation_is_granted() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("opt/tool/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("tool");
        std::fs::write(&exe, "#!/usr/bin/env sh\necho hi\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:/usr/bin:/bin", bin.display());
        assert_eq!(find_program("tool", &path).unwrap(), exe);
        assert!(find_program("no-such-tool", &path)
            .unwrap_err()
            .contains("not found"));
        let inst = installations(&exe, &path);
        assert!(inst.contains(&d.path().join("opt/tool")), "{inst:?}");
        // The interpreter named by `#!/usr/bin/env sh` is found too.
        assert!(inst.iter().any(|p| p.ends_with("sh")), "{inst:?}");
    }
}
