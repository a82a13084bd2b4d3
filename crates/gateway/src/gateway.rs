//! The enforcement point's state and its per-call decision, in the order every call goes through:
//!
//! 1. authenticate ([`Authenticate`]: signature, audience, revocation, DPoP with single-use jti),
//! 2. rate-limit (per agent, [`Gateway::rate_limit`]),
//! 3. build the policy input (the `policy` crate's typed [`Input`]),
//! 4. decide (scope first, then the policy, [`Gateway::judge`]),
//! 5. audit (durable, [`Gateway::record`]; nothing is forwarded when the log cannot be written),
//! 6. inject the upstream's credentials and forward (`serve`).
//!
//! In one process with the authority the hooks are the authority's own (its database as the
//! replay store and audit log); `mandate gateway --authority URL` plugs in remote ones.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mandate_audit::event::Event;
use mandate_audit::sink::AuditSink;
use mandate_core::refusal::jsonrpc as codes;
use mandate_core::{MandateClaims, ScopeSet};
use mandate_policy::input::{Action, Context, Input, ToolCall, Upstream as UpstreamFacts};
use mandate_policy::{Decision, DecisionPoint, Query, Verdict};
use mandate_verify::Refusal;
use serde_json::{Map, Value};

use crate::jsonrpc::RpcError;
use crate::mcp::{Call, ListKind};
use crate::upstream::{Upstream, Upstreams};

pub(crate) mod events;
mod held;
mod tools;

/// A boxed future (object-safe hooks without a macro crate).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a request presents, for [`Authenticate`].
pub struct Presented<'a> {
    /// The request's headers (`Authorization`, `DPoP`).
    pub headers: &'a http::HeaderMap,
    /// Its method.
    pub method: &'a http::Method,
    /// The URL the client used (the DPoP proof's `htu`), without query or fragment.
    pub url: &'a str,
    /// The audience the mandate must name.
    pub audience: &'a str,
    /// The caller's address.
    pub peer: Option<SocketAddr>,
}

/// Verifies a request's mandate: signature, audience, expiry, revocation, the DPoP proof and its
/// single use, and that the holder is still active. Refusals it counts or records itself (a
/// stranger's refusals must not each become an event).
pub trait Authenticate: Send + Sync {
    /// The mandate's claims, or why it is refused.
    fn authenticate<'a>(
        &'a self,
        p: &'a Presented<'a>,
    ) -> BoxFuture<'a, Result<MandateClaims, Refusal>>;

    /// Whether a mandate that was accepted is still good now (not expired, nothing in its chain
    /// revoked): checked while a stream it opened stays open.
    fn still_valid(&self, claims: &MandateClaims, now: i64) -> bool;
}

/// Signs the mandates forwarded to Mandate-aware upstreams (`forward_mandate`): the issuer's
/// current key, in one process with the authority.
pub trait Minter: Send + Sync {
    /// The issuer URL forwarded mandates name.
    fn issuer(&self) -> &str;
    /// `claims` signed as a compact JWS (`typ: at+jwt`).
    fn sign(&self, claims: &MandateClaims) -> String;
}

/// Settings of the enforcement point.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL clients reach the gateway at (no trailing slash): `/mcp/NAME` is below it, and it
    /// is the base of DPoP `htu`s and RFC 9728 resources.
    pub public_url: String,
    /// The authorization server clients get mandates from (the issuer).
    pub authorization_server: String,
    /// The environment label policies see (`input.context.environment`).
    pub environment: String,
    /// Calls per second one agent may make through the gateway (0: no limit).
    pub per_agent_rps: u32,
    /// Burst allowance per agent.
    pub per_agent_burst: u32,
    /// Largest request body taken, in bytes.
    pub max_body: usize,
    /// Largest upstream answer that is read whole (a list to filter), in bytes.
    pub max_list_body: usize,
    /// How long a call held for approval waits for its quorum before its caller is told the
    /// request is pending (the request itself stays open until its own expiry).
    pub approval_hold: std::time::Duration,
}

impl Settings {
    /// Defaults for a gateway at `public_url` using `authorization_server`.
    pub fn new(public_url: &str, authorization_server: &str, environment: &str) -> Self {
        Settings {
            public_url: public_url.trim_end_matches('/').to_string(),
            authorization_server: authorization_server.trim_end_matches('/').to_string(),
            environment: environment.to_string(),
            per_agent_rps: 100,
            per_agent_burst: 200,
            max_body: 4 * 1024 * 1024,
            max_list_body: 8 * 1024 * 1024,
            approval_hold: std::time::Duration::from_secs(60),
        }
    }
}

/// The gateway.
pub struct Gateway {
    /// The upstreams served.
    pub upstreams: Upstreams,
    /// Settings.
    pub settings: Settings,
    authn: Arc<dyn Authenticate>,
    policy: Arc<DecisionPoint>,
    audit: Arc<dyn AuditSink>,
    minter: Option<Arc<dyn Minter>>,
    approvals: Option<Arc<dyn crate::approvals::Approvals>>,
    held_calls: crate::approvals::PerPrincipal,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    /// The HTTP client for upstreams (no redirects: a redirect would carry injected credentials
    /// elsewhere).
    pub http: reqwest::Client,
    /// Which caller opened which upstream session.
    pub sessions: crate::sessions::Owners,
    /// Counters and histograms for `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

/// What the gateway decided about one request message.
#[derive(Debug)]
pub enum Judgement {
    /// Protocol plumbing (`initialize`, `ping`, notifications): forwarded, not decided.
    Pass,
    /// A list: forwarded, its answer filtered to what the caller may use.
    List(ListKind),
    /// Allowed by scope and policy.
    Allowed {
        /// The scope the call needed (what a forwarded mandate carries).
        scope: String,
    },
    /// The mandate does not hold the scope the call needs (403 `insufficient_scope` when the
    /// request is a single message).
    NeedsScope {
        /// The scope needed.
        scope: String,
        /// Why, in words.
        message: String,
    },
    /// Refused: the JSON-RPC error to answer with.
    Refused(RpcError),
}

/// A judged request message and the event that records it.
pub struct Judged {
    /// The decision.
    pub judgement: Judgement,
    /// Its audit event (not yet recorded); none for plumbing.
    pub event: Option<Event>,
}

/// JSON values in a request body that count as one more call against the agent's rate
/// ([`Gateway::rate_limit_values`]): with the default 100 calls/s, an agent can make the gateway
/// read at most about 25,000 values a second (plus its burst), whatever it packs them into.
pub const VALUES_PER_CALL: usize = 250;

/// Body bytes that count as one more call, charged before the body is parsed, so that a body
/// refused for the caller's rate costs no parsing: a call under 16 KiB costs no more than one.
pub const BYTES_PER_CALL: usize = 16 * 1024;

/// Why a call counted as more than one against the rate (said in the `429`).
pub const BODY_COUNTS: &str =
    " (a body counts one call more per 16 KiB or per 250 JSON values, whichever is more)";

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Client requests forwarded without a decision: the session's own plumbing (MCP 2025-06-18 to
/// 2026-07-28). `tasks/*` are not among them: a task's result belongs to the caller whose call
/// made it, and the gateway does not yet track that, so they are refused as unknown.
pub const PASSED_METHODS: [&str; 3] = ["initialize", "ping", "logging/setLevel"];

/// Client notifications forwarded; any other notification is refused.
pub const PASSED_NOTIFICATIONS: [&str; 4] = [
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// The scope reading a resource of upstream `u` needs (resource URIs are not scope tokens).
pub fn resources_scope(u: &str) -> String {
    format!("{u}:resources/read")
}

/// The scope getting a prompt of upstream `u` needs.
pub fn prompts_scope(u: &str) -> String {
    format!("{u}:prompts/get")
}

impl Gateway {
    /// A gateway with these hooks.
    pub fn new(
        settings: Settings,
        authn: Arc<dyn Authenticate>,
        policy: Arc<DecisionPoint>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        let limiter = NonZeroU32::new(settings.per_agent_rps).map(|rps| {
            let burst = NonZeroU32::new(settings.per_agent_burst.max(settings.per_agent_rps))
                .unwrap_or(rps);
            RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("the HTTP client builds");
        Gateway {
            upstreams: Upstreams::default(),
            settings,
            authn,
            policy,
            audit,
            minter: None,
            approvals: None,
            held_calls: crate::approvals::PerPrincipal::new(
                crate::approvals::MAX_HELD_PER_PRINCIPAL,
            ),
            limiter,
            clock: DefaultClock::default(),
            http,
            sessions: crate::sessions::Owners::default(),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// With `minter` signing the mandates forwarded to upstreams that ask for them (without
    /// one, such upstreams' calls are refused, never forwarded without their mandate).
    pub fn with_minter(mut self, minter: Arc<dyn Minter>) -> Self {
        self.minter = Some(minter);
        self
    }

    /// With `approvals` holding calls the policy sends to humans (without it, such calls are
    /// refused as needing an approval this gateway cannot hold).
    pub fn with_approvals(mut self, approvals: Arc<dyn crate::approvals::Approvals>) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// The mandate to send with one request to `up` made under `claims` for calls needing
    /// `scopes` (none: a request that runs no tool, which carries the caller's scopes): `None`
    /// when `up` takes none, its `jti` and the `Authorization` value otherwise. An error means
    /// the request must not be forwarded.
    pub fn forwarded_mandate(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        scopes: &[&str],
    ) -> Result<Option<(String, http::HeaderValue)>, RpcError> {
        let Some(audience) = &up.checked.forward_audience else {
            return Ok(None);
        };
        let unavailable = |why: String| {
            tracing::error!(upstream = %up.name, jti = %claims.jti, error = %why, "no mandate to forward");
            RpcError::new(
                codes::UNAVAILABLE,
                format!(
                    "upstream {} takes a mandate minted for each call and none could be made; the call was not forwarded",
                    up.name
                ),
            )
        };
        let minter = self
            .minter
            .as_ref()
            .ok_or_else(|| unavailable("this gateway cannot mint mandates".into()))?;
        let scope = if scopes.is_empty() {
            let held = held_scopes(claims);
            ScopeSet::from_scopes(held.iter().filter(|s| !s.is_reserved()).cloned().collect())
        } else {
            ScopeSet::parse(&scopes.join(" ")).map_err(|e| unavailable(e.to_string()))?
        };
        let jti = mandate_core::claims::new_jti(&mut rand::rngs::OsRng);
        let forwarded = mandate_core::delegation::for_upstream_call(
            mandate_core::delegation::Mint {
                issuer: minter.issuer(),
                jti: &jti,
                now: now(),
            },
            claims,
            audience,
            &scope,
        )
        .map_err(|e| unavailable(e.to_string()))?;
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", minter.sign(&forwarded)))
            .map_err(|_| unavailable("the signed mandate is not a header value".into()))?;
        value.set_sensitive(true);
        Ok(Some((jti, value)))
    }

    /// Step 1: the caller's verified mandate.
    pub async fn authenticate(&self, p: &Presented<'_>) -> Result<MandateClaims, Refusal> {
        let claims = self.authn.authenticate(p).await?;
        // A mandate minted for one forwarded call is for that upstream alone: never good at the
        // gateway, whichever upstream's audience it happens to name (one upstream's
        // forward_audience could be another's gateway audience).
        if claims.mandate.forwarded {
            return Err(Refusal::new(
                mandate_verify::RefusalCode::WrongAud,
                "this mandate was minted for one forwarded call and is good only at that upstream: present your own mandate",
            ));
        }
        Ok(claims)
    }

    /// Whether `claims` are still good now (not revoked, not expired): checked again once a
    /// request's body has arrived, which may be seconds after its headers were authenticated.
    pub fn still_valid(&self, claims: &MandateClaims) -> bool {
        self.authn.still_valid(claims, now())
    }

    /// Ends when `claims` stop being good (checked every 250 ms, first 250 ms from now: they
    /// were just checked): a stream opened, or a call still in flight, under a mandate is ended
    /// within a second of its revocation or expiry. Until its first check it costs one timer.
    pub fn until_invalid(
        self: &Arc<Self>,
        claims: MandateClaims,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let gw = self.clone();
        async move {
            let every = std::time::Duration::from_millis(250);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if !gw.authn.still_valid(&claims, now()) {
                    tracing::info!(principal = %claims.client_id, jti = %claims.jti, "stream closed: its mandate was revoked or expired");
                    return;
                }
            }
        }
    }

    /// Step 2: takes one call from the agent's allowance; `Err(seconds)` says when to retry.
    pub fn rate_limit(&self, principal: &str) -> Result<(), u64> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        l.check_key(&principal.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs().max(1)
        })
    }

    /// Takes `n` more calls (the rest of a batch) from the agent's allowance.
    pub fn rate_limit_more(&self, principal: &str, n: usize) -> Result<(), u64> {
        let (Some(l), Some(n)) = (&self.limiter, NonZeroU32::new(n as u32)) else {
            return Ok(());
        };
        match l.check_key_n(&principal.to_string(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now()).as_secs().max(1)),
            // More than the burst at once: never allowed; the batch must be smaller.
            Err(_) => Err(60),
        }
    }

    /// Charges a request body's bytes against the agent's rate, before the body is parsed (so
    /// a body refused for the rate costs no parsing): one call more per [`BYTES_PER_CALL`], on
    /// top of the one the request was charged. Returns the calls charged.
    pub fn rate_limit_bytes(&self, principal: &str, bytes: usize) -> Result<usize, u64> {
        let n = self.size_charge(bytes / BYTES_PER_CALL, 1);
        self.rate_limit_more(principal, n).map(|()| n)
    }

    /// Charges the body's JSON values once it is parsed: one call more per [`VALUES_PER_CALL`],
    /// less what its bytes paid for ([`Gateway::rate_limit_bytes`]), so a body counts for the
    /// larger of the two. `already` calls were charged for the request, its bytes' included.
    pub fn rate_limit_values(
        &self,
        principal: &str,
        bytes: usize,
        values: usize,
        already: usize,
    ) -> Result<(), u64> {
        let units = (values / VALUES_PER_CALL).saturating_sub(bytes / BYTES_PER_CALL);
        self.rate_limit_more(principal, self.size_charge(units, already))
    }

    /// `units`, but at most what the burst leaves after the `already` charged: what a body costs
    /// grows with its size, and any body within the size bounds can still go through once the
    /// agent's allowance is full.
    fn size_charge(&self, units: usize, already: usize) -> usize {
        let burst = self
            .settings
            .per_agent_burst
            .max(self.settings.per_agent_rps) as usize;
        units.min(burst.saturating_sub(already))
    }

    /// Forgets agents whose allowance is full again.
    pub fn forget_idle_agents(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Steps 3 and 4 for one request message: scope, then the policy on the exact call. Lists
    /// and protocol plumbing are not decided (lists are filtered on the way back). `body` is the
    /// request's raw body (a call held for approval is bound to exactly what it says).
    #[allow(clippy::too_many_arguments)]
    pub async fn judge(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        method: &str,
        params: Option<&Value>,
        call: Call,
        peer: Option<SocketAddr>,
        body: &[u8],
    ) -> Judged {
        let held = held_scopes(claims);
        let (tool, arguments, required) = match call {
            Call::List(kind) => {
                let ev = self
                    .event(up, claims, method, None)
                    .on(format!("{}/{method}", up.name));
                return Judged {
                    judgement: Judgement::List(kind),
                    event: Some(ev),
                };
            }
            Call::Method(m) => return self.judge_method(up, claims, &m, params, &held),
            Call::Tool { name, arguments } => {
                let required = required_scope(up, &name);
                (name, arguments, required)
            }
            Call::ReadResource { uri } => {
                let mut a = Map::new();
                a.insert("uri".into(), Value::String(uri));
                (method.to_string(), a, Ok(resources_scope(&up.name)))
            }
            Call::GetPrompt { name, arguments } => {
                let mut a = Map::new();
                a.insert("name".into(), Value::String(name));
                a.insert("arguments".into(), Value::Object(arguments));
                (method.to_string(), a, Ok(prompts_scope(&up.name)))
            }
        };
        if method == "tools/call" && !self.learn_tools_for(up, &claims.sub).await {
            // The annotations decide how a call is treated (destructiveHint holds it for a
            // human): a call whose tool's annotations could never be learned is not made.
            // A stdio child that is down says why (restarting after a limit killed it, or a
            // sandbox that could not be set up).
            let down = match &up.link {
                crate::upstream::Link::Stdio(s) if !s.is_running() => format!(
                    ": it is not running ({})",
                    s.last_error()
                        .unwrap_or_else(|| "starting or restarting".into())
                ),
                _ => String::new(),
            };
            let why = format!(
                "the gateway could not learn the tools of upstream {}{down} (their annotations decide how a call is treated), so the call was not made; retry later",
                up.name
            );
            let ev = self
                .event(up, claims, method, None)
                .on(format!("{}/{tool}", up.name))
                .refused("annotations_unavailable", &why);
            return Judged {
                judgement: Judgement::Refused(RpcError::new(codes::UNAVAILABLE, why)),
                event: Some(ev),
            };
        }
        let action = Action::Mcp(ToolCall {
            scope: required.as_ref().ok().cloned(),
            server: up.name.clone(),
            tool: tool.clone(),
            mcp_method: Some(method.to_string()),
            arguments,
            annotations: up.annotations(&tool),
            upstream: upstream_facts(up),
        });
        self.decide_call(
            up,
            claims,
            &format!("mcp.{method}"),
            &tool,
            required,
            action,
            peer,
            &held,
            body,
        )
        .await
    }

    /// The policy's decision on tool call `tool` with `arguments` on upstream `server` by the
    /// holder of `claims`, as a call through this gateway would be decided (its scope, the
    /// tool's annotations, learned first if unknown, and the upstream's facts), without making
    /// or recording it: what a CIBA request asks before it is opened (whether the call may be
    /// made at all, and who must approve it). An error when the upstream is not served here or
    /// its tools cannot be learned.
    pub async fn decide_tool_call(
        &self,
        claims: &MandateClaims,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<Decision, String> {
        let up = self
            .upstreams
            .get(server)
            .ok_or_else(|| format!("no upstream {server} is served here"))?;
        if !self.learn_tools_for(&up, &claims.sub).await {
            return Err(format!(
                "the tools of upstream {server} could not be learned (their annotations decide how a call is treated); retry later"
            ));
        }
        let action = Action::Mcp(ToolCall {
            scope: required_scope(&up, tool).ok(),
            server: up.name.clone(),
            tool: tool.to_string(),
            mcp_method: Some("tools/call".into()),
            arguments,
            annotations: up.annotations(tool),
            upstream: upstream_facts(&up),
        });
        let context = Context::at(now(), &self.settings.environment, None);
        let input = Input::for_mandate(&claims.client_id, claims, action, context).to_value();
        Ok(self.policy.decide(Query::Authz, &input).await)
    }

    /// Steps 3 and 4 for an HTTP API request that a route maps to the action `tool`: the same
    /// scope check, policy query and event as an MCP tool call, with `action.kind = "http"` and
    /// the method and path. `arguments` are the query parameters, then the JSON body's members.
    #[allow(clippy::too_many_arguments)]
    pub async fn judge_http(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        method: &str,
        path: &str,
        tool: &str,
        arguments: Map<String, Value>,
        peer: Option<SocketAddr>,
        body: &[u8],
    ) -> Judged {
        let held = held_scopes(claims);
        let required = required_scope(up, tool);
        let mut annotations = Map::new();
        if matches!(method, "GET" | "HEAD" | "OPTIONS") {
            annotations.insert("readOnlyHint".into(), Value::Bool(true));
        }
        let action = Action::Http(mandate_policy::input::HttpCall {
            call: ToolCall {
                scope: required.as_ref().ok().cloned(),
                server: up.name.clone(),
                tool: tool.to_string(),
                mcp_method: None,
                arguments,
                annotations,
                upstream: upstream_facts(up),
            },
            http: mandate_policy::input::HttpRequest {
                method: method.to_string(),
                path: path.to_string(),
            },
        });
        self.decide_call(
            up,
            claims,
            &format!("http.{method}"),
            tool,
            required,
            action,
            peer,
            &held,
            body,
        )
        .await
    }

    /// Scope, then policy, for one call; the event that records it.
    #[allow(clippy::too_many_arguments)]
    async fn decide_call(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        label: &str,
        tool: &str,
        required: Result<String, String>,
        action: Action,
        peer: Option<SocketAddr>,
        held: &ScopeSet,
        body: &[u8],
    ) -> Judged {
        let holder = claims.client_id.as_str();
        let resource = format!("{}/{tool}", up.name);
        let context = Context::at(
            now(),
            &self.settings.environment,
            peer.map(|p| p.ip().to_string()),
        );
        let input = Input::for_mandate(holder, claims, action, context).to_value();
        // Scope first: a tool outside the mandate's scopes is refused the same way whether or not
        // the upstream has it, so a hidden tool cannot be told from a missing one.
        let scope = match required {
            Ok(s) => s,
            Err(why) => {
                let ev = self
                    .event_as(up, claims, label, Some(&input))
                    .on(resource)
                    .refused("insufficient_scope", &why);
                return Judged {
                    judgement: Judgement::Refused(RpcError::new(codes::FORBIDDEN, why)),
                    event: Some(ev),
                };
            }
        };
        let covered = mandate_core::Scope::parse(&scope).is_ok_and(|s| held.covers(&s));
        if !covered {
            let message = format!(
                "{tool} on {} needs scope {scope}, which this mandate does not hold: ask for a mandate with it",
                up.name
            );
            let ev = self
                .event_as(up, claims, label, Some(&input))
                .on(resource)
                .refused("insufficient_scope", &message);
            // The refusal names its rule and the event that records it (there is no policy
            // decision: the scope check comes first).
            let message = format!("{message} (rule: scope; audit event {})", ev.id);
            return Judged {
                judgement: Judgement::NeedsScope { scope, message },
                event: Some(ev),
            };
        }
        let decision = self.policy.decide(Query::Authz, &input).await;
        let mut ev = self.event_as(up, claims, label, None).on(resource).decided(
            decision.outcome().as_str(),
            decision.decision_id(),
            decision.policy_version(),
            decision.reasons(),
        );
        ev.details
            .insert("action".into(), self.recorded_action(&input, &decision));
        let judgement = match decision.verdict() {
            // A mandate carrying authorization_details (bought by a CIBA approval) is good for
            // the one call they name, once, whatever the policy would say of another.
            Verdict::Allow if claims.authorization_details.is_some() => {
                let none = mandate_policy::Approval {
                    approvers: vec![],
                    quorum: 1,
                    reason: None,
                    expires_in: None,
                };
                self.held_for_approval(
                    up, claims, tool, &input, body, &none, &decision, &mut ev, scope,
                )
                .await
            }
            Verdict::Allow => Judgement::Allowed { scope },
            Verdict::Deny { error } => {
                if let Some(e) = error {
                    ev.reasons.push(e.clone());
                }
                ev.result = "refused".into();
                ev.error = Some("forbidden".into());
                Judgement::Refused(refusal(
                    codes::FORBIDDEN,
                    "refused by policy",
                    &decision,
                    tool,
                    &up.name,
                ))
            }
            Verdict::NeedsApproval(a) => {
                ev.details.insert(
                    "approval".into(),
                    serde_json::to_value(a).unwrap_or_default(),
                );
                self.held_for_approval(up, claims, tool, &input, body, a, &decision, &mut ev, scope)
                    .await
            }
        };
        Judged {
            judgement,
            event: Some(ev),
        }
    }

    /// A method that runs no tool: protocol plumbing passes; subscribing to resources and
    /// completing a prompt's or a resource's arguments need the scope that reading them needs; any
    /// other method is refused as unknown (fail closed: a method the gateway does not know might
    /// be one an upstream would act on without the policy having seen it).
    fn judge_method(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        method: &str,
        params: Option<&Value>,
        held: &ScopeSet,
    ) -> Judged {
        let covers = |s: &str| mandate_core::Scope::parse(s).is_ok_and(|s| held.covers(&s));
        let needs = match method {
            m if PASSED_METHODS.contains(&m) => {
                return Judged {
                    judgement: Judgement::Pass,
                    event: None,
                }
            }
            "resources/subscribe" | "resources/unsubscribe" => resources_scope(&up.name),
            "completion/complete" => {
                match params
                    .and_then(|p| p.pointer("/ref/type"))
                    .and_then(Value::as_str)
                {
                    Some("ref/prompt") => prompts_scope(&up.name),
                    _ => resources_scope(&up.name),
                }
            }
            _ => {
                // Quoted and escaped: the caller wrote it, and it may hold line breaks or terminal escapes.
                let why = format!("Method not found: {method:?} (the gateway forwards only the MCP methods it knows)");
                // The caller wrote the method name: it is recorded in the (scrubbed) resource
                // and reason, never as the action label, which names what the gateway knows.
                let ev = self
                    .event_as(up, claims, "mcp.unknown_method", None)
                    .on(format!("{}/{method}", up.name))
                    .refused("method_not_found", &why);
                let data = serde_json::json!({"rule": "known_methods", "event_id": ev.id});
                return Judged {
                    judgement: Judgement::Refused(
                        RpcError::new(codes::METHOD_NOT_FOUND, why).with_data(data),
                    ),
                    event: Some(ev),
                };
            }
        };
        if covers(&needs) {
            return Judged {
                judgement: Judgement::Pass,
                event: None,
            };
        }
        let message = format!(
            "{method} on {} needs scope {needs}, which this mandate does not hold",
            up.name
        );
        let ev = self
            .event(up, claims, method, None)
            .on(format!("{}/{method}", up.name))
            .refused("insufficient_scope", &message);
        let message = format!("{message} (rule: scope; audit event {})", ev.id);
        Judged {
            judgement: Judgement::NeedsScope {
                scope: needs,
                message,
            },
            event: Some(ev),
        }
    }
}

/// The JSON-RPC error of a refused call: why (the policy's reasons), which decision, which
/// policy version. Reasons were written by the policy about the call; the arguments are not
/// echoed.
fn refusal(code: i64, what: &str, d: &Decision, tool: &str, upstream: &str) -> RpcError {
    let reasons = mandate_core::secrets::scrub_secrets_with(
        &d.reasons_line(),
        &mandate_audit::event::is_secret_key,
    )
    .into_owned();
    let mut message = format!(
        "{what}: {tool} on {upstream}: {reasons} (decision {})",
        d.decision_id()
    );
    if let Some(e) = d.error() {
        message.push_str(&format!("; the policy could not decide: {e}"));
    }
    let mut data = serde_json::json!({
        "decision_id": d.decision_id(),
        "policy_version": d.policy_version(),
        "reasons": d.reasons(),
        "outcome": d.outcome().as_str(),
    });
    if let Some(a) = d.approval() {
        data["approval"] = serde_json::to_value(a).unwrap_or_default();
    }
    RpcError::new(code, message).with_data(data)
}

/// The upstream facts policies see (`action.upstream`).
fn upstream_facts(up: &Upstream) -> UpstreamFacts {
    UpstreamFacts {
        environment: up.config.environment.clone(),
        labels: up
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    }
}

/// The scopes a verified mandate holds (none when they do not parse: fail closed).
pub fn held_scopes(claims: &MandateClaims) -> ScopeSet {
    ScopeSet::parse(&claims.scope).unwrap_or_else(|_| ScopeSet::from_scopes(vec![]))
}

/// The scope `tool` of `up` needs, or why nobody can call it.
fn required_scope(up: &Upstream, tool: &str) -> Result<String, String> {
    up.checked
        .scopes
        .required(tool)
        .map(|s| s.as_str().to_string())
        .map_err(|e| e.to_string())
}

/// Whether a caller holding `claims`' scopes may see list item `name` of `up`.
pub fn visible(up: &Upstream, held: &ScopeSet, kind: ListKind, name: &str) -> bool {
    let covers = |s: &str| mandate_core::Scope::parse(s).is_ok_and(|s| held.covers(&s));
    match kind {
        ListKind::Tools => up.checked.scopes.allows(held, name),
        ListKind::Resources | ListKind::ResourceTemplates => covers(&resources_scope(&up.name)),
        ListKind::Prompts => covers(&prompts_scope(&up.name)),
    }
}
