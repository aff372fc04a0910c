//! The HTTP API (axum): `/v1/...` JSON for the CLI and dashboard, `/metrics` for
//! Prometheus, `/` the dashboard. Any agent answers; writes are committed through Raft
//! (forwarded to the leader by the consensus node).
//!
//! Security: every request needs the agent's token, on loopback too (401 otherwise),
//! except the dashboard's page shell and the login (see `auth`).

mod auth;
mod dashboard;
mod handlers;
mod json_errors;
pub mod leaderboard;
mod logs;
pub mod metrics;
pub mod render;
pub mod services;
pub mod token_advert;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub use services::{AgentServices, ExtraMetric, LogPiece, RaftView, ServiceError, SoftView};

use crate::views::ErrorView;

/// Largest request body accepted (a job file of 10,000 jobs fits well within it).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    /// The running agent.
    pub services: Arc<dyn AgentServices>,
    /// Token every request must carry (`None` only in tests of the handlers).
    pub token: Option<Arc<str>>,
}

/// The full router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(handlers::status))
        .route("/v1/jobs", get(handlers::list_jobs).post(handlers::submit_jobs))
        .route("/v1/jobs/{id}", get(handlers::get_job).delete(handlers::cancel_job))
        .route("/v1/jobs/{id}/logs", get(logs::job_logs))
        .route("/v1/plan", get(handlers::plan))
        .route("/v1/profiles", get(handlers::profiles))
        .route("/v1/login", axum::routing::post(auth::login))
        .route("/v1/logout", axum::routing::post(auth::logout))
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::routes())
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(middleware::from_fn(json_errors::json_errors))
        .with_state(state)
}

/// Binds and serves the API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error answer: `{"error": "..."}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorView { error: message.into() })).into_response()
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}
