//! A small HTTP client for the agent API, used by every `saturn` subcommand that talks
//! to an agent.

use anyhow::{anyhow, Context, Result};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::views::ErrorView;

/// Where the agent is and how to authenticate (`--addr`/`SATURN_ADDR`,
/// `--token-file`/`SATURN_TOKEN`).
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the agent at `base` (e.g. `http://127.0.0.1:7070`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), token, http })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request and turns transport errors and error answers into one-line errors.
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Response> {
        let response = builder.send().await.map_err(|err| {
            if err.is_connect() {
                anyhow!(
                    "cannot reach the agent at {}: is saturn-agent running there? (set --addr or SATURN_ADDR)",
                    self.base
                )
            } else {
                anyhow!("request to the agent at {} failed: {err}", self.base)
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorView>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| body.trim().to_string());
        Err(match status {
            StatusCode::UNAUTHORIZED => anyhow!(
                "the agent at {} wants its API token: {message} (give --token-file FILE, e.g. the agent's DATA_DIR/api-token, or SATURN_TOKEN)",
                self.base
            ),
            _ => anyhow!("{message} (HTTP {})", status.as_u16()),
        })
    }

    /// `GET path` decoded as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        response.json().await.with_context(|| format!("decoding the answer to GET {path}"))
    }

    /// `GET path` as text.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        Ok(response.text().await?)
    }

    /// `GET path`, the response itself (for streaming bodies).
    pub async fn get_stream(&self, path: &str) -> Result<Response> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a body of the given content type, answer decoded as JSON.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, content_type: &str, body: String) -> Result<T> {
        let builder = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let response = self.send(builder).await?;
        response.json().await.with_context(|| format!("decoding the answer to POST {path}"))
    }

    /// `DELETE path`, answer decoded as JSON.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.request(reqwest::Method::DELETE, path)).await?;
        response.json().await.with_context(|| format!("decoding the answer to DELETE {path}"))
    }
}

/// Percent-encodes a query parameter value.
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
