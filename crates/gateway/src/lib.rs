//! The gateway: policy at the tool boundary. For every MCP or HTTP call it authenticates the
//! agent, asks the policy about the exact call (server, tool, arguments, annotations, chain),
//! makes the audit event durable, injects the upstream's own credentials and only then forwards.
//!
//! Pure parts: [`jsonrpc`] reads and answers JSON-RPC 2.0 messages strictly and within bounds,
//! [`mcp`] classifies MCP requests and filters what a caller may see, [`scopes`] says which scope
//! each tool needs, [`scrub`] takes injected credentials back out of answers, [`challenge`] words 401/403 answers and the RFC 9728 metadata, [`sse`] reads
//! and writes event streams, [`config`] checks an upstream's configuration.
//!
//! The serving edge sits on them: [`gateway`] (the steps every call goes through, with the
//! authentication, policy and audit hooks), [`upstream`] and [`stdio`] (upstreams and their
//! supervised children), [`serve`] (the MCP routes), [`http_api`] (HTTP API routes), [`sessions`] and [`metrics`].
//! [`remote`] holds the hooks of a gateway run apart from the authority.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod challenge;
pub mod config;
pub mod gateway;
pub mod http_api;
pub mod jsonrpc;
pub mod mcp;
pub mod metrics;
pub mod presentation;
pub mod remote;
pub mod scopes;
pub mod scrub;
pub mod serve;
pub mod sessions;
pub mod sse;
pub mod stdio;
pub mod upstream;

pub use config::UpstreamConfig;
pub use gateway::{Authenticate, Gateway, Presented, Settings};
pub use upstream::{Origin, Upstream, Upstreams};
