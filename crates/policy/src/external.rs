//! Where decisions come from: the embedded engine (default), or an external OPA server (REST data
//! API) or AuthZEN PDP over HTTP. A remote failure of any kind (connection, status, timeout,
//! body) is a deny that says what happened.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::authzen;
use crate::decision::{Decision, Query};
use crate::live::LivePolicy;

/// An external decision point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// An OPA server: `POST {url}/v1/data/mandate/authz/decision` with `{"input": ...}`.
    Opa {
        /// Base URL, e.g. `http://127.0.0.1:8181`.
        url: String,
    },
    /// An AuthZEN 1.0 PDP: `POST {url}/access/v1/evaluation`.
    AuthZen {
        /// Base URL.
        url: String,
    },
}

enum Backend {
    Embedded(Arc<LivePolicy>),
    Remote {
        ext: External,
        client: reqwest::Client,
        timeout: Duration,
    },
}

/// Where decisions are made.
pub struct DecisionPoint {
    backend: Backend,
}

impl DecisionPoint {
    /// Decisions by the embedded engine.
    pub fn embedded(live: Arc<LivePolicy>) -> Self {
        DecisionPoint {
            backend: Backend::Embedded(live),
        }
    }

    /// Decisions by an external PDP, each bounded by `timeout`.
    pub fn external(ext: External, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("an HTTP client with default TLS settings");
        DecisionPoint {
            backend: Backend::Remote {
                ext,
                client,
                timeout,
            },
        }
    }

    /// The embedded policy, when that is what decides.
    pub fn live(&self) -> Option<&Arc<LivePolicy>> {
        match &self.backend {
            Backend::Embedded(l) => Some(l),
            Backend::Remote { .. } => None,
        }
    }

    /// The version of what decides now (a content hash, or `opa:URL` / `authzen:URL`).
    pub fn version(&self) -> String {
        match &self.backend {
            Backend::Embedded(l) => l.current().version().to_string(),
            Backend::Remote { ext, .. } => remote_version(ext),
        }
    }

    /// [`DecisionPoint::decide`] with the embedded engine's evaluation on the blocking pool,
    /// never on the async workers that serve every other request: for decisions asked in bulk by
    /// other enforcement points (AuthZEN, the data API), whose inputs they choose.
    pub async fn decide_apart(&self, query: Query, input: Value) -> Decision {
        match &self.backend {
            Backend::Embedded(l) => {
                let policy = l.current();
                let version = policy.version().to_string();
                tokio::task::spawn_blocking(move || policy.decide(query, &input))
                    .await
                    .unwrap_or_else(|e| {
                        Decision::failed(
                            format!("the policy evaluation task failed: {e}"),
                            &version,
                        )
                    })
            }
            Backend::Remote { .. } => self.decide(query, &input).await,
        }
    }

    /// Decides `query` for `input`; never fails (errors deny). The embedded engine evaluates on
    /// the calling thread: for a cheap decision on an input the caller built and bounded (the
    /// delegation policy at the token endpoint; each evaluation is capped by the policy's time
    /// limit). Decisions asked in bulk for others go through [`DecisionPoint::decide_apart`].
    pub async fn decide(&self, query: Query, input: &Value) -> Decision {
        match &self.backend {
            Backend::Embedded(l) => l.current().decide(query, input),
            Backend::Remote {
                ext,
                client,
                timeout,
            } => {
                let version = remote_version(ext);
                match remote(ext, client, query, input).await {
                    Ok(d) => d,
                    Err(e) => {
                        let e = if e.is_timeout() {
                            format!("the external decision point did not answer within {timeout:?}")
                        } else {
                            format!(
                                "the external decision point failed: {}",
                                mandate_core::causes::with_causes(&e.without_url())
                            )
                        };
                        tracing::warn!(error = %e, decider = %version, "external policy decision failed; denying");
                        Decision::failed(e, &version)
                    }
                }
            }
        }
    }
}

fn remote_version(ext: &External) -> String {
    match ext {
        External::Opa { url } => format!("opa:{}", without_userinfo(url)),
        External::AuthZen { url } => format!("authzen:{}", without_userinfo(url)),
    }
}

/// The URL without `user:password@`, which must never reach a client or a log.
pub fn without_userinfo(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme && !url[scheme + 3..at].contains('/') => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

async fn remote(
    ext: &External,
    client: &reqwest::Client,
    query: Query,
    input: &Value,
) -> Result<Decision, reqwest::Error> {
    let version = remote_version(ext);
    match ext {
        External::Opa { url } => {
            let path = query.path()["data.".len()..].replace('.', "/");
            let url = format!("{}/v1/data/{path}", url.trim_end_matches('/'));
            let body: Value = client
                .post(url)
                .json(&json!({ "input": input }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let d = Decision::from_result(query, body.get("result"), &version);
            Ok(match body.get("decision_id").and_then(Value::as_str) {
                Some(id) => d.with_decision_id(id),
                None => d,
            })
        }
        External::AuthZen { url } => {
            let url = format!("{}/access/v1/evaluation", url.trim_end_matches('/'));
            let body: Value = client
                .post(url)
                .json(&authzen::request_from_input(query, input))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok(authzen::decision_from_response(&body, &version))
        }
    }
}
