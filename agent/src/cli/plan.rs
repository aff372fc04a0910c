//! `saturn plan INSTANCE.json`: the offline planner (being written).

use clap::Args;

/// Arguments of `saturn plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The instance JSON file (see spec/planner.md).
    pub instance: std::path::PathBuf,
}

/// Runs `saturn plan`; returns the process exit status.
pub fn run(_args: &PlanArgs) -> anyhow::Result<i32> {
    anyhow::bail!("saturn plan is being written")
}
