//! Why an agent's configuration is refused: one line each, naming the thing to fix.

use std::path::PathBuf;

/// A configuration the agent will not start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadConfigFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("config file {}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    ConfigFileSyntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// What the TOML parser or the check said.
        message: String,
    },
    /// A flag or config key has a value that cannot be used.
    #[error("{origin} {value:?}: {reason}")]
    Invalid {
        /// Where the value came from: `--listen`, or `listen in agent.toml`.
        origin: String,
        /// The value as given.
        value: String,
        /// Why it cannot be used, and what would work.
        reason: String,
    },
    /// The mesh would listen beyond loopback without a cluster key (spec/agent.md: refuse).
    #[error(
        "--listen {listen} is not a loopback address, so a cluster key is needed: make one with `saturn-agent --gen-cluster-key FILE`, give every agent --cluster-key-file FILE (or listen on 127.0.0.1, or opt out with --insecure-open-mesh)"
    )]
    MeshNeedsKey {
        /// The first non-loopback listen address.
        listen: String,
    },
    /// `--dev` was given an address beyond loopback.
    #[error("--dev listens on loopback only, but {what} is not a loopback address: drop --dev to listen there")]
    DevNotLoopback {
        /// The flag and its value.
        what: String,
    },
    /// A key or token file could not be read.
    #[error("cannot read {flag} {}: {source}", path.display())]
    ReadSecret {
        /// `--api-token-file` or `--cluster-key-file`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// A key or token file was read but its content cannot be used.
    #[error("{flag} {}: {reason}", path.display())]
    BadSecret {
        /// `--api-token-file` or `--cluster-key-file`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No `--name` and the host name could not be found.
    #[error("cannot tell this host's name (no /proc/sys/kernel/hostname, /etc/hostname or $HOSTNAME); give --name NAME")]
    NoHostname,
    /// `--dev` could not create its temporary data directory.
    #[error("cannot create the temporary data dir {}: {source}", path.display())]
    CreateDataDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
}
