//! The agent's configuration: flags (spec/agent.md), an optional TOML file with the same
//! keys, `--dev` presets and defaults, merged and checked into an [`AgentConfig`].
//!
//! Deciding is separate from reading: [`resolve`] is pure (flags + file text + host facts
//! → config) and holds every rule; [`AgentConfig::load`] only reads the files, finds the
//! host name, reads the secrets and creates `--dev`'s temporary directory.

mod args;
mod error;
mod file;
mod resolve;
pub mod secrets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::pnet::PreSharedKey;
use libp2p::Multiaddr;

pub use args::AgentArgs;
pub use error::ConfigError;
pub use resolve::{resolve, HostFacts};

use crate::gpus::GpuSpec;

/// Defaults of the spec and of the extras.
pub mod defaults {
    use crate::gpus::GpuSpec;

    /// `--data-dir`.
    pub const DATA_DIR: &str = "./saturn-data";
    /// `--listen`.
    pub const LISTEN: &str = "/ip4/0.0.0.0/tcp/7946";
    /// `--listen` under `--dev`: loopback only.
    pub const DEV_LISTEN: &str = "/ip4/127.0.0.1/tcp/7946";
    /// The API token file inside the data dir, generated at first start.
    pub const API_TOKEN_FILE: &str = "api-token";
    /// `--api`.
    pub const API: &str = "127.0.0.1:7070";
    /// `--gpus` under `--dev`.
    pub const DEV_GPUS: &str = "sim:4xSIM-24GB";
    /// `--heartbeat-ms`.
    pub const HEARTBEAT_MS: u64 = 500;
    /// `--grace-period-s`: how long a silent host keeps its jobs. It must exceed the time
    /// a partitioned agent needs to notice it lost the cluster and kill its jobs, or a
    /// job could run twice; the daemon is expected to kill with SIGKILL once the grace
    /// is near rather than wait the full `--kill-grace-s`.
    pub const GRACE_PERIOD_S: u64 = 10;
    /// `--replan-interval-s`.
    pub const REPLAN_INTERVAL_S: u64 = 30;
    /// `--kill-grace-s`: SIGTERM → SIGKILL for job processes (spec: 30 s).
    pub const KILL_GRACE_S: u64 = 30;
    /// `--rendezvous-timeout-s`.
    pub const RENDEZVOUS_TIMEOUT_S: u64 = 180;
    /// `--log-level`.
    pub const LOG_LEVEL: &str = "info";

    /// The simulated GPUs of `--dev`.
    pub fn dev_gpus() -> GpuSpec {
        GpuSpec::Simulated(vec![crate::gpus::SimulatedGroup {
            count: 4,
            model: "SIM-24GB".into(),
            memory_mib: 24 * 1024,
        }])
    }
}

/// A secret read from a file (the API token); `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) String);

impl Secret {
    /// The secret itself, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything the daemon needs to start, checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `--name`, a valid job-style name ([A-Za-z0-9._-], no leading '.').
    pub name: String,
    /// `--data-dir`; under `--dev` without one, a fresh directory in the temp dir.
    pub data_dir: PathBuf,
    /// True when `data_dir` was made up by `--dev` (the daemon may remove it on exit).
    pub data_dir_is_temporary: bool,
    /// `--listen`, at least one.
    pub listen: Vec<Multiaddr>,
    /// `--join`.
    pub join: Vec<Multiaddr>,
    /// `--advertise`: addresses announced to peers; empty means the listen addresses.
    pub advertise: Vec<Multiaddr>,
    /// `--bootstrap-expect`, at least 1; `None` when the agent never forms a cluster
    /// (given `--join` without `--bootstrap-expect`: it waits to be added to one).
    pub bootstrap_expect: Option<u32>,
    /// `--api`.
    pub api: SocketAddr,
    /// `--gpus`.
    pub gpus: GpuSpec,
    /// `--cluster-key-file`.
    pub cluster_key_file: Option<PathBuf>,
    /// The key in that file, read and parsed by [`AgentConfig::load`].
    pub cluster_key: Option<PreSharedKey>,
    /// `--api-token-file`, else `DATA_DIR/api-token`.
    pub api_token_file: PathBuf,
    /// True when `api_token_file` is the default one, generated when missing.
    pub api_token_generated: bool,
    /// The token in that file (one word, at least 16 bytes), read by [`AgentConfig::load`].
    pub api_token: Option<Secret>,
    /// `--insecure-open-mesh`: a non-loopback mesh without a cluster key, on purpose.
    pub insecure_open_mesh: bool,
    /// `--dev`.
    pub dev: bool,
    /// mDNS discovery on the local network (off with `--no-mdns`, and by default under `--dev`).
    pub mdns: bool,
    /// `--grace-period-s`.
    pub grace_period: Duration,
    /// `--heartbeat-ms`.
    pub heartbeat: Duration,
    /// `--log-level`, a valid tracing filter.
    pub log_level: String,
    /// `--replan-interval-s`.
    pub replan_interval: Duration,
    /// `--kill-grace-s`.
    pub kill_grace: Duration,
    /// `--rendezvous-timeout-s`.
    pub rendezvous_timeout: Duration,
    /// The `--config` file, if one was read.
    pub config_file: Option<PathBuf>,
    /// The leader's planner (`local-search` or a baseline).
    pub solver: String,
    /// Whether the leader may preempt running jobs to move them (introspection).
    pub introspection: bool,
    /// Whether an early stop re-plans the remaining jobs at once (`--no-early-stop-replan`).
    pub early_stop_replan: bool,
    /// `--checkpoint-root`: shared checkpoint storage, when given.
    pub checkpoint_root: Option<PathBuf>,
    /// `--checkpoint-replicas` and the other checkpoint knobs.
    pub checkpoint: crate::checkpoint::CheckpointSettings,
}

impl AgentConfig {
    /// Reads the config file (if any), resolves it with the flags and reads the secret
    /// files; under `--dev`, creates the temporary data directory.
    pub fn load(args: &AgentArgs) -> Result<AgentConfig, ConfigError> {
        let file_text = match &args.config {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|source| {
                ConfigError::ReadConfigFile {
                    path: path.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let file = args.config.as_deref().zip(file_text.as_deref());
        let host = HostFacts {
            hostname: hostname(),
            dev_data_dir: dev_data_dir(),
        };
        let mut config = resolve(args, file, &host)?;
        if config.data_dir_is_temporary {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| {
                ConfigError::CreateDataDir {
                    path: config.data_dir.clone(),
                    source,
                }
            })?;
        }
        // The key first: a bad one is reported before a token is made up.
        if let Some(path) = &config.cluster_key_file {
            config.cluster_key = Some(secrets::read_cluster_key(path)?);
        }
        config.api_token = Some(secrets::read_or_generate_token(
            &config.api_token_file,
            config.api_token_generated,
        )?);
        Ok(config)
    }
}

/// The host's name: the kernel's, else /etc/hostname, else `$HOSTNAME`.
fn hostname() -> Option<String> {
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    [
        from_file("/proc/sys/kernel/hostname"),
        from_file("/etc/hostname"),
        std::env::var("HOSTNAME").ok(),
    ]
    .into_iter()
    .flatten()
    .map(|name| name.trim().to_string())
    .find(|name| !name.is_empty())
}

/// A data directory no other run uses: the process id and the start time make it unique.
fn dev_data_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("saturn-dev-{}-{nanos}", std::process::id()))
}
