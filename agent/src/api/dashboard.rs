//! The dashboard: static files embedded in the binary, served at `/`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::ApiState;

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        get(|| async { ([(header::CONTENT_TYPE, $mime)], include_str!(concat!("../../assets/", $path))).into_response() })
    };
}

/// Routes of the dashboard's files.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", asset!("index.html", "text/html; charset=utf-8"))
        .route("/assets/style.css", asset!("style.css", "text/css; charset=utf-8"))
        .route("/assets/app.js", asset!("app.js", "text/javascript; charset=utf-8"))
        .route("/assets/api.js", asset!("api.js", "text/javascript; charset=utf-8"))
        .route("/assets/charts.js", asset!("charts.js", "text/javascript; charset=utf-8"))
        .route("/assets/util.js", asset!("util.js", "text/javascript; charset=utf-8"))
        .route("/assets/views.js", asset!("views.js", "text/javascript; charset=utf-8"))
}
