//! The SPASE instance: hosts, jobs and their options, exactly as in spec/planner.md.
//!
//! These are plain data types; `serde` ignores unknown fields so newer producers can add
//! information without breaking older planners. Checking that an instance makes sense is
//! [`Instance::validate`]'s job (see `problem.rs`), and reading one from text with error
//! messages that name the offending job or host is [`crate::parse_instance`]'s.

use serde::{Deserialize, Serialize};

/// A planning problem: the GPUs that exist and the jobs that want them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The GPU hosts; at least one.
    pub hosts: Vec<Host>,
    /// The jobs to place; may be empty (the plan is then empty).
    pub jobs: Vec<Job>,
    /// Seconds added to a running job's runtime when the plan moves it (checkpoint + restart).
    #[serde(default)]
    pub switch_cost_s: f64,
}

/// One machine with identical GPUs, indexed `0..gpus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Unique name, used in placements.
    pub name: String,
    /// Number of GPUs.
    pub gpus: u32,
    /// GPU model (e.g. "V100"); options that name a model only run on hosts of that model.
    #[serde(default)]
    pub gpu_model: Option<String>,
}

/// A training job with the configurations it may run in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id, used in assignments.
    pub id: String,
    /// Remaining training steps (minibatches).
    pub steps: u64,
    /// Feasible configurations; at least one.
    pub options: Vec<JobOption>,
    /// Where the job runs now, when it does (re-planning).
    #[serde(default)]
    pub running: Option<Running>,
    /// The job may not start earlier than this (seconds from now).
    #[serde(default)]
    pub release_s: f64,
}

/// One feasible configuration of a job: a technique on a gang of `hosts` hosts with
/// `gpus_per_host` GPUs on each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOption {
    /// Parallelism technique, e.g. "ddp" or "fsdp".
    pub technique: String,
    /// Restricts the option to hosts of this GPU model.
    #[serde(default)]
    pub gpu_model: Option<String>,
    /// GPUs used on each host of the gang.
    pub gpus_per_host: u32,
    /// Number of distinct hosts in the gang.
    #[serde(default = "one")]
    pub hosts: u32,
    /// Seconds per training step in this configuration.
    pub step_time_s: f64,
}

fn one() -> u32 {
    1
}

impl JobOption {
    /// Runtime of `steps` steps in this configuration, without any switch cost.
    pub fn runtime_s(&self, steps: u64) -> f64 {
        steps as f64 * self.step_time_s
    }

    /// Total GPUs the option occupies.
    pub fn total_gpus(&self) -> u64 {
        u64::from(self.gpus_per_host) * u64::from(self.hosts)
    }
}

/// Where a job runs at planning time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    /// The technique it runs with.
    pub technique: String,
    /// The GPUs it holds, one entry per host.
    pub placement: Vec<PlacementEntry>,
}

/// The GPUs one job uses on one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlacementEntry {
    /// Host name.
    pub host: String,
    /// GPU indices on that host.
    pub gpus: Vec<u32>,
}

/// True when two placements name the same GPUs (entry and index order do not matter).
pub fn same_placement(a: &[PlacementEntry], b: &[PlacementEntry]) -> bool {
    fn canonical(p: &[PlacementEntry]) -> Vec<(&str, Vec<u32>)> {
        let mut entries: Vec<(&str, Vec<u32>)> = p
            .iter()
            .map(|e| {
                let mut gpus = e.gpus.clone();
                gpus.sort_unstable();
                (e.host.as_str(), gpus)
            })
            .collect();
        entries.sort();
        entries
    }
    a.len() == b.len() && canonical(a) == canonical(b)
}
