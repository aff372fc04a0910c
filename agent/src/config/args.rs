//! The `saturn-agent` command line (spec/agent.md), as clap arguments.
//!
//! Every field is optional here, even those with defaults: a flag that was not given
//! must not override the config file, so defaults are applied later, in `resolve`.

use std::path::PathBuf;

use clap::Parser;

/// `saturn-agent`: one per GPU host; together the agents form the mesh.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "saturn-agent",
    version = crate::VERSION,
    about = "Saturn agent: one per GPU host; together they form the mesh"
)]
pub struct AgentArgs {
    /// TOML file with the same keys as these flags (snake_case); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Agent name, unique in the mesh [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Raft log, snapshots, job logs [default: ./saturn-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Mesh address, repeatable [default: /ip4/0.0.0.0/tcp/7946].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,

    /// A peer to join through, repeatable (/ip4/../tcp/.. with or without /p2p/ID).
    #[arg(long, value_name = "MULTIADDR")]
    pub join: Vec<String>,

    /// Agents that form a new cluster together [default: 1; with --join: none, the
    /// agent never forms a cluster, it waits to be added to one].
    #[arg(long, value_name = "N")]
    pub bootstrap_expect: Option<u32>,

    /// HTTP API and dashboard address [default: 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,

    /// auto (NVML) | none | sim:SPEC, SPEC like 4xA100-80GB[,2xV100-16GB] [default: auto].
    #[arg(long, value_name = "auto|none|sim:SPEC")]
    pub gpus: Option<String>,

    /// Pre-shared key (libp2p swarm.key format, mode 0600); a peer without it cannot
    /// connect. Required when the mesh listens on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,

    /// Bearer token every API request must carry, loopback included (at least 16 bytes,
    /// mode 0600) [default: DATA_DIR/api-token, generated at first start].
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,

    /// Run a mesh on a non-loopback address without --cluster-key-file (anyone who can
    /// reach the port can join and run jobs): an explicit opt-out.
    #[arg(long)]
    pub insecure_open_mesh: bool,

    /// One agent, temporary data dir, sim:4xSIM-24GB, bootstrap-expect 1, no mDNS, mesh and
    /// API on loopback only.
    #[arg(long)]
    pub dev: bool,

    /// Do not discover peers on the local network with mDNS (config key: mdns = false).
    #[arg(long)]
    pub no_mdns: bool,

    /// Addresses to announce to peers instead of the listen addresses (NAT, containers), repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub advertise: Vec<String>,

    /// Seconds a host may be silent before its jobs are declared lost and rescheduled [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub grace_period_s: Option<u64>,

    /// Milliseconds between heartbeats (GPU load, health) [default: 500].
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,

    /// Log filter, e.g. info or saturn_agent=debug,info [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Seconds between periodic re-plans on the leader [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub replan_interval_s: Option<u64>,

    /// Seconds a job process gets between SIGTERM and SIGKILL [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub kill_grace_s: Option<u64>,
    /// Seconds the processes of a multi-host job may take to rendezvous
    /// (SATURN_RENDEZVOUS_TIMEOUT_S); a rank that printed no SATURN line by then (plus
    /// 15 s) is ended and its GPUs freed [default: 180].
    #[arg(long, value_name = "SECONDS")]
    pub rendezvous_timeout_s: Option<u64>,
    /// Planner of the leader: local-search (Saturn) or max-heuristic, optimus-greedy,
    /// random (baselines, to measure against) [default: local-search].
    #[arg(long, value_name = "SOLVER")]
    pub solver: Option<String>,
    /// Never preempt a running job to move it to a better configuration (Saturn's
    /// introspection off), to measure what introspection adds.
    #[arg(long)]
    pub no_introspection: bool,
    /// Do not re-plan when a sweep's early-stopping rule stops a job: the committed plan
    /// is followed until something else re-plans (to measure what re-planning adds).
    #[arg(long)]
    pub no_early_stop_replan: bool,
    /// Write a new random cluster key (libp2p swarm.key format, mode 0600) to FILE and
    /// exit; give the same file to every agent with --cluster-key-file.
    #[arg(long, value_name = "FILE")]
    pub gen_cluster_key: Option<PathBuf>,
    /// Delete this agent's cluster membership in --data-dir (Raft log, snapshots, cluster
    /// id; the node key and job logs stay) and exit, so that it can join another cluster.
    /// Needs --yes-really.
    #[arg(long)]
    pub reset_data: bool,
    /// Confirms --reset-data.
    #[arg(long, requires = "reset_data")]
    pub yes_really: bool,
    /// Checkpoints on storage every agent shares (NFS, Lustre...); without it
    /// checkpoints are replicated over the mesh.
    #[arg(long, value_name = "PATH")]
    pub checkpoint_root: Option<PathBuf>,
    /// Extra copies of each checkpoint on other agents [default: 1].
    #[arg(long, value_name = "R")]
    pub checkpoint_replicas: Option<u32>,
    /// Largest checkpoint accepted, MiB; a larger one is refused with a job note
    /// [default: 524288, 512 GiB].
    #[arg(long, value_name = "MIB")]
    pub checkpoint_max_mib: Option<u64>,
    /// Checkpoint bytes this agent pulls per second, MiB, so replication never starves
    /// Raft or gossip; 0 means unlimited [default: 200].
    #[arg(long, value_name = "MIB")]
    pub checkpoint_rate_mib_s: Option<u64>,
}
