//! Mandate's authority over HTTP.
//!
//! RFC 8414 metadata, the JWKS, the OAuth token endpoint (RFC 6749 / 7523 / 8693 / 9449), the
//! enrollment endpoint and the admin API. Handlers are thin: they parse the request, call the pure
//! rules in `mandate-core`, and read or write through `mandate-store`.
#![forbid(unsafe_code)]

mod admin;
pub mod admin_upstreams;
mod api_error;
pub mod approvals;
mod approvals_gateway;
pub mod audit;
pub mod audit_api;
mod auth;
mod body_deadline;
pub mod ciba;
mod client_auth;
mod conn;
mod enroll;
mod form;
pub mod gateway_hooks;
pub mod issuer;
pub mod limits;
mod metadata;
mod oauth_endpoints;
mod oauth_error;
mod pdp;
mod policy_hook;
mod principals;
mod ratelimit;
mod refusals;
mod resource_auth;
pub mod revocation;
pub mod state;
mod token;
mod verified_cache;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

pub use limits::Limits;

/// Serves `app` with the authority's connection bounds and graceful shutdown (connections drain,
/// up to 10 s), for an enforcement point run on its own (`mandate gateway`), with the body
/// deadline of `limits` on every request.
pub async fn serve_edge(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::map_request_with_state(
        limits.body_timeout,
        body_deadline::with_deadline,
    ));
    conn::serve(listener, app, limits, shutdown).await
}
pub use mandate_core::delegation::{AUDIT_SCOPE, PDP_SCOPE};
pub use state::{default_data_api_paths, now, AppState, Config, Endpoints};

use limits::MAX_BODY;

/// Paths of every route, relative to the issuer URL.
pub mod paths {
    /// RFC 8414 metadata.
    pub const METADATA: &str = "/.well-known/oauth-authorization-server";
    /// The issuer's public keys.
    pub const JWKS: &str = "/oauth2/jwks";
    /// The token endpoint.
    pub const TOKEN: &str = "/oauth2/token";
    /// RFC 7662 introspection.
    pub const INTROSPECT: &str = "/oauth2/introspect";
    /// RFC 7009 revocation.
    pub const REVOKE: &str = "/oauth2/revoke";
    /// The revocation feed for enforcement points.
    pub const REVOCATIONS: &str = "/revocations/v1";
    /// Redeems an enrollment code for a key made on the agent's machine.
    pub const JOIN: &str = "/enroll/v1/join";
    /// Admin API root.
    pub const ADMIN: &str = "/admin/v1";
}

/// Builds the router over shared state. Layers, outermost first: the per-source rate limit (a
/// request over it costs nothing more), the body's deadline, the body size limit, and the
/// request deadline (the revocation feed's long poll gets its own, longer one).
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, None)
}

/// The router, with the gateway's routes when one runs in this process. They share the
/// per-source rate limit and the body deadline; their body limit, timeouts and authentication
/// are the gateway's own (a tool call may carry a large file and take a minute).
pub fn router_with(state: Arc<AppState>, gateway: Option<Router>) -> Router {
    let request_timeout = state.cfg.limits.request_timeout;
    let feed_timeout = Duration::from_secs(revocation::MAX_WAIT) + request_timeout;
    let timeout = |d| TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, d);
    Router::new()
        .route(paths::METADATA, get(metadata::metadata))
        .route(paths::JWKS, get(metadata::jwks))
        .route(paths::TOKEN, post(token::token))
        .route(paths::INTROSPECT, post(oauth_endpoints::introspect))
        .route(paths::REVOKE, post(oauth_endpoints::revoke))
        .route(ciba::PATH, post(ciba::bc_authorize))
        .route(paths::JOIN, post(enroll::join))
        .nest(paths::ADMIN, admin::routes(state.clone()))
        .merge(pdp::routes(state.clone()))
        .nest(
            approvals::ROOT,
            approvals::routes().layer(axum::middleware::from_fn_with_state(
                (
                    state.clone(),
                    refusals::RefusalKind {
                        kind: mandate_audit::event::kinds::REQUEST_REFUSED,
                        action: auth::APPROVALS_ACTION,
                    },
                ),
                refusals::audit_refusals,
            )),
        )
        .layer(timeout(request_timeout))
        .merge(
            Router::new()
                .route(paths::REVOCATIONS, get(revocation::feed))
                .layer(timeout(feed_timeout)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A remote gateway's appends: up to 64 events at their bound, so a body limit of their own.
        .merge(
            audit_api::routes(state.clone())
                .layer(DefaultBodyLimit::max(audit_api::MAX_APPEND_BODY))
                .layer(timeout(request_timeout)),
        )
        .with_state(state.clone())
        .merge(gateway.unwrap_or_default())
        .layer(axum::middleware::map_request_with_state(
            state.cfg.limits.body_timeout,
            body_deadline::with_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            ratelimit::limit,
        ))
}

/// Serves on a bound listener until `shutdown` completes, with background housekeeping
/// (purging used jtis, dropping retired issuer keys once nothing they signed is still valid),
/// the revocation view, the audit integrator, and the refusal counts. Connections are bounded as
/// `state.cfg.limits` says (see [`conn`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`], with a gateway in the same process: its routes are served on the same listener,
/// and its upstreams are stopped (stdio children killed with their process groups) after the
/// last connection has drained.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    gateway: Option<Arc<mandate_gateway::Gateway>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = [
        tokio::spawn(housekeeping(state.clone())),
        tokio::spawn(revocation::follow_database(state.clone())),
        tokio::spawn(refusals::flush_every_window(state.clone())),
        tokio::spawn(ratelimit::forget_idle_sources(state.clone())),
    ];
    let integrator = tokio::spawn(audit::integrate(state.clone()));
    let gateway_routes = gateway.clone().map(mandate_gateway::serve::routes);
    let res = conn::serve(
        listener,
        router_with(state.clone(), gateway_routes),
        state.cfg.limits.clone(),
        shutdown,
    )
    .await;
    if let Some(gw) = &gateway {
        gw.upstreams.shutdown().await;
    }
    for t in tasks {
        t.abort();
    }
    integrator.abort();
    let _ = integrator.await;
    // Refusals counted so far, then a checkpoint for everything answered, before the process ends.
    refusals::flush(&state).await;
    if let Err(e) = audit::flush(&state).await {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    res
}

async fn housekeeping(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut second = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = second.tick() => {
                // Approval requests expire on time, each with its event.
                approvals::expire_overdue(&state).await;
                continue;
            }
        }
        let now = now();
        if let Err(e) = state.store.purge_expired_jtis(now).await {
            tracing::warn!(error = %e, "purging used jtis failed; will retry");
        }
        match state.keys.drop_expired(&state.store, now).await {
            // A dropped key invalidates what was verified with it.
            Ok(dropped) if dropped > 0 => state.verified.clear(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "dropping retired issuer keys failed; will retry"),
        }
    }
}
