//! The HTTP API (axum): `/v1/...` JSON for the CLI and dashboard, `/metrics` for
//! Prometheus, `/` the dashboard. Any agent answers; writes are committed through Raft
//! (forwarded to the leader by the consensus node).
//!
//! Security: on a loopback address the API is open to local users; on any other address
//! every request needs `Authorization: Bearer <token>` (401 otherwise), and the agent
//! refuses to start such an API without a token (see `config`).

mod dashboard;
mod handlers;
mod json_errors;
pub mod leaderboard;
mod logs;
pub mod metrics;
pub mod render;
pub mod services;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
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
    /// Bearer token every request must carry, when the API is off loopback.
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
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::routes())
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
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

/// Rejects requests without the right bearer token when a token is configured.
async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => next.run(request).await,
        _ => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token: send Authorization: Bearer <token from --api-token-file>"),
    }
}

/// Compares without an early exit, so response time does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// Milliseconds since the Unix epoch, for command timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
