//! `rmcp` (the official Rust MCP SDK) as the client: it launches `mandate connect` over stdio, the
//! way an off-the-shelf MCP client does, and calls the demo upstream through the gateway: the list
//! shows only what the agent may call, a read runs, a tool outside the agent's scope is refused
//! with the scope it needs.

mod common;

use common::{bin, Server};
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;

fn text_of(r: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&r.content).unwrap().to_string()
}

#[test]
fn rmcp_launches_connect_and_calls_through_the_gateway_with_the_agents_own_mandate() {
    let s = Server::demo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args([
            "connect",
            "--as",
            "coder",
            "--server",
            "demo",
            "--scope",
            "demo:list_notes demo:read_note",
        ])
        .env_clear()
        .env("MANDATE_HOME", s.home.path())
        .env("HOME", s.home.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default());
        let transport = TokioChildProcess::new(cmd).expect("mandate connect starts");
        let client = ().serve(transport).await.expect("initialize through connect");
        let mut names: Vec<String> = client
            .list_all_tools()
            .await
            .expect("tools/list")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["list_notes", "read_note"]);
        let args = serde_json::json!({"name": "welcome"});
        let read = client
            .call_tool(
                CallToolRequestParams::new("read_note")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .expect("read_note is allowed");
        assert!(text_of(&read).contains("demo notes"), "{}", text_of(&read));
        let refused = client
            .call_tool(
                CallToolRequestParams::new("delete_note").with_arguments(
                    serde_json::json!({"name": "todo"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
            .await;
        let why = match refused {
            Err(e) => e.to_string(),
            Ok(r) => text_of(&r),
        };
        assert!(why.contains("needs scope demo:delete_note"), "{why}");
        client.cancel().await.ok();
    });
    // Both calls are in the audit log under the coder, and the log verifies.
    let out = s.cli(&["audit", "query", "--principal", "agent:coder", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("demo/read_note") && text.contains("demo/delete_note"),
        "{text}"
    );
}
