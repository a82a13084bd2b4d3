//! Two processes: the authority (`mandate serve`) and a separate verifier (`mandate verify
//! --follow`) that learns revocations from the feed. A revoked mandate is refused by the verifier
//! within a second; with the authority stopped, the verifier keeps accepting valid, unrevoked
//! mandates from its cached view until the staleness limit, then refuses everything.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, free_port, init_home, mandate};
use serde_json::Value;

const AUD: &str = "https://api.github.com";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(home: &std::path::Path) -> Proc {
    Proc(
        Command::new(bin())
            .arg("serve")
            .env("MANDATE_HOME", home)
            .env("HOME", home)
            .env_remove("MANDATE_SERVER")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mandate serve"),
    )
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The verifier process: one presentation per line in, one JSON verdict per line out.
struct Verifier {
    _proc: Proc,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Verifier {
    fn start(home: &std::path::Path, url: &str, staleness: &str) -> Verifier {
        let mut child = Command::new(bin())
            .args([
                "verify",
                "--follow",
                "--audience",
                AUD,
                "--max-staleness",
                staleness,
                "--server",
                url,
            ])
            .env("MANDATE_HOME", home)
            .env("HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mandate verify --follow");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Verifier {
            _proc: Proc(child),
            stdin,
            stdout,
        }
    }

    fn check(&mut self, token: &str) -> Value {
        writeln!(self.stdin, "{token}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("verdict {line:?}: {e}"))
    }
}

fn bearer_token(home: &std::path::Path, agent: &str) -> String {
    let args = [
        "token",
        "issue",
        "--as",
        agent,
        "--aud",
        AUD,
        "--scope",
        "github:pulls.read",
        "--bearer",
    ];
    let out = mandate(home, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_separate_verifier_refuses_a_revoked_mandate_within_a_second_and_fails_closed_when_stale() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let home = init_home(port, false);
    let mut server = serve(home.path());
    wait_until("the server starting", Duration::from_secs(15), || {
        mandate(home.path(), &["keys", "list"]).status.success()
    });
    for name in ["scout", "fetcher"] {
        let args = [
            "agent",
            "create",
            name,
            "--scopes",
            "github:pulls.read",
            "--audiences",
            AUD,
            "--allow-bearer",
        ];
        assert!(mandate(home.path(), &args).status.success());
    }
    let doomed = bearer_token(home.path(), "scout");
    let survivor = bearer_token(home.path(), "fetcher");

    let mut v = Verifier::start(home.path(), &url, "3s");
    wait_until(
        "the verifier accepting a valid mandate",
        Duration::from_secs(10),
        || v.check(&doomed)["valid"] == true,
    );
    assert_eq!(v.check(&survivor)["valid"], true);

    // Revocation reaches the other process within a second.
    let jti = common::jwt_payload(&doomed)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = mandate(
        home.path(),
        &["revoke", "token", &jti, "--reason", "leaked"],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let mut verdict = Value::Null;
    let took = wait_until(
        "the verifier refusing the revoked mandate",
        Duration::from_secs(1),
        || {
            verdict = v.check(&doomed);
            verdict["valid"] == false
        },
    );
    assert_eq!(verdict["code"], "revoked", "{verdict}");
    eprintln!("revocation seen by the verifier after {took:?}");
    assert_eq!(v.check(&survivor)["valid"], true);

    // Authority down: the cached view keeps serving valid mandates until it is 3 s old ...
    let stopped = Instant::now();
    drop(std::mem::replace(
        &mut server,
        Proc(Command::new("true").spawn().unwrap()),
    ));
    assert_eq!(v.check(&survivor)["valid"], true);
    assert_eq!(v.check(&doomed)["valid"], false);
    // ... then everything is refused as stale.
    wait_until(
        "the verifier failing closed",
        Duration::from_secs(10),
        || v.check(&survivor)["code"] == "revocations_stale",
    );
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "refused too early ({after:?}): the view was fresh"
    );
    eprintln!("verifier failed closed {after:?} after the authority stopped");

    // The authority comes back: the verifier recovers.
    let _server = serve(home.path());
    wait_until("the verifier recovering", Duration::from_secs(10), || {
        v.check(&survivor)["valid"] == true
    });
    assert_eq!(v.check(&doomed)["code"], "revoked");
}
