//! `saturn-agent`, the daemon that runs on every GPU host, and the `saturn` CLI.
//!
//! Map of the crate (each module says more in its own doc comment):
//! - [`cli`]: the `saturn` command line (`plan`, `job ...`, `status`, `demo`).
//! - [`config`]: agent flags and TOML config.
//! - [`gpus`]: GPU discovery (NVML, or simulated GPUs for tests and laptops).
//! - [`jobfile`]: the TOML job/sweep file parser.
//! - [`executor`]: starts and supervises job processes, parses their stdout protocol.
//! - [`synth_job`]: the simulated training job (`saturn synth-job`).
//! - [`mesh`]: the libp2p swarm: discovery, gossip, request-response.
//! - [`checkpoint`]: checkpoint copies: digest, store, replication and fetch over the mesh.

pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod config;
pub mod executor;
pub mod gpus;
pub mod health;
pub mod jobfile;
pub mod local_cluster;
pub mod mesh;
pub mod scheduler;
pub mod synth_job;
pub mod views;
