//! `saturn-agent`, the daemon that runs on every GPU host, and the `saturn` CLI.
//!
//! Map of the crate (each module says more in its own doc comment). Deciding is pure and
//! tested without I/O (`scheduler`, `executor::reconcile`, `health`, `config::resolve`,
//! `jobfile`); the daemon's tasks carry the decisions out.
//!
//! The cluster and the daemon:
//! - [`cluster`]: the one port to the replicated cluster — state, this host's view,
//!   proposals with one retry policy, leadership, change notification, clock; over the
//!   consensus node ([`cluster::NodeCluster`]) or in memory ([`cluster::MemCluster`]).
//! - [`daemon`]: the running agent — wires the mesh, Raft, the executor, the scheduler
//!   and the API together (inbound routing, heartbeats, fence, membership, scheduler task).
//! - [`scheduler`]: the leader's pure deciders, and their shell over the cluster port.
//! - [`executor`]: job processes — [`executor::reconcile`] decides what runs here,
//!   [`executor::report`] turns what the processes say into commands, the process
//!   table, supervisors, watchdogs and the stdout protocol carry it out.
//! - [`checkpoint`]: checkpoint copies: digest, store, replication and fetch over the mesh.
//! - [`mesh`]: the libp2p swarm: discovery, gossip, request-response; [`peer`]: reaching
//!   an agent the state records over it (its mesh address, a typed round trip).
//! - [`health`]: the phi-accrual failure detector over heartbeats.
//! - [`gpus`]: GPU discovery (NVML, or simulated GPUs for tests and laptops).
//!
//! The edges:
//! - [`api`]: the HTTP API (JSON, `/metrics`, the dashboard); [`views`]: its documents.
//! - [`cli`]: the `saturn` command line (`plan`, `job ...`, `status`, `demo`).
//! - [`config`]: agent flags and TOML config, resolved and checked.
//! - [`jobfile`]: the TOML job/sweep file parser.
//! - [`synth_job`]: the simulated training job (`saturn synth-job`).
//! - [`local_cluster`]: a mesh of real agents on loopback (demo, tests, benchmarks).
#![deny(missing_docs)]

pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod gpus;
pub mod health;
pub mod jobfile;
pub mod local_cluster;
pub mod mesh;
pub mod peer;
pub mod scheduler;
pub mod synth_job;
pub mod views;

/// What `--version` prints for both binaries: the release and the wire version agents must share.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (wire version ", saturn_consensus::wire_version!(), ")");
