//! What an MCP request asks for, as the policy sees it, and what a caller may see of a list.
//!
//! [`classify`] reads a request into a [`Call`]: a tool call (name and arguments), a list, a read
//! of a resource, a prompt, or a method that is not about a tool (`initialize`, `ping`, ...).
//! [`filter_list`] keeps in a `tools/list` / `resources/list` / `prompts/list` result only what
//! the caller may use, and [`unknown_tool`] is the error for a tool the caller may not see: the
//! same words an upstream uses for a tool that does not exist, so that a hidden tool cannot be
//! told from a missing one.

use mandate_core::refusal::jsonrpc as codes;
use serde_json::{Map, Value};

use crate::jsonrpc::{Request, RpcError};

/// Longest tool, prompt or resource name taken (longer names are invalid parameters).
pub const MAX_NAME_LEN: usize = 256;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `tools/call`: run a tool with arguments.
    Tool {
        /// The tool's name.
        name: String,
        /// Its arguments (an empty object when none were sent).
        arguments: Map<String, Value>,
    },
    /// `resources/read` of a URI.
    ReadResource {
        /// The resource's URI.
        uri: String,
    },
    /// `prompts/get` of a prompt with arguments.
    GetPrompt {
        /// The prompt's name.
        name: String,
        /// Its arguments.
        arguments: Map<String, Value>,
    },
    /// `tools/list`, `resources/list`, `resources/templates/list` or `prompts/list`: answered
    /// with what the caller may use.
    List(ListKind),
    /// Anything else (`initialize`, `ping`, `completion/complete`, `logging/setLevel`, ...):
    /// decided as a call of the method itself.
    Method(String),
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list` (`tools`, by `name`).
    Tools,
    /// `resources/list` (`resources`, by `uri`).
    Resources,
    /// `resources/templates/list` (`resourceTemplates`, by `uriTemplate`).
    ResourceTemplates,
    /// `prompts/list` (`prompts`, by `name`).
    Prompts,
}

impl ListKind {
    /// The member of the result holding the items, and the member naming each item.
    pub fn members(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Tools => ("tools", "name"),
            ListKind::Resources => ("resources", "uri"),
            ListKind::ResourceTemplates => ("resourceTemplates", "uriTemplate"),
            ListKind::Prompts => ("prompts", "name"),
        }
    }
}

/// Reads what `req` asks for; malformed parameters of the methods that matter to policy are
/// invalid parameters (-32602), never guessed.
pub fn classify(req: &Request) -> Result<Call, RpcError> {
    let params = req.params.as_ref().and_then(Value::as_object);
    let name = |member: &str| -> Result<String, RpcError> {
        match params.and_then(|p| p.get(member)) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_NAME_LEN => Ok(s.clone()),
            _ => Err(invalid_params(format!(
                "{}: params.{member} must be a string of 1 to {MAX_NAME_LEN} characters",
                req.method
            ))),
        }
    };
    let arguments = || -> Result<Map<String, Value>, RpcError> {
        match params.and_then(|p| p.get("arguments")) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o.clone()),
            Some(_) => Err(invalid_params(format!(
                "{}: params.arguments must be an object",
                req.method
            ))),
        }
    };
    Ok(match req.method.as_str() {
        "tools/call" => Call::Tool {
            name: name("name")?,
            arguments: arguments()?,
        },
        "resources/read" => Call::ReadResource { uri: name("uri")? },
        "prompts/get" => Call::GetPrompt {
            name: name("name")?,
            arguments: arguments()?,
        },
        "tools/list" => Call::List(ListKind::Tools),
        "resources/list" => Call::List(ListKind::Resources),
        "resources/templates/list" => Call::List(ListKind::ResourceTemplates),
        "prompts/list" => Call::List(ListKind::Prompts),
        other => Call::Method(other.to_string()),
    })
}

/// -32602 with `message`.
pub fn invalid_params(message: impl Into<String>) -> RpcError {
    RpcError::new(codes::INVALID_PARAMS, message)
}

/// The error for a tool the caller may not see, worded as for one that does not exist.
pub fn unknown_tool(name: &str) -> RpcError {
    invalid_params(format!("Unknown tool: {name}"))
}

/// Keeps in a list result only the items `visible` accepts (by their name or URI); items without
/// a name are dropped (fail closed). Returns how many were removed.
pub fn filter_list(kind: ListKind, result: &mut Value, visible: impl Fn(&str) -> bool) -> usize {
    let (items, key) = kind.members();
    let Some(Value::Array(list)) = result.get_mut(items) else {
        return 0;
    };
    let before = list.len();
    list.retain(|item| item.get(key).and_then(Value::as_str).is_some_and(&visible));
    before - list.len()
}

/// The annotations each tool of a `tools/list` result advertises (an empty map for a tool that
/// has none), by name: the hints the policy input carries.
pub fn tool_annotations(result: &Value) -> Vec<(String, Map<String, Value>)> {
    result
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    let name = t.get("name")?.as_str()?.to_string();
                    let annotations = t
                        .get("annotations")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    Some((name, annotations))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(method: &str, params: Value) -> Request {
        Request {
            id: json!(1),
            method: method.into(),
            params: Some(params),
        }
    }

    #[test]
    fn tool_calls_resources_prompts_and_lists_are_classified() {
        assert_eq!(
            classify(&req(
                "tools/call",
                json!({"name": "write_file", "arguments": {"path": "/repo/src/a"}})
            ))
            .unwrap(),
            Call::Tool {
                name: "write_file".into(),
                arguments: json!({"path": "/repo/src/a"}).as_object().unwrap().clone()
            }
        );
        assert_eq!(
            classify(&req("tools/call", json!({"name": "ping_tool"}))).unwrap(),
            Call::Tool {
                name: "ping_tool".into(),
                arguments: Map::new()
            }
        );
        assert_eq!(
            classify(&req("resources/read", json!({"uri": "file:///etc/passwd"}))).unwrap(),
            Call::ReadResource {
                uri: "file:///etc/passwd".into()
            }
        );
        assert_eq!(
            classify(&req("tools/list", json!({}))).unwrap(),
            Call::List(ListKind::Tools)
        );
        assert_eq!(
            classify(&req("initialize", json!({}))).unwrap(),
            Call::Method("initialize".into())
        );
    }

    #[test]
    fn malformed_tool_calls_are_invalid_params() {
        for p in [
            json!({}),
            json!({"name": 3}),
            json!({"name": ""}),
            json!({"name": "x".repeat(MAX_NAME_LEN + 1)}),
            json!({"name": "t", "arguments": [1]}),
        ] {
            let e = classify(&req("tools/call", p.clone())).unwrap_err();
            assert_eq!(e.code, codes::INVALID_PARAMS, "{p}");
        }
        let no_params = Request {
            id: json!(1),
            method: "tools/call".into(),
            params: None,
        };
        assert_eq!(
            classify(&no_params).unwrap_err().code,
            codes::INVALID_PARAMS
        );
    }

    #[test]
    fn lists_keep_only_what_the_caller_may_use() {
        let mut r = json!({"tools": [
            {"name": "read_file"}, {"name": "write_file"}, {"title": "no name"}
        ], "nextCursor": "c"});
        let removed = filter_list(ListKind::Tools, &mut r, |n| n == "read_file");
        assert_eq!(removed, 2);
        assert_eq!(r["tools"], json!([{"name": "read_file"}]));
        assert_eq!(r["nextCursor"], "c");
        let mut r = json!({"resources": [{"uri": "file:///a"}, {"uri": "file:///b"}]});
        filter_list(ListKind::Resources, &mut r, |u| u.ends_with('a'));
        assert_eq!(r["resources"], json!([{"uri": "file:///a"}]));
    }

    #[test]
    fn a_hidden_tool_reads_as_an_unknown_one() {
        let e = unknown_tool("delete_repo");
        assert_eq!(e.code, codes::INVALID_PARAMS);
        assert_eq!(e.message, "Unknown tool: delete_repo");
    }

    #[test]
    fn annotations_are_read_per_tool() {
        let r = json!({"tools": [
            {"name": "write_file", "annotations": {"destructiveHint": true}},
            {"name": "read_file"}
        ]});
        let a = tool_annotations(&r);
        assert_eq!(a[0].0, "write_file");
        assert_eq!(a[0].1["destructiveHint"], true);
        assert!(a[1].1.is_empty());
    }
}
