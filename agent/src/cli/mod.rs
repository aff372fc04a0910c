//! The `saturn` command line: each subcommand in its own module.

pub mod client;
pub mod completions;
pub mod demo;
pub mod job;
pub mod leaderboard;
pub mod plan;
pub mod status;
pub mod table;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// How the CLI reaches an agent, and how it prints.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The agent's HTTP API.
    #[arg(long, global = true, env = "SATURN_ADDR", default_value = "http://127.0.0.1:7070")]
    pub addr: String,
    /// A file holding the API bearer token (needed when the API is not on loopback).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Connection {
    /// The API client for this connection; the token comes from `--token-file` or `SATURN_TOKEN`.
    pub fn client(&self) -> Result<client::ApiClient> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("SATURN_TOKEN").ok().filter(|t| !t.is_empty()),
        };
        client::ApiClient::new(&self.addr, token)
    }
}
