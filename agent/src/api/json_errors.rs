//! Every error answer is `{"error": "..."}` JSON, including the ones axum writes itself:
//! 405 for a method a route does not take (empty body), 413 for a body over
//! [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) and 400 for a path that is not UTF-8 (plain
//! text). Clients (the CLI, the dashboard, scripts) then parse one shape of error.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// Largest plain-text error body carried over into the JSON message.
const MAX_TEXT: usize = 4096;

/// Middleware: rewrites an error answer that is not JSON into the API's error shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = match axum::body::to_bytes(response.into_body(), MAX_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = allow.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("other methods");
            format!("{path} does not take {method}; it takes {allowed}")
        }
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is over {} MiB: split the job file into several submissions",
            super::MAX_BODY_BYTES >> 20
        ),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("the request failed").to_string(),
        _ => text,
    };
    let mut rewritten = super::error(status, message);
    if let Some(allow) = allow {
        rewritten.headers_mut().insert(header::ALLOW, allow);
    }
    rewritten
}
