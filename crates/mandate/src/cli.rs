//! The command line, as clap types. Names and flags follow SPEC.md's "Command line" section.

use clap::{Args, Parser, Subcommand};

/// Mandate: per-agent identity, delegated mandates, policy, approvals and audit for AI agent fleets.
#[derive(Debug, Parser)]
#[command(name = "mandate", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The Mandate server URL (default: from MANDATE_HOME/config.toml).
    #[arg(long, global = true, env = "MANDATE_SERVER")]
    pub server: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Development: initialise on first run, then serve everything.
    Up(UpArgs),
    /// Create MANDATE_HOME: issuer key, database and the admin user (with a local key).
    Init(InitArgs),
    /// Serve the authority.
    Serve(ServeArgs),
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Obtain and inspect mandates.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Delegate a mandate to another agent (RFC 8693 token exchange).
    Delegate(DelegateArgs),
    /// Manage the issuer's signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Revoke an agent, a user, a key or one mandate (and everything delegated from it).
    #[command(subcommand)]
    Revoke(RevokeCmd),
    /// Verify mandates as an enforcement point does (`--follow`: a long-running verifier that
    /// follows revocations and answers one presentation per stdin line).
    Verify(VerifyArgs),
    /// Check, evaluate and test Rego policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Read, prove and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Measure token exchange throughput over HTTP on loopback.
    Bench(BenchArgs),
    /// See and vote on calls held for human approval (as a user, with the user's own key).
    #[command(subcommand)]
    Approvals(ApprovalsCmd),
    /// Manage the gateway's upstreams (live: no restart; each change is audited).
    #[command(subcommand)]
    Upstream(UpstreamCmd),
    /// A stdio MCP server for MCP clients: relays to the gateway as an agent, with its own
    /// mandates and DPoP proofs (`--print-config` prints the client configuration). Here
    /// `--server NAME` names the upstream (as SPEC.md says); the Mandate server is the one in
    /// MANDATE_HOME/config.toml or MANDATE_SERVER, or `--gateway URL`.
    Connect(ConnectArgs),
    /// An enforcement point on its own: serves the upstreams of `--config` (default
    /// MANDATE_HOME/gateway.toml) at /mcp/NAME and /http/NAME, authenticating callers against the
    /// authority's keys and revocations, deciding with a local policy, and appending every
    /// decision to the authority's audit log as `--as` (which must hold mandate:audit).
    Gateway(GatewayArgs),
    /// The sandbox stdio upstreams run in (`check`: what this kernel supports, and a self-test).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// The demo MCP server (stdio) that `mandate up --demo` serves as the upstream `demo`.
    #[command(name = "demo-mcp", hide = true)]
    DemoMcp,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
    /// Report what this kernel supports (Landlock ABI, seccomp, user and network namespaces,
    /// how processes are bounded) and prove it: a sandboxed child attempts what a hostile tool
    /// would (read and write outside, connect to 127.0.0.1, signal, ptrace and read the
    /// environment of its parent, make a namespace, exceed its memory and process limits).
    /// Exits non-zero when stdio upstreams could not be sandboxed here.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Load and validate a policy directory (default: the server's policy directory).
    Check {
        /// The directory of .rego and data files.
        dir: Option<std::path::PathBuf>,
    },
    /// Evaluate a query for an input document; prints the decision and the rules that fired.
    Eval {
        /// The input document (JSON; `-` reads standard input).
        #[arg(long)]
        input: std::path::PathBuf,
        /// The query (default: data.mandate.delegation.decision when input.action.kind is
        /// "delegation", else data.mandate.authz.decision).
        #[arg(long)]
        query: Option<String>,
        /// The policy directory (default: the server's policy directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Run the `test_` rules (opa test style); prints `N passed, N failed`.
    Test {
        /// The directory of .rego and data files.
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on (used at first initialisation; later runs use the saved config).
    #[arg(long)]
    pub listen: Option<String>,
    /// Also create a demo fleet: user:alice, agent:planner and agent:coder, with local keys.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Address the server will listen on.
    #[arg(long, default_value = crate::home::DEFAULT_LISTEN)]
    pub listen: String,
    /// Public issuer URL, if clients reach the server by another address than `http://LISTEN`.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Also create the demo fleet (see `mandate up --demo`).
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Server configuration file (default: MANDATE_HOME/server/server.toml).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Override the listen address from the configuration.
    #[arg(long)]
    pub listen: Option<String>,
}

/// A principal's ceiling, as given on the command line.
#[derive(Debug, Args, Clone, Default)]
pub struct CeilingArgs {
    /// Scopes it may hold, space-separated (one string or several values), e.g. "github:* ci:read".
    #[arg(long, num_args = 1..)]
    pub scopes: Vec<String>,
    /// Audiences it may hold mandates for (default: any).
    #[arg(long, num_args = 1..)]
    pub audiences: Vec<String>,
    /// Longest lifetime of its mandates (e.g. 30m, 1h; default 1h).
    #[arg(long)]
    pub max_ttl: Option<String>,
    /// Deepest position in a delegation chain it may hold a mandate at (default 5).
    #[arg(long)]
    pub max_depth: Option<u32>,
    /// Allow bearer (non-DPoP) mandates for it.
    #[arg(long)]
    pub allow_bearer: bool,
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Register an agent. Without --public-key, its key pair is made here (MANDATE_HOME/keys).
    Create {
        name: String,
        /// Its public key: tweetnacl base64, base64url, JWK, OpenSSH or PEM (`@FILE` reads a file).
        #[arg(long, allow_hyphen_values = true)]
        public_key: Option<String>,
        #[command(flatten)]
        ceiling: CeilingArgs,
    },
    /// List agents.
    List,
    /// Show one agent.
    Show { name: String },
    /// Stop an agent getting new mandates (reversible with `enable`). Mandates it already holds
    /// or appears in stay valid at enforcement points until they expire (at most its max_ttl);
    /// `mandate revoke agent NAME` cuts those off at once.
    Disable { name: String },
    /// Re-enable an agent.
    Enable { name: String },
    /// Issue a one-time, expiring code with which the agent's own machine registers its key.
    Enroll {
        name: String,
        /// How long the code stays valid (default 15m).
        #[arg(long)]
        ttl: Option<String>,
        /// The ceiling to create the agent with, if it does not exist yet.
        #[command(flatten)]
        ceiling: CeilingArgs,
    },
    /// On the agent's machine: make its key pair here and register it with an enrollment code.
    Join {
        #[arg(long)]
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Register a user. Without --public-key, its key pair is made here (MANDATE_HOME/keys).
    Create {
        name: String,
        /// Its public key, in any accepted form (`@FILE` reads a file).
        #[arg(long, allow_hyphen_values = true)]
        public_key: Option<String>,
        /// admin or approver.
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        ceiling: CeilingArgs,
    },
    /// List users.
    List,
    /// Show one user.
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Obtain a mandate for P itself (client_credentials, private_key_jwt, DPoP-bound).
    Issue {
        /// The principal (user:NAME or agent:NAME; a bare name means an agent).
        #[arg(long = "as")]
        as_: String,
        /// Audience.
        #[arg(long, num_args = 1..)]
        aud: Vec<String>,
        /// Scopes, space-separated.
        #[arg(long, num_args = 1..)]
        scope: Vec<String>,
        /// Lifetime (e.g. 10m).
        #[arg(long)]
        ttl: Option<String>,
        /// Principal allowed to pull an exchange of this mandate (RFC 8693 may_act).
        #[arg(long)]
        may_act: Option<String>,
        /// Ask for a bearer mandate (only for principals registered with --allow-bearer).
        #[arg(long)]
        bearer: bool,
    },
    /// Verify a mandate against the server's JWKS and print its delegation chain ("-" reads stdin).
    Inspect { token: String },
}

#[derive(Debug, Subcommand)]
pub enum UpstreamCmd {
    /// Add an upstream: an MCP server over Streamable HTTP (--url), over stdio (--stdio -- CMD
    /// ARGS..., run in a sandbox: --allow-read/--allow-write/--allow-net open it up), or an HTTP
    /// API (--http, with --route). MCP is served at /mcp/NAME for audience mcp:NAME, an HTTP API
    /// at /http/NAME/... for http:NAME.
    Add(Box<UpstreamAddArgs>),
    /// List the upstreams (from server.toml and added here).
    List,
    /// Show an upstream: its configuration, the tools it offers and who may call each.
    Show {
        /// The upstream.
        name: String,
    },
    /// Remove an upstream added with `upstream add` (a stdio child is stopped).
    Remove {
        /// The upstream.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct UpstreamAddArgs {
    /// Its name: lower-case letters, digits, '-' and '_'.
    pub name: String,
    /// MCP over Streamable HTTP: the server's URL.
    #[arg(long, conflicts_with_all = ["stdio", "http"])]
    pub url: Option<String>,
    /// A plain HTTP API: its base URL.
    #[arg(long, conflicts_with_all = ["stdio"])]
    pub http: Option<String>,
    /// MCP over stdio: the command and its arguments, after `--`.
    #[arg(long, num_args = 0, requires = "command")]
    pub stdio: bool,
    /// The command (after `--`).
    #[arg(last = true, id = "command")]
    pub command: Vec<String>,
    /// A secret environment variable for a stdio upstream: VAR=@FILE or VAR=env:NAME (repeatable).
    #[arg(long = "secret-env", value_name = "VAR=SOURCE")]
    pub secret_env: Vec<String>,
    /// A secret header for an HTTP upstream: HEADER=@FILE or HEADER=env:NAME (repeatable).
    #[arg(long = "secret-header", value_name = "HEADER=SOURCE")]
    pub secret_header: Vec<String>,
    /// A plain environment value for a stdio upstream: VAR=VALUE (repeatable).
    #[arg(long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// A variable of the gateway's environment passed to a stdio upstream (repeatable; default
    /// PATH HOME LANG TZ).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Tools mapped to a scope other than NAME:TOOL: GLOB=SCOPE (repeatable, first match wins).
    #[arg(long = "scope-rule", value_name = "GLOB=SCOPE")]
    pub scope_rule: Vec<String>,
    /// The audience mandates must name (default mcp:NAME).
    #[arg(long)]
    pub audience: Option<String>,
    /// One call's limit (default 60s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// An HTTP API route: 'METHOD PATH=ACTION' (`*` one segment, `**` any rest; repeatable).
    #[arg(long = "route", value_name = "METHOD PATH=ACTION")]
    pub route: Vec<String>,
    /// stdio: `off` runs the child without its sandbox, with the gateway's rights (audited with
    /// the upstream and shown by `upstream list`). Only for a tool you trust as you trust Mandate.
    #[arg(long, value_parser = ["off"], conflicts_with_all = ["allow_read", "allow_write", "allow_net", "memory", "processes", "disk"])]
    pub sandbox: Option<String>,
    /// stdio sandbox: a path the upstream may read (repeatable; the system's libraries and its
    /// own installation are readable already).
    #[arg(long = "allow-read", value_name = "PATH")]
    pub allow_read: Vec<String>,
    /// stdio sandbox: a path the upstream may read and write (repeatable).
    #[arg(long = "allow-write", value_name = "PATH")]
    pub allow_write: Vec<String>,
    /// stdio sandbox: a TCP destination it may connect to (repeatable; none: no network).
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    pub allow_net: Vec<String>,
    /// stdio sandbox: address space of each process (default 2GiB).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// stdio sandbox: processes and threads, all told (default 256).
    #[arg(long, value_name = "N")]
    pub processes: Option<u64>,
    /// stdio sandbox: size of the private home (default 512MiB).
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// HTTP: send each request a mandate minted for it (`Authorization: Bearer`; the caller's
    /// chain, the call's scope, at most 60 s), for an upstream that checks chains itself.
    #[arg(long)]
    pub forward_mandate: bool,
    /// The audience of forwarded mandates (default: the upstream URL's origin).
    #[arg(long, value_name = "AUDIENCE", requires = "forward_mandate")]
    pub forward_audience: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The agent to act as (its key must be in MANDATE_HOME/keys).
    #[arg(long = "as")]
    pub as_: Option<String>,
    /// The upstream to connect to (served at /mcp/NAME): the global `--server` given on the
    /// command line, moved here by `main` (see `cli::connect_server`).
    #[arg(skip)]
    pub server: Option<String>,
    /// The scopes to ask for (default: NAME:*).
    #[arg(long, allow_hyphen_values = true)]
    pub scope: Option<String>,
    /// The audience to ask for (default: mcp:NAME).
    #[arg(long)]
    pub audience: Option<String>,
    /// The gateway's URL (default: the Mandate server, which serves the gateway too); mandates
    /// still come from the Mandate server.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Lifetime of each mandate asked for (e.g. 10m); it is renewed before it ends.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Print the configuration snippet for an MCP client instead: claude, cursor or vscode.
    #[arg(long, value_name = "CLIENT")]
    pub print_config: Option<String>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The authority's URL (its issuer): mandates, keys, revocations and the audit log are there.
    #[arg(long)]
    pub authority: String,
    /// The gateway's own principal (its key in MANDATE_HOME/keys; it must hold mandate:audit).
    #[arg(long = "as", default_value = "gateway")]
    pub as_: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8701")]
    pub listen: String,
    /// The gateway's configuration: [upstream.NAME] tables as in server.toml, optional [gateway]
    /// and [limits] (default: MANDATE_HOME/gateway.toml, if it exists).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The policy directory, hot-reloaded (default: MANDATE_HOME/policy if it exists, otherwise
    /// the default pack built into this binary).
    #[arg(long)]
    pub policy: Option<std::path::PathBuf>,
    /// The URL agents reach this gateway at (DPoP proofs and RFC 9728 resources name it; default
    /// [gateway] public_url, or http://LISTEN).
    #[arg(long)]
    pub public_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// Who delegates (needs its key in MANDATE_HOME/keys).
    #[arg(long = "as")]
    pub as_: String,
    /// The agent that receives the mandate.
    #[arg(long)]
    pub to: String,
    /// Audience (default: the subject token's).
    #[arg(long, num_args = 1..)]
    pub aud: Vec<String>,
    /// Scopes, space-separated (default: the subject token's).
    #[arg(long, num_args = 1..)]
    pub scope: Vec<String>,
    /// Lifetime (default 10m, never beyond the subject token).
    #[arg(long)]
    pub ttl: Option<String>,
    /// The mandate to delegate from; without it, P first gets its own mandate.
    #[arg(long)]
    pub subject_token: Option<String>,
    /// Why, recorded with the delegation.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Make a new issuer signing key; the old one stays in the JWKS until its last mandate expires.
    Rotate,
    /// Print the issuer's JWKS.
    List,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure: `exchange` (token exchanges, the default), `gateway` (MCP calls
    /// straight to a fast upstream and through the gateway, in the same run) or `sandbox` (a
    /// stdio upstream's start-up and calls, sandboxed and not, in the same run).
    #[arg(value_parser = ["exchange", "gateway", "sandbox"])]
    pub target: Option<String>,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Client assertions and DPoP proofs signed before the clock starts, per measured second
    /// (0 signs every request inline, inside the measurement).
    #[arg(long, default_value_t = 6000)]
    pub presign_per_second: usize,
    /// Measure normal exchanges while the server is abused (idle connections, an unauthenticated
    /// flood, maximal decision batches from other loopback sources): `--seconds` per phase.
    #[arg(long)]
    pub abuse: bool,
    /// sandbox: starts measured, each way.
    #[arg(long, default_value_t = 20)]
    pub starts: usize,
    /// sandbox: a path the measured upstream may read (repeatable).
    #[arg(long = "allow-read", value_name = "PATH")]
    pub allow_read: Vec<String>,
    /// sandbox: the upstream to measure, after `--` (default: this binary's demo server).
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// Requests you may vote on (an admin sees all), newest first.
    List {
        /// Only requests in this state.
        #[arg(long, value_parser = ["pending", "approved", "denied", "expired", "cancelled"])]
        state: Option<String>,
        /// The next page: requests older than this one (the list says when there are more).
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// The user to act as (default: the admin of config.toml).
        #[arg(long = "as", value_name = "P")]
        as_: Option<String>,
    },
    /// One request: the call, its redacted arguments, the chain and the policy's reason.
    Show {
        id: String,
        #[arg(long = "as", value_name = "P")]
        as_: Option<String>,
    },
    /// Approve a request (nobody in its chain may).
    Approve {
        id: String,
        #[arg(long = "as", value_name = "P")]
        as_: Option<String>,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a request; the agent is told your reason.
    Deny {
        id: String,
        #[arg(long = "as", value_name = "P")]
        as_: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw a pending request (a user in its chain, or an admin): a waiting call is told,
    /// and the same call made again asks anew.
    Cancel {
        id: String,
        #[arg(long = "as", value_name = "P")]
        as_: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RevokeCmd {
    /// Emergency cut-off: disable an agent and refuse every mandate it holds or that passes
    /// through it, at once (`agent disable` only stops new mandates).
    Agent {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Disable a user and refuse every mandate issued on its behalf or through it.
    User {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke a key by kid: a principal's key (disabled; mandates bound to it refused) or a
    /// retired issuer key (mandates it signed refused).
    Key {
        /// RFC 7638 thumbprints are base64url and may start with `-`: taken as the value.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke one mandate by jti (or the mandate itself), and every mandate delegated from it.
    Token {
        /// jtis are base64url and may start with `-`: taken as the value.
        #[arg(allow_hyphen_values = true)]
        jti: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The mandate (or an Authorization value `DPoP ...` / `Bearer ...`); not with --follow.
    pub token: Option<String>,
    /// The audience this verifier serves.
    #[arg(long)]
    pub audience: String,
    /// Keep running: follow the revocation feed and read presentations from stdin, one per line
    /// (a JSON object {authorization, dpop, method, url}, an Authorization value, or a bare
    /// mandate presented as Bearer); print one JSON verdict per line.
    #[arg(long)]
    pub follow: bool,
    /// Refuse everything once the last confirmed view of revocations is older than this.
    #[arg(long, default_value = "5s")]
    pub max_staleness: String,
    /// DPoP proof for a one-shot check.
    #[arg(long)]
    pub dpop: Option<String>,
    /// HTTP method the presentation is for (DPoP `htm`).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// URL the presentation is for (DPoP `htu`; default: the audience).
    #[arg(long)]
    pub url: Option<String>,
}

/// Where the audit commands read the log: the database and the issuer keys directory of the
/// server in MANDATE_HOME, unless overridden.
#[derive(Debug, Args, Clone, Default)]
pub struct AuditSource {
    /// The SQLite database (default: the one in the server config).
    #[arg(long)]
    pub database: Option<std::path::PathBuf>,
    /// The issuer keys directory: trusted checkpoint keys and the HMAC key (default: the one
    /// in the server config).
    #[arg(long)]
    pub keys_dir: Option<std::path::PathBuf>,
    /// Server configuration file (default: MANDATE_HOME/server/server.toml).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Which events, for `audit query` and `audit export`.
#[derive(Debug, Args, Clone, Default)]
pub struct TimeRange {
    /// Only events at or after this time: a duration ago (90s, 10m, 1h, 7d), an RFC 3339 time or
    /// a date (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// The newest events (-f: then keep printing new ones as they arrive).
    Tail {
        /// How many events.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: i64,
        /// Keep running and print new events as they are logged.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        source: AuditSource,
    },
    /// Search the events (the newest --limit matches, shown oldest first).
    Query {
        /// The acting principal (a bare name means an agent).
        #[arg(long)]
        principal: Option<String>,
        /// Anyone in the event's delegation chain, or its principal, as Mandate verified them.
        #[arg(long)]
        party: Option<String>,
        /// With --party: also match events where an enforcement point only asserted the party
        /// (the chain it sent with a decision request); such events show it under `asserted`.
        #[arg(long, requires = "party")]
        asserted: bool,
        /// The action; a trailing * matches every action starting with the rest.
        #[arg(long)]
        action: Option<String>,
        /// The event kind (token.issued, token.exchanged, token.refused, policy.decision,
        /// revocation, admin.change, admin.refused, enrollment).
        #[arg(long)]
        kind: Option<String>,
        /// The policy decision.
        #[arg(long, value_parser = ["allow", "deny", "approval"])]
        decision: Option<String>,
        /// The result.
        #[arg(long, value_parser = ["ok", "refused", "failed"])]
        result: Option<String>,
        /// Every event of one approval request (apr_...): the request, each vote, the decision
        /// and the call it released, as one story.
        #[arg(long)]
        approval: Option<String>,
        #[command(flatten)]
        range: TimeRange,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        source: AuditSource,
    },
    /// One event (by event id or seq) with its delegation chain drawn as a tree.
    Show {
        /// Event id (evt_...) or seq.
        id: String,
        #[command(flatten)]
        source: AuditSource,
    },
    /// An inclusion proof of one event in a signed checkpoint, as JSON, to check offline with
    /// `mandate audit verify-proof`.
    Proof {
        /// Event id (evt_...) or seq.
        id: String,
        /// Prove against the checkpoint of this tree size (default: the smallest that covers
        /// the event).
        #[arg(long)]
        tree_size: Option<u64>,
        #[command(flatten)]
        source: AuditSource,
    },
    /// Check a proof made by `mandate audit proof` offline: checkpoint signature and inclusion.
    VerifyProof {
        /// The proof (JSON; `-` reads standard input).
        file: std::path::PathBuf,
        /// A trusted key: a note verifier key (name+id+base64), an Ed25519 public key in any
        /// accepted form, or a file of such keys (one per line, or a JWKS).
        #[arg(long, required = true, allow_hyphen_values = true)]
        key: Vec<String>,
    },
    /// Verify the whole log: every event against the Merkle tree, every checkpoint's signature,
    /// root and consistency with the previous one (the database, or an export with --file).
    Verify {
        /// Verify an export (`mandate audit export`) instead of the database.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// A trusted key: a note verifier key (name+id+base64), an Ed25519 public key in any
        /// accepted form, a file of such keys (one per line, or a JWKS), or an issuer keys
        /// directory. Default with the database: the keys in its issuer keys directory.
        #[arg(long, allow_hyphen_values = true)]
        key: Vec<String>,
        #[command(flatten)]
        source: AuditSource,
    },
    /// Write the whole log (events and signed checkpoints) for offline verification.
    Export {
        /// Output format (only jsonl: one JSON object per line).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        range: TimeRange,
        #[command(flatten)]
        source: AuditSource,
    },
    /// Retention: with the server stopped, verify the whole log, write it to FILE (as `export`
    /// does, then verified offline) and start a new log whose first event records the old one's
    /// final size, root, checkpoint and FILE's SHA-256.
    Archive {
        /// The archive to write (a new file, mode 0600; never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Server configuration file (default: MANDATE_HOME/server/server.toml).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// The redacted form (hmac-sha256:...) of a value under this installation's audit key, to
    /// match a redacted argument.
    Hash {
        /// The value (a string, as the argument held it; `-5` is a value, not a flag).
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// VALUE is JSON (a number, an object...): hash it as the redaction hashes such values.
        #[arg(long)]
        json_value: bool,
        #[command(flatten)]
        source: AuditSource,
    },
}

/// `mandate connect --server NAME`: the global `--server` (normally the Mandate server's URL)
/// names the upstream for `connect`, as SPEC.md's command line does. When it was given on the
/// command line it moves into the connect arguments, and the Mandate server comes from
/// MANDATE_SERVER or config.toml as usual; a value from MANDATE_SERVER keeps its usual meaning.
pub fn connect_server(cli: &mut Cli, matches: &clap::ArgMatches) {
    let Command::Connect(a) = &mut cli.command else {
        return;
    };
    let from_command_line = matches
        .subcommand_matches("connect")
        .and_then(|m| m.value_source("server"))
        == Some(clap::parser::ValueSource::CommandLine);
    if from_command_line {
        a.server = cli.server.take();
        cli.server = std::env::var("MANDATE_SERVER").ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_takes_kids_and_jtis_that_start_with_a_hyphen_as_values() {
        let cli = Cli::try_parse_from(["mandate", "revoke", "key", "-FFlWysn6bw2Q"]).unwrap();
        assert!(
            matches!(cli.command, Command::Revoke(RevokeCmd::Key { kid, .. }) if kid == "-FFlWysn6bw2Q")
        );
        let cli =
            Cli::try_parse_from(["mandate", "revoke", "token", "-x_y", "--reason", "r"]).unwrap();
        assert!(
            matches!(cli.command, Command::Revoke(RevokeCmd::Token { jti, reason: Some(_) }) if jti == "-x_y")
        );
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
