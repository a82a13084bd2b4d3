//! `mandate`: parses the command line and wires the crates together. Errors are printed as one
//! line on stderr with a non-zero exit code.
#![forbid(unsafe_code)]

mod bench;
mod bench_abuse;
mod bench_gateway;
mod bench_sandbox;
mod cli;
mod client;
mod cmd_approvals;
mod cmd_audit;
mod cmd_audit_archive;
mod cmd_audit_verify;
mod cmd_connect;
mod cmd_gateway;
mod cmd_policy;
mod cmd_principals;
mod cmd_sandbox;
mod cmd_server;
mod cmd_tokens;
mod cmd_upstream;
mod cmd_verify;
mod connect_stream;
mod ctx;
mod demo_mcp;
mod held;
mod home;
mod policy_pack;
mod term;

use crate::cli::{Cli, Command};

/// The allocator: per-thread free lists instead of glibc's arenas (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // The sandbox's trampoline and self-test run before anything else (clap, logging, the
    // runtime): they must stay single-threaded, and they are not commands for people.
    let mut args = std::env::args();
    match (args.nth(1).as_deref(), args.next()) {
        (Some("sandbox-exec"), Some(spec)) => return mandate_sandbox::trampoline(&spec),
        (Some("sandbox-selftest"), Some(targets)) => {
            return mandate_sandbox::selftest::child_main(&targets)
        }
        _ => {}
    }
    // Sandboxed stdio upstreams are started through this same binary.
    if let Ok(exe) = std::env::current_exe() {
        mandate_sandbox::set_launcher(exe);
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli::connect_server(&mut cli, &matches);
    // The demo MCP server speaks on stdout: no runtime, no logs there.
    if matches!(cli.command, Command::DemoMcp) {
        return match demo_mcp::run() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // The benchmark measures the server, not the terminal: it logs warnings only by default.
    let default_level = if matches!(cli.command, Command::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MANDATE_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs redirected to a file stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The command already printed its verdict (`audit verify`: FAILED ...).
        Err(e) if e.is::<cmd_audit::Failed>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            // One line: the error and its causes, outermost first. Causes can quote a server's
            // answer, so the line is escaped (which also keeps a newline in it from breaking it).
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", term::safe(&chain.join(": ")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = ctx::Ctx::new(cli.json, cli.server)?;
    match cli.command {
        Command::Up(a) => cmd_server::up(&ctx, a).await,
        Command::Init(a) => cmd_server::init(&ctx, a).await.map(|_| ()),
        Command::Serve(a) => cmd_server::serve(&ctx, a).await,
        Command::Agent(c) => cmd_principals::agent(&ctx, c).await,
        Command::User(c) => cmd_principals::user(&ctx, c).await,
        Command::Token(c) => cmd_tokens::token(&ctx, c).await,
        Command::Delegate(a) => cmd_tokens::delegate(&ctx, a).await,
        Command::Keys(c) => cmd_tokens::keys(&ctx, c).await,
        Command::Revoke(c) => cmd_principals::revoke(&ctx, c).await,
        Command::Verify(a) => cmd_verify::run(&ctx, a).await,
        Command::Policy(c) => cmd_policy::run(&ctx, c),
        Command::Audit(c) => cmd_audit::run(&ctx, c).await,
        Command::Bench(a) if a.target.as_deref() == Some("gateway") => {
            bench_gateway::run(&ctx, a).await
        }
        Command::Bench(a) if a.target.as_deref() == Some("sandbox") => {
            bench_sandbox::run(&ctx, a).await
        }
        Command::Bench(a) if a.abuse => bench_abuse::run(&ctx, a).await,
        Command::Bench(a) => bench::run(&ctx, a).await,
        Command::Connect(a) => cmd_connect::run(&ctx, a).await,
        Command::Gateway(a) => cmd_gateway::run(&ctx, a).await,
        Command::Upstream(c) => cmd_upstream::run(&ctx, c).await,
        Command::Approvals(c) => cmd_approvals::run(&ctx, c).await,
        Command::Sandbox(c) => cmd_sandbox::run(&ctx, c).await,
        Command::DemoMcp => unreachable!("served before the runtime starts"),
    }
}
