//! Mandate's authority over HTTP.
//!
//! RFC 8414 metadata, the JWKS, the OAuth token endpoint (RFC 6749 / 7523 / 8693 / 9449), the
//! enrollment endpoint and the admin API. Handlers are thin: they parse the request, call the pure
//! rules in `mandate-core`, and read or write through `mandate-store`.
#![forbid(unsafe_code)]

mod admin;
mod api_error;
pub mod audit;
mod client_auth;
mod enroll;
mod form;
pub mod issuer;
mod metadata;
mod oauth_endpoints;
mod oauth_error;
mod pdp;
mod policy_hook;
mod principals;
mod resource_auth;
pub mod revocation;
pub mod state;
mod token;
mod verified_cache;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use pdp::PDP_SCOPE;
pub use state::{now, AppState, Config, Endpoints};

/// Request bodies larger than this are refused before parsing.
const MAX_BODY: usize = 64 * 1024;

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

/// Builds the router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(paths::METADATA, get(metadata::metadata))
        .route(paths::JWKS, get(metadata::jwks))
        .route(paths::TOKEN, post(token::token))
        .route(paths::INTROSPECT, post(oauth_endpoints::introspect))
        .route(paths::REVOKE, post(oauth_endpoints::revoke))
        .route(paths::REVOCATIONS, get(revocation::feed))
        .route(paths::JOIN, post(enroll::join))
        .nest(paths::ADMIN, admin::routes())
        .merge(pdp::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves on a bound listener until `shutdown` completes, with background housekeeping
/// (purging used jtis, dropping retired issuer keys once nothing they signed is still valid).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let revocations = tokio::spawn(revocation::follow_database(state.clone()));
    let integrator = tokio::spawn(audit::integrate(state.clone()));
    let res = axum::serve(
        listener,
        router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    housekeeping.abort();
    revocations.abort();
    integrator.abort();
    let _ = integrator.await;
    // Everything answered so far gets a checkpoint before the process ends.
    if let Err(e) = audit::flush(&state).await {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    res
}

async fn housekeeping(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
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
