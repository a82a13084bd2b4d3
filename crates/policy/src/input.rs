//! The policy input document (`docs/policy-input.schema.json`) as types. The authority builds
//! delegation inputs and the gateway tool-call inputs with these, so every policy query sees the
//! same shape, built by one piece of code, never by `json!` in a handler.
//!
//! Serialization is the contract: field names, which members are always present (`may_act` is
//! `null` when unset) and which are left out when absent (`holder`, `mcp_method`, ...) follow the
//! schema, and `tests` pin the exact JSON.

use serde::Serialize;
use serde_json::{Map, Value};

/// The whole input document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Input {
    /// Who acts now: the authenticated caller or mandate holder.
    pub principal: Principal,
    /// On whose behalf: the mandate's `sub`, the origin of the chain.
    pub subject: String,
    /// The delegation chain, origin first, current holder last.
    pub chain: Vec<String>,
    /// The mandate's scopes (for a delegation: those that would be granted).
    pub scopes: Vec<String>,
    /// The mandate's audiences.
    pub audience: Vec<String>,
    /// The mandate in use (for a delegation: the one that would be issued), or none.
    pub mandate: Option<MandateFacts>,
    /// What is being attempted.
    pub action: Action,
    /// Facts about the request itself.
    pub context: Context,
}

impl Input {
    /// The input for `action` taken by `caller` under the mandate `claims` (verified, or about to
    /// be issued): subject, chain to the holder, scopes, audiences and the mandate's facts from
    /// the claims.
    pub fn for_mandate(
        caller: &str,
        claims: &mandate_core::MandateClaims,
        action: Action,
        context: Context,
    ) -> Self {
        Input {
            principal: Principal::of(caller),
            subject: claims.sub.clone(),
            chain: claims.chain_to_holder(),
            scopes: claims
                .scope
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            audience: claims.aud.as_slice().to_vec(),
            mandate: Some(MandateFacts {
                jti: claims.jti.clone(),
                iat: claims.iat,
                exp: claims.exp,
                depth: claims.mandate.depth,
                max_depth: claims.mandate.max_depth,
            }),
            action,
            context,
        }
    }

    /// The document as the engine takes it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("the input document serialises")
    }
}

/// `input.principal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// `kind:name`, e.g. `agent:coder`.
    pub id: String,
    /// The kind: `agent` or `user` (AuthZEN callers may pass other subject types).
    #[serde(rename = "type")]
    pub kind: String,
    /// The name without the kind.
    pub name: String,
}

impl Principal {
    /// The principal `id` (`agent:coder`; a bare name is an agent).
    pub fn of(id: &str) -> Self {
        let (kind, name) = id.split_once(':').unwrap_or(("agent", id));
        Principal {
            id: id.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

/// `input.mandate`: the claims policies read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MandateFacts {
    /// Unique id.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Delegation steps from the subject.
    pub depth: u32,
    /// The most delegation steps allowed.
    pub max_depth: u32,
}

/// `input.action`, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// An MCP tool call (or another MCP method on a server).
    Mcp(ToolCall),
    /// An HTTP API call mapped to an action.
    Http(HttpCall),
    /// Issuance or exchange of a mandate.
    Delegation(Delegation),
}

/// A call to a tool of an upstream server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The upstream's name, e.g. `github`.
    pub server: String,
    /// The tool (or the action an HTTP route maps to), e.g. `delete_repo`.
    pub tool: String,
    /// MCP only: the JSON-RPC method, e.g. `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_method: Option<String>,
    /// The scope the enforcement point requires for this call (`server:tool` unless the
    /// upstream maps the tool to another scope), when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The tool's arguments.
    pub arguments: Map<String, Value>,
    /// MCP only: the tool's annotations as the upstream advertised them (hints, not guarantees).
    pub annotations: Map<String, Value>,
    /// Configuration facts about the upstream.
    pub upstream: Upstream,
}

/// An HTTP call: the tool call it maps to, and the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpCall {
    /// The action the route maps to.
    #[serde(flatten)]
    pub call: ToolCall,
    /// The request.
    pub http: HttpRequest,
}

/// `action.http`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    /// The method, upper case.
    pub method: String,
    /// The request path.
    pub path: String,
}

/// `action.upstream`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Upstream {
    /// The upstream's environment, e.g. `production`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Free-form labels.
    pub labels: Map<String, Value>,
}

/// How a mandate is being issued: `action.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DelegationMode {
    /// `client_credentials`: a principal's own mandate.
    #[serde(rename = "self")]
    SelfIssued,
    /// The holder of the subject token delegates to `requested_actor`.
    #[serde(rename = "push")]
    Push,
    /// The caller pulls an exchange of a subject token whose `may_act` names it.
    #[serde(rename = "pull")]
    Pull,
    /// Naming a principal in the new mandate's `may_act` (it may pull later), decided as a
    /// delegation of its own from the caller to that principal.
    #[serde(rename = "may_act")]
    MayAct,
}

impl DelegationMode {
    /// The name policies see.
    pub fn as_str(self) -> &'static str {
        match self {
            DelegationMode::SelfIssued => "self",
            DelegationMode::Push => "push",
            DelegationMode::Pull => "pull",
            DelegationMode::MayAct => "may_act",
        }
    }
}

/// `action` of a delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    /// The OAuth grant type of the token request.
    pub grant_type: String,
    /// How the mandate is being issued.
    pub mode: DelegationMode,
    /// Who authorises this hop.
    pub from: String,
    /// Who will hold the mandate (for `may_act`: who could pull it).
    pub to: String,
    /// Lifetime of the mandate that would be issued, in seconds.
    pub ttl_seconds: i64,
    /// The principal the new mandate's `may_act` names (`null` when none).
    pub may_act: Option<String>,
    /// For a pull: the holder of the subject token, who made no request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

/// `input.context`: the server's clock, its environment and the caller's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    /// Request time, RFC 3339 in UTC, whole seconds.
    pub time: String,
    /// Request time in nanoseconds since the Unix epoch.
    pub time_ns: i128,
    /// The deployment's environment label.
    pub environment: String,
    /// The caller's network address, when known (`null` otherwise).
    pub client_address: Option<String>,
}

impl Context {
    /// The context of a request at `now` (Unix seconds).
    pub fn at(now: i64, environment: &str, client_address: Option<String>) -> Self {
        let time = chrono::DateTime::from_timestamp(now, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        Context {
            time,
            time_ns: i128::from(now) * 1_000_000_000,
            environment: environment.to_string(),
            client_address,
        }
    }

    /// Completes a caller-supplied context object (AuthZEN's `context`): the server's time and
    /// environment always win; the caller's `client_address` is kept when it gave one.
    pub fn complete(&self, ctx: &mut Map<String, Value>) {
        ctx.insert("time".into(), Value::String(self.time.clone()));
        ctx.insert("time_ns".into(), serde_json::json!(self.time_ns));
        ctx.insert(
            "environment".into(),
            Value::String(self.environment.clone()),
        );
        if !ctx.get("client_address").is_some_and(Value::is_string) {
            ctx.insert(
                "client_address".into(),
                self.client_address
                    .clone()
                    .map_or(Value::Null, Value::String),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> MandateFacts {
        MandateFacts {
            jti: "j1".into(),
            iat: 1_764_000_000,
            exp: 1_764_000_300,
            depth: 1,
            max_depth: 3,
        }
    }

    #[test]
    fn a_delegation_input_is_exactly_the_documented_document() {
        let input = Input {
            principal: Principal::of("agent:planner"),
            subject: "user:alice".into(),
            chain: vec![
                "user:alice".into(),
                "agent:planner".into(),
                "agent:coder".into(),
            ],
            scopes: vec!["github:read".into()],
            audience: vec!["https://api.github.com".into()],
            mandate: Some(facts()),
            action: Action::Delegation(Delegation {
                grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                mode: DelegationMode::Push,
                from: "agent:planner".into(),
                to: "agent:coder".into(),
                ttl_seconds: 300,
                may_act: None,
                holder: None,
            }),
            context: Context::at(1_764_000_000, "development", None),
        };
        assert_eq!(
            input.to_value(),
            json!({
                "principal": {"id": "agent:planner", "type": "agent", "name": "planner"},
                "subject": "user:alice",
                "chain": ["user:alice", "agent:planner", "agent:coder"],
                "scopes": ["github:read"],
                "audience": ["https://api.github.com"],
                "mandate": {"jti": "j1", "iat": 1_764_000_000, "exp": 1_764_000_300,
                            "depth": 1, "max_depth": 3},
                "action": {"kind": "delegation",
                           "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                           "mode": "push", "from": "agent:planner", "to": "agent:coder",
                           "ttl_seconds": 300, "may_act": null},
                "context": {"time": "2025-11-24T16:00:00Z", "time_ns": 1_764_000_000_000_000_000_i64,
                            "environment": "development", "client_address": null},
            })
        );
    }

    #[test]
    fn tool_calls_carry_kind_server_tool_and_http_facts() {
        let call = ToolCall {
            scope: None,
            server: "github".into(),
            tool: "delete_repo".into(),
            mcp_method: Some("tools/call".into()),
            arguments: json!({"repo": "acme/app"}).as_object().unwrap().clone(),
            annotations: json!({"destructiveHint": true})
                .as_object()
                .unwrap()
                .clone(),
            upstream: Upstream {
                environment: Some("production".into()),
                labels: Map::new(),
            },
        };
        let v = serde_json::to_value(Action::Mcp(call.clone())).unwrap();
        assert_eq!(v["kind"], "mcp");
        assert_eq!(v["tool"], "delete_repo");
        assert_eq!(v["annotations"]["destructiveHint"], true);
        assert_eq!(v["upstream"]["environment"], "production");
        let http = Action::Http(HttpCall {
            call: ToolCall {
                mcp_method: None,
                ..call
            },
            http: HttpRequest {
                method: "DELETE".into(),
                path: "/repos/acme/app".into(),
            },
        });
        let v = serde_json::to_value(http).unwrap();
        assert_eq!(v["kind"], "http");
        assert_eq!(v["server"], "github");
        assert_eq!(
            v["http"],
            json!({"method": "DELETE", "path": "/repos/acme/app"})
        );
        assert!(v.get("mcp_method").is_none());
    }

    #[test]
    fn the_servers_clock_and_environment_win_over_the_callers_context() {
        let ours = Context::at(0, "production", Some("10.0.0.9".into()));
        let mut theirs =
            json!({"time": "forged", "environment": "dev", "client_address": "1.2.3.4", "x": 1})
                .as_object()
                .unwrap()
                .clone();
        ours.complete(&mut theirs);
        assert_eq!(theirs["time"], "1970-01-01T00:00:00Z");
        assert_eq!(theirs["environment"], "production");
        assert_eq!(theirs["client_address"], "1.2.3.4");
        assert_eq!(theirs["x"], 1);
        let mut empty = Map::new();
        ours.complete(&mut empty);
        assert_eq!(empty["client_address"], "10.0.0.9");
    }

    /// Every member an input holds is one the published schema describes, and every member the
    /// schema requires (for the action's kind too) is there.
    fn assert_matches_schema(input: &Value) {
        let schema: Value =
            serde_json::from_str(include_str!("../../../docs/policy-input.schema.json"))
                .expect("the schema is JSON");
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        for r in names(&schema["required"]) {
            assert!(input.get(&r).is_some(), "input.{r} is required");
        }
        let described = |props: &Value, v: &Value, at: &str| {
            for k in v.as_object().unwrap().keys() {
                assert!(props.get(k).is_some(), "{at}.{k} is not in the schema");
            }
        };
        described(&schema["properties"], input, "input");
        let action_schema = &schema["properties"]["action"];
        let action = &input["action"];
        described(&action_schema["properties"], action, "input.action");
        described(
            &schema["properties"]["context"]["properties"],
            &input["context"],
            "input.context",
        );
        for r in names(&schema["properties"]["context"]["required"]) {
            assert!(
                input["context"].get(&r).is_some(),
                "context.{r} is required"
            );
        }
        let kind = action["kind"].as_str().unwrap();
        for rule in action_schema["allOf"].as_array().unwrap() {
            let cond = &rule["if"]["properties"]["kind"];
            let applies = cond["const"].as_str() == Some(kind)
                || names(&cond["enum"]).iter().any(|k| k == kind);
            if applies {
                for r in names(&rule["then"]["required"]) {
                    assert!(
                        action.get(&r).is_some(),
                        "action.{r} is required for {kind}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_kind_of_input_matches_the_published_schema() {
        let call = ToolCall {
            scope: None,
            server: "github".into(),
            tool: "merge_pr".into(),
            mcp_method: Some("tools/call".into()),
            arguments: Map::new(),
            annotations: Map::new(),
            upstream: Upstream::default(),
        };
        let base = |action| Input {
            principal: Principal::of("agent:coder"),
            subject: "user:alice".into(),
            chain: vec!["user:alice".into(), "agent:coder".into()],
            scopes: vec![],
            audience: vec![],
            mandate: Some(facts()),
            action,
            context: Context::at(0, "test", Some("127.0.0.1".into())),
        };
        for action in [
            Action::Mcp(call.clone()),
            Action::Http(HttpCall {
                call: call.clone(),
                http: HttpRequest {
                    method: "GET".into(),
                    path: "/x".into(),
                },
            }),
            Action::Delegation(Delegation {
                grant_type: "client_credentials".into(),
                mode: DelegationMode::SelfIssued,
                from: "agent:coder".into(),
                to: "agent:coder".into(),
                ttl_seconds: 60,
                may_act: Some("agent:reviewer".into()),
                holder: Some("agent:x".into()),
            }),
        ] {
            assert_matches_schema(&base(action).to_value());
        }
    }
}
