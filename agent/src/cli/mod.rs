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
    /// A file holding the API token [default: SATURN_TOKEN, else, for an agent on this
    /// host, the token file it advertises to its user, else ./saturn-data/api-token].
    #[arg(long, global = true, env = "SATURN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Connection {
    /// The API client for this connection, with the token [`Connection::token`] finds.
    pub fn client(&self) -> Result<client::ApiClient> {
        client::ApiClient::new(&self.addr, self.token()?)
    }

    /// The token: `--token-file`, else `SATURN_TOKEN`, else (when `--addr` is on this
    /// host) the token file the agent on that port advertises in its user's runtime
    /// directory (see `api::token_advert`), else `./saturn-data/api-token` (the agent's
    /// default data dir, started from here). The last two are used only when readable:
    /// another user's agent is simply asked without a token, and answers 401.
    pub fn token(&self) -> Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?;
            return Ok(Some(text.trim().to_string()));
        }
        if let Some(token) = std::env::var("SATURN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
            return Ok(Some(token.trim().to_string()));
        }
        let advertised = local_port(&self.addr).and_then(|port| {
            crate::api::token_advert::lookup(&crate::api::token_advert::runtime_dir()?, port)
        });
        let default = PathBuf::from(crate::config::defaults::DATA_DIR).join(crate::config::defaults::API_TOKEN_FILE);
        Ok(advertised
            .into_iter()
            .chain(local_port(&self.addr).map(|_| default))
            .find_map(|path| std::fs::read_to_string(path).ok())
            .map(|text| text.trim().to_string())
            .filter(|token| !token.is_empty()))
    }
}

/// The port of an `http://HOST:PORT` address whose host is this one (loopback).
fn local_port(addr: &str) -> Option<u16> {
    let rest = addr.strip_prefix("http://").or_else(|| addr.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    local.then(|| port.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::local_port;

    #[test]
    fn only_loopback_addresses_have_a_local_port() {
        assert_eq!(local_port("http://127.0.0.1:7070"), Some(7070));
        assert_eq!(local_port("http://localhost:7071/"), Some(7071));
        assert_eq!(local_port("http://[::1]:7072"), Some(7072));
        assert_eq!(local_port("http://10.0.0.5:7070"), None);
        assert_eq!(local_port("http://127.0.0.1"), None);
    }
}
