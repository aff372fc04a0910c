//! Who may use the API: every request carries the agent's token, on loopback too (spec:
//! Security), either as `Authorization: Bearer <token>` (the CLI, scripts) or as the
//! dashboard's session cookie. The dashboard's page shell and its scripts hold no data
//! and load without it, so a browser can show the token prompt.
//!
//! Why a cookie for the browser, and not the token in `sessionStorage`: the cookie is
//! `HttpOnly`, so no script in the page (say, one smuggled in through a job name or a
//! log line the dashboard shows) can read the token; `SameSite=Strict` keeps other sites
//! from making the browser send it (no cross-site request forgery of job submissions);
//! and without `Max-Age` it lasts for the browser session only. The page hands the token
//! over once, to `POST /v1/login`, which checks it before setting the cookie.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{error, ApiState};

/// The dashboard's session cookie.
pub const COOKIE: &str = "saturn_token";

/// Paths served without the token: the page shell, its static files, and the login.
fn is_public(path: &str) -> bool {
    path == "/" || path == "/v1/login" || path == "/v1/logout" || path.starts_with("/assets/")
}

/// The token a request presents: bearer header first, else the session cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    })
}

/// Middleware: rejects a request without the right token (when one is configured).
pub async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    match presented(request.headers()) {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => next.run(request).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token: send Authorization: Bearer <the agent's --api-token-file, by default DATA_DIR/api-token>",
        ),
    }
}

/// Body of `POST /v1/login`.
#[derive(Debug, Deserialize)]
pub struct Login {
    /// The token the person typed.
    pub token: String,
}

/// `POST /v1/login`: checks the token and, when right, sets the session cookie.
pub async fn login(State(state): State<ApiState>, Json(login): Json<Login>) -> Response {
    let token = login.token.trim();
    let right = match &state.token {
        Some(expected) => constant_time_eq(token.as_bytes(), expected.as_bytes()),
        None => true,
    };
    if !right {
        return error(StatusCode::UNAUTHORIZED, "wrong token: use the contents of the agent's --api-token-file (by default DATA_DIR/api-token)");
    }
    // The token is one word of URL-safe text (checked when read), so it needs no escaping.
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `POST /v1/logout`: forgets the session cookie.
pub async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// Compares without an early exit, so response time does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
