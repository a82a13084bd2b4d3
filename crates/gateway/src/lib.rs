//! The gateway: policy at the tool boundary. For every MCP or HTTP call it authenticates the
//! agent, asks the policy about the exact call (server, tool, arguments, annotations, chain),
//! makes the audit event durable, injects the upstream's own credentials and only then forwards.
//!
//! This crate is built bottom-up, pure parts first: [`jsonrpc`] reads and answers JSON-RPC 2.0
//! messages strictly and within bounds, and [`mcp`] classifies MCP requests and filters what a
//! caller may see, [`scopes`] says which scope each tool needs, and [`challenge`] words 401/403 answers and
//! the RFC 9728 metadata. The serving edge (upstreams, forwarding, `mandate connect`) sits on them.
#![forbid(unsafe_code)]

pub mod challenge;
pub mod jsonrpc;
pub mod mcp;
pub mod scopes;
