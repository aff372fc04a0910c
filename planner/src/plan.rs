//! The plan: one assignment per job, in the JSON shape of spec/planner.md.

use serde::{Deserialize, Serialize};

use crate::instance::PlacementEntry;

/// A solution of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Largest `end_s` of all assignments (0 for no jobs).
    pub makespan_s: f64,
    /// A proven lower bound on the optimal makespan.
    pub lower_bound_s: f64,
    /// The solver that produced the plan (its `--solver` name).
    pub solver: String,
    /// Wall-clock milliseconds the solve took.
    pub solve_ms: u64,
    /// One per job, sorted by start time.
    pub assignments: Vec<Assignment>,
}

/// Where and when one job runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The job's id.
    pub job: String,
    /// The chosen option's technique.
    pub technique: String,
    /// Start time, seconds from now.
    pub start_s: f64,
    /// End time, seconds from now.
    pub end_s: f64,
    /// The GPUs, one entry per host of the gang.
    pub placement: Vec<PlacementEntry>,
}

impl Plan {
    /// `makespan_s / lower_bound_s`: 1.0 means provably optimal.
    pub fn gap_ratio(&self) -> f64 {
        if self.lower_bound_s > 0.0 {
            self.makespan_s / self.lower_bound_s
        } else {
            1.0
        }
    }
}
