//! `mandate demo-mcp`: the demo upstream `mandate up --demo` registers. A small MCP server over
//! stdio (newline-delimited JSON-RPC, MCP 2025-06-18) with notes in memory and three tools:
//! `list_notes` and `read_note` (read-only), and `delete_note` (destructive, so the default
//! policy holds it for approval). It exists so that a newcomer can see an allowed and a refused
//! call without installing anything; it is a fixture, not a general MCP server library.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde_json::{json, Value};

fn tools() -> Value {
    json!([
        {
            "name": "list_notes",
            "description": "List the names of the notes.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"title": "List notes", "readOnlyHint": true}
        },
        {
            "name": "read_note",
            "description": "Read one note by name.",
            "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "annotations": {"title": "Read a note", "readOnlyHint": true}
        },
        {
            "name": "delete_note",
            "description": "Delete one note by name.",
            "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "annotations": {"title": "Delete a note", "readOnlyHint": false, "destructiveHint": true}
        }
    ])
}

fn text(s: impl Into<String>, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": s.into()}], "isError": is_error})
}

fn call(notes: &mut BTreeMap<String, String>, params: &Value) -> Result<Value, (i64, String)> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let note = args.get("name").and_then(Value::as_str);
    Ok(match (name, note) {
        ("list_notes", _) => text(notes.keys().cloned().collect::<Vec<_>>().join("\n"), false),
        ("read_note", Some(n)) => match notes.get(n) {
            Some(body) => text(body.clone(), false),
            None => text(format!("no note called {n:?}"), true),
        },
        ("delete_note", Some(n)) => match notes.remove(n) {
            Some(_) => text(format!("deleted {n}"), false),
            None => text(format!("no note called {n:?}"), true),
        },
        ("read_note" | "delete_note", None) => text("arguments.name (a string) is required", true),
        (other, _) => return Err((-32602, format!("Unknown tool: {other}"))),
    })
}

/// Serves MCP on stdin/stdout until stdin closes.
pub fn run() -> anyhow::Result<()> {
    let mut notes: BTreeMap<String, String> = [
        (
            "welcome",
            "Mandate's demo notes. read_note is allowed; delete_note needs approval.",
        ),
        (
            "todo",
            "1. run mandate up --demo\n2. connect an MCP client through mandate connect",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            writeln!(
                out,
                "{}",
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}})
            )?;
            out.flush()?;
            continue;
        };
        let Some(id) = msg.get("id").cloned() else {
            continue; // a notification
        };
        if msg.get("method").is_none() {
            continue; // a response
        }
        let params = msg.get("params").cloned().unwrap_or(json!({}));
        let answer = match msg["method"].as_str().unwrap_or("") {
            "initialize" => Ok(json!({
                "protocolVersion": params.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-06-18"),
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "mandate-demo", "version": env!("CARGO_PKG_VERSION")}
            })),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools()})),
            "tools/call" => call(&mut notes, &params),
            other => Err((-32601, format!("Method not found: {other}"))),
        };
        let reply = match answer {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
