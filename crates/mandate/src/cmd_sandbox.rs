//! `mandate sandbox check`: what this kernel offers the stdio sandbox, proven by a self-test.

use anyhow::{bail, Result};
use serde_json::json;

use crate::cli::SandboxCmd;
use crate::ctx::Ctx;

pub async fn run(ctx: &Ctx, c: SandboxCmd) -> Result<()> {
    match c {
        SandboxCmd::Check => check(ctx).await,
    }
}

async fn check(ctx: &Ctx) -> Result<()> {
    let support = mandate_sandbox::launch::support().clone();
    let outcomes = tokio::task::spawn_blocking(mandate_sandbox::selftest::run).await?;
    let landlock = match support.landlock_abi {
        0 => "not available".to_string(),
        n => format!(
            "ABI {n} ({})",
            match n {
                1..=3 => "filesystem",
                4..=5 => "filesystem, TCP ports",
                _ => "filesystem, TCP ports, signal and abstract-socket scoping",
            }
        ),
    };
    let userns = match &support.user_namespaces {
        Ok(()) => "available (the child gets its own, and a network namespace)".to_string(),
        Err(e) if support.root => {
            format!("not available: {e} (required: the gateway runs as root)")
        }
        Err(e) => format!("not available: {e} (network is then refused by seccomp and Landlock)"),
    };
    let processes = if support.root {
        "a pids cgroup per upstream (the gateway runs as root, where RLIMIT_NPROC does not apply)"
    } else {
        "RLIMIT_NPROC, counted in the child's user namespace"
    };
    let ready_without_network = support.require(false);
    let ready_with_network = support.require(true);
    let passed = outcomes
        .as_ref()
        .map(|o| o.iter().all(|x| x.as_expected()))
        .unwrap_or(false);
    let v = json!({
        "landlock_abi": support.landlock_abi,
        "seccomp": support.seccomp,
        "user_namespaces": support.user_namespaces.is_ok(),
        "root": support.root,
        "ready": ready_without_network.is_ok(),
        "ready_with_network": ready_with_network.is_ok(),
        "why_not": ready_without_network.as_ref().err(),
        "why_not_with_network": ready_with_network.as_ref().err(),
        "self_test": match &outcomes {
            Ok(o) => json!({"passed": passed, "checks": o}),
            Err(e) => json!({"passed": false, "error": e}),
        },
    });
    ctx.print(&v, || {
        let mut s = format!(
            "Landlock           {landlock}\nseccomp            {}\nuser namespaces    {userns}\nprocess limit      {processes}\n",
            if support.seccomp { "available (filter mode)" } else { "not available" },
        );
        match &ready_with_network {
            Ok(()) => s.push_str("declared network   TCP to declared ports only (Landlock)\n"),
            Err(e) => s.push_str(&format!("declared network   cannot be sandboxed: {e}\n")),
        }
        match &outcomes {
            Ok(o) => {
                let good = o.iter().filter(|x| x.as_expected()).count();
                s.push_str(&format!(
                    "self-test          {} ({good}/{} as expected)\n",
                    if passed { "passed" } else { "FAILED" },
                    o.len()
                ));
                for x in o {
                    s.push_str(&format!(
                        "  {} {:<20} {}\n",
                        if x.as_expected() { "ok  " } else { "FAIL" },
                        x.check,
                        x.detail
                    ));
                }
            }
            Err(e) => s.push_str(&format!("self-test          could not run: {e}\n")),
        }
        if let Err(e) = &ready_without_network {
            s.push_str(&format!("\nstdio upstreams cannot be sandboxed here: {e}\n"));
        }
        s.trim_end().to_string()
    });
    if ready_without_network.is_err() || !passed {
        bail!("the sandbox is not usable on this machine (see above)");
    }
    Ok(())
}
