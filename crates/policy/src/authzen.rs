//! OpenID AuthZEN 1.0 <-> Mandate's policy input, both ways (pure).
//!
//! Request to input (Mandate as the PDP):
//! - `subject {type, id, properties}` -> `principal` (`id` "agent:coder", or `type:id` when the id
//!   has no `:`); `properties.chain`, `scopes` (array or space-separated string), `audience`,
//!   `subject`, `mandate` are copied when given, else the chain is the principal alone.
//! - `resource {type: "mcp_tool", id: TOOL, properties {server, annotations, upstream}}` ->
//!   an MCP tool call (`action.name` is the MCP method, default `tools/call`);
//!   `resource {type: "http_route", id: PATH, properties {server, action, upstream}}` -> an HTTP
//!   call whose method is `action.name`; any other type passes through as `action.kind`.
//! - `action.properties.arguments` -> `action.arguments`; `context` members are copied into
//!   `context` (the server then sets `time`, `time_ns` and `environment` itself).
//!
//! Input to request (Mandate asking an external AuthZEN PDP) is the inverse.

use serde_json::{json, Map, Value};

use crate::decision::{Decision, Outcome, Query};

/// Most entries of an asserted chain (a mandate's chain is at most 17 long: 16 hops and a root).
pub const MAX_CHAIN: usize = 17;
/// Most scopes and audiences an evaluation may list.
pub const MAX_LIST: usize = 128;
/// Longest identifier (subject, resource, action, chain entry, server), in bytes.
pub const MAX_ID: usize = 256;

/// An identifier a caller sends: bounded, and free of control characters (which would reach an
/// operator's terminal through the audit log).
fn check_id(what: &str, v: &str) -> Result<(), String> {
    if v.len() > MAX_ID {
        return Err(format!("{what} is longer than {MAX_ID} bytes"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

fn check_list(what: &str, v: &Option<Vec<Value>>, max: usize) -> Result<(), String> {
    let Some(v) = v else { return Ok(()) };
    if v.len() > max {
        return Err(format!("{what} has {} entries; at most {max}", v.len()));
    }
    for x in v {
        check_id(what, x.as_str().unwrap_or_default())?;
    }
    Ok(())
}

fn obj<'a>(v: &'a Value, name: &str) -> Result<&'a Map<String, Value>, String> {
    v.get(name)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{name} is required and must be an object"))
}

fn string<'a>(o: &'a Map<String, Value>, owner: &str, name: &str) -> Result<&'a str, String> {
    o.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{owner}.{name} is required and must be a non-empty string"))
}

fn list(v: Option<&Value>, what: &str) -> Result<Option<Vec<Value>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(|x| json!(x)).collect())),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(Some(a.clone())),
        Some(_) => Err(format!("{what} must be a string or an array of strings")),
    }
}

/// Builds the policy input for one AuthZEN evaluation request (already merged with the batch
/// defaults). Context members `time`, `time_ns` and `environment` are for the caller to set.
pub fn input_from_request(req: &Value) -> Result<Value, String> {
    let subject = obj(req, "subject")?;
    let resource = obj(req, "resource")?;
    let action = obj(req, "action")?;
    let context = match req.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err("context must be an object".into()),
    };
    let stype = string(subject, "subject", "type")?;
    let sid = string(subject, "subject", "id")?;
    check_id("subject.type", stype)?;
    check_id("subject.id", sid)?;
    let principal_id = if sid.contains(':') {
        sid.to_string()
    } else {
        format!("{stype}:{sid}")
    };
    let (ptype, pname) = principal_id.split_once(':').unwrap_or((stype, sid));
    let empty = Map::new();
    let sprops = match subject.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err("subject.properties must be an object".into()),
    };
    let chain = list(sprops.get("chain"), "subject.properties.chain")?;
    check_list("subject.properties.chain", &chain, MAX_CHAIN)?;
    let chain = chain.unwrap_or_else(|| vec![json!(principal_id)]);
    let scopes = list(
        sprops.get("scopes").or(sprops.get("scope")),
        "subject.properties.scopes",
    )?;
    check_list("subject.properties.scopes", &scopes, MAX_LIST)?;
    let scopes = scopes.unwrap_or_default();
    let audience = list(sprops.get("audience"), "subject.properties.audience")?;
    check_list("subject.properties.audience", &audience, MAX_LIST)?;
    let audience = audience.unwrap_or_default();
    let on_behalf = sprops
        .get("subject")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| chain.first().and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| principal_id.clone());

    let rtype = string(resource, "resource", "type")?;
    let rid = string(resource, "resource", "id")?;
    check_id("resource.type", rtype)?;
    check_id("resource.id", rid)?;
    let rprops = match resource.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err("resource.properties must be an object".into()),
    };
    let aname = string(action, "action", "name")?;
    check_id("action.name", aname)?;
    let aprops = match action.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err("action.properties must be an object".into()),
    };
    let mut a = Map::new();
    let server = rprops.get("server").cloned().unwrap_or(Value::Null);
    match &server {
        Value::Null => {}
        Value::String(s) => check_id("resource.properties.server", s)?,
        _ => return Err("resource.properties.server must be a string".into()),
    }
    for k in ["annotations", "upstream"] {
        match rprops.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) if o.len() <= 32 => {
                for key in o.keys() {
                    check_id(&format!("resource.properties.{k} member"), key)?;
                }
            }
            Some(_) => {
                return Err(format!(
                    "resource.properties.{k} must be an object of at most 32 members"
                ))
            }
        }
    }
    let mandate = match sprops.get("mandate") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(m)) => {
            if let Some(j) = m.get("jti") {
                check_id(
                    "subject.properties.mandate.jti",
                    j.as_str()
                        .ok_or("subject.properties.mandate.jti must be a string")?,
                )?;
            }
            Value::Object(m.clone())
        }
        Some(_) => return Err("subject.properties.mandate must be an object".into()),
    };
    if let Some(s) = sprops.get("subject").and_then(Value::as_str) {
        check_id("subject.properties.subject", s)?;
    }
    match rtype {
        "mcp_tool" | "tool" => {
            a.insert("kind".into(), json!("mcp"));
            a.insert("tool".into(), json!(rid));
            a.insert(
                "mcp_method".into(),
                json!(if aname == "call" { "tools/call" } else { aname }),
            );
        }
        "http_route" | "http" => {
            a.insert("kind".into(), json!("http"));
            let tool = match rprops.get("action") {
                None | Some(Value::Null) => rid,
                Some(Value::String(a)) => {
                    check_id("resource.properties.action", a)?;
                    a
                }
                Some(_) => return Err("resource.properties.action must be a string".into()),
            };
            a.insert("tool".into(), json!(tool));
            a.insert(
                "http".into(),
                json!({"method": aname.to_ascii_uppercase(), "path": rid}),
            );
        }
        other => {
            a.insert("kind".into(), json!(other));
            a.insert("tool".into(), json!(rid));
            a.insert("name".into(), json!(aname));
        }
    }
    if !server.is_null() {
        a.insert("server".into(), server);
    }
    for k in ["annotations", "upstream"] {
        if let Some(v) = rprops.get(k) {
            a.insert(k.into(), v.clone());
        }
    }
    let arguments = aprops
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !arguments.is_object() {
        return Err("action.properties.arguments must be an object".into());
    }
    a.insert("arguments".into(), arguments);
    Ok(json!({
        "principal": {"id": principal_id, "type": ptype, "name": pname},
        "subject": on_behalf,
        "chain": chain,
        "scopes": scopes,
        "audience": audience,
        "mandate": mandate,
        "action": a,
        "context": context,
    }))
}

/// The AuthZEN response for a decision: `decision` is true only for an outright allow; the
/// context carries the id, version, reasons and any approval.
pub fn response(d: &Decision) -> Value {
    let mut ctx = json!({
        "decision_id": d.decision_id(),
        "policy_version": d.policy_version(),
        "reasons": d.reasons(),
        "reason_admin": {"en": d.reasons_line()},
    });
    if let Some(a) = &d.approval() {
        ctx["approval"] = json!(a);
    }
    if !d.redact().is_empty() {
        ctx["redact"] = json!(d.redact());
    }
    json!({"decision": d.outcome() == Outcome::Allow, "context": ctx})
}

/// The AuthZEN request Mandate sends an external PDP for `input`.
pub fn request_from_input(query: Query, input: &Value) -> Value {
    let p = &input["principal"];
    let a = &input["action"];
    let (rtype, rid, aname) = match (query, a["kind"].as_str()) {
        (Query::Delegation, _) => ("agent", a["to"].clone(), json!("delegate")),
        (_, Some("http")) => (
            "http_route",
            a["http"]["path"].clone(),
            a["http"]["method"].clone(),
        ),
        _ => (
            "mcp_tool",
            a["tool"].clone(),
            a.get("mcp_method").cloned().unwrap_or(json!("tools/call")),
        ),
    };
    json!({
        "subject": {"type": p["type"], "id": p["id"], "properties": {
            "subject": input["subject"], "chain": input["chain"], "scopes": input["scopes"],
            "audience": input["audience"], "mandate": input["mandate"]}},
        "resource": {"type": rtype, "id": rid, "properties": {
            "server": a["server"], "annotations": a["annotations"], "upstream": a["upstream"]}},
        "action": {"name": aname, "properties": a},
        "context": input["context"],
    })
}

/// Reads an external PDP's AuthZEN response into a decision (fail closed on anything odd).
pub fn decision_from_response(body: &Value, version: &str) -> Decision {
    let Some(allow) = body.get("decision").and_then(Value::as_bool) else {
        return Decision::failed(
            "the AuthZEN PDP answered without a boolean `decision`",
            version,
        );
    };
    let ctx = body.get("context");
    let mut reasons: Vec<String> = ctx
        .and_then(|c| c.get("reasons"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if reasons.is_empty() {
        if let Some(r) = ctx
            .and_then(|c| c.get("reason_admin").or(c.get("reason_user")))
            .and_then(|r| r.get("en").or(Some(r)))
            .and_then(Value::as_str)
        {
            reasons.push(r.to_string());
        }
    }
    // The PDP's context is read as Mandate's own decision document would be: a malformed
    // approval or redact list denies.
    let mut doc = json!({"allow": allow, "reasons": reasons});
    for k in ["approval", "redact"] {
        if let Some(v) = ctx.and_then(|c| c.get(k)) {
            doc[k] = v.clone();
        }
    }
    Decision::from_result(Query::Authz, Some(&doc), version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mcp_tool_request_maps_to_the_input_document() {
        let req = json!({
            "subject": {"type": "agent", "id": "coder", "properties": {
                "chain": ["user:alice", "agent:planner", "agent:coder"], "scopes": "github:read github:merge"}},
            "resource": {"type": "mcp_tool", "id": "merge_pr", "properties": {
                "server": "github", "annotations": {"destructiveHint": false}}},
            "action": {"name": "tools/call", "properties": {"arguments": {"pr": 7}}},
            "context": {"client_address": "10.0.0.1"}
        });
        let i = input_from_request(&req).unwrap();
        assert_eq!(
            i["principal"],
            json!({"id": "agent:coder", "type": "agent", "name": "coder"})
        );
        assert_eq!(i["subject"], "user:alice");
        assert_eq!(i["scopes"], json!(["github:read", "github:merge"]));
        assert_eq!(i["action"]["kind"], "mcp");
        assert_eq!(i["action"]["server"], "github");
        assert_eq!(i["action"]["tool"], "merge_pr");
        assert_eq!(i["action"]["arguments"]["pr"], 7);
        assert_eq!(i["context"]["client_address"], "10.0.0.1");
    }

    #[test]
    fn asserted_chains_lists_and_identifiers_are_bounded_and_printable() {
        let base = json!({
            "subject": {"type": "agent", "id": "coder"},
            "resource": {"type": "mcp_tool", "id": "read_file", "properties": {"server": "fs"}},
            "action": {"name": "tools/call"}
        });
        assert!(input_from_request(&base).is_ok());
        let with = |ptr: &str, v: Value| {
            let mut r = base.clone();
            *r.pointer_mut(ptr).unwrap() = v;
            input_from_request(&r)
        };
        let long_chain: Vec<String> = (0..=MAX_CHAIN).map(|i| format!("agent:a{i}")).collect();
        let mut r = base.clone();
        r["subject"]["properties"] = json!({"chain": long_chain});
        assert!(input_from_request(&r).unwrap_err().contains("at most 17"));
        r["subject"]["properties"] = json!({"scopes": vec!["s:x"; MAX_LIST + 1]});
        assert!(input_from_request(&r).is_err());
        for (ptr, v) in [
            ("/resource/id", json!("read\u{1b}]0;pwned\u{7}")),
            ("/subject/id", json!("x\u{9b}2J")),
            ("/action/name", json!("a".repeat(MAX_ID + 1))),
            ("/resource/properties/server", json!("fs\n")),
        ] {
            let e = with(ptr, v).unwrap_err();
            assert!(
                e.contains("control characters") || e.contains("longer"),
                "{ptr}: {e}"
            );
        }
    }

    #[test]
    fn an_http_request_takes_its_method_from_the_action_name() {
        let req = json!({
            "subject": {"type": "agent", "id": "agent:deployer"},
            "resource": {"type": "http_route", "id": "/deployments", "properties": {"server": "ci", "action": "deploy"}},
            "action": {"name": "post"}
        });
        let i = input_from_request(&req).unwrap();
        assert_eq!(i["principal"]["id"], "agent:deployer");
        assert_eq!(i["chain"], json!(["agent:deployer"]));
        assert_eq!(
            i["action"]["http"],
            json!({"method": "POST", "path": "/deployments"})
        );
        assert_eq!(i["action"]["tool"], "deploy");
    }

    #[test]
    fn missing_members_are_named() {
        for (req, needle) in [
            (json!({}), "subject is required"),
            (
                json!({"subject": {"type": "agent"}, "resource": {}, "action": {}}),
                "subject.id",
            ),
            (
                json!({"subject": {"type": "a", "id": "b"}, "resource": {"type": "t", "id": "x"}, "action": {}}),
                "action.name",
            ),
            (
                json!({"subject": {"type": "a", "id": "b"}, "resource": {"type": "t", "id": "x"}, "action": {"name": "n"}, "context": 1}),
                "context must be an object",
            ),
        ] {
            let e = input_from_request(&req).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn responses_say_false_for_approval_and_carry_the_reasons() {
        let d = Decision::from_result(
            Query::Authz,
            Some(
                &json!({"allow": false, "approval": {"approvers": ["role:approver"]}, "reasons": ["deploy needs approval"]}),
            ),
            "v",
        );
        let r = response(&d);
        assert_eq!(r["decision"], false);
        assert_eq!(r["context"]["approval"]["quorum"], 1);
        assert_eq!(r["context"]["reason_admin"]["en"], "deploy needs approval");
        let back = decision_from_response(&r, "authzen");
        assert_eq!(back.outcome(), Outcome::Approval);
        assert_eq!(back.reasons(), ["deploy needs approval"]);
        assert_eq!(
            decision_from_response(&json!({"decision": "yes"}), "x").outcome(),
            Outcome::Deny
        );
    }

    #[test]
    fn input_to_request_and_back_keeps_what_policies_read() {
        let input = json!({
            "principal": {"id": "agent:coder", "type": "agent", "name": "coder"},
            "subject": "user:alice", "chain": ["user:alice", "agent:coder"],
            "scopes": ["github:*"], "audience": ["https://api.github.com"], "mandate": null,
            "action": {"kind": "mcp", "server": "github", "tool": "delete_repo", "mcp_method": "tools/call",
                       "arguments": {"repo": "x"}, "annotations": {"destructiveHint": true}},
            "context": {"environment": "dev"}
        });
        let back = input_from_request(&request_from_input(Query::Authz, &input)).unwrap();
        for k in [
            "principal",
            "subject",
            "chain",
            "scopes",
            "audience",
            "context",
        ] {
            assert_eq!(back[k], input[k], "{k}");
        }
        for k in [
            "kind",
            "server",
            "tool",
            "mcp_method",
            "arguments",
            "annotations",
        ] {
            assert_eq!(back["action"][k], input["action"][k], "{k}");
        }
    }
}
