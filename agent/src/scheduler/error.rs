//! What can go wrong while scheduling.

use saturn_planner::SolveError;

/// A scheduling round that could not finish; the next round retries from fresh state.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The planner refused the instance built from the state. This is a bug in the
    /// instance builder (it must only produce valid instances), reported with the
    /// planner's message naming the job or host.
    #[error("the planner rejected the instance built from the cluster state: {0}")]
    Solve(#[from] SolveError),
    /// A plan names a GPU the instance did not offer (a bug: plans only use offered GPUs).
    #[error("the plan places job {job} on GPUs the instance does not offer")]
    ForeignPlacement {
        /// The job.
        job: String,
    },
    /// The blocking solve task panicked or was cancelled.
    #[error("the planning task did not finish: {0}")]
    PlanningTask(String),
}
