//! The leader-side scheduler: decides in pure code, acts at the edges.
//!
//! Map:
//! - [`config`]: the knobs; [`context`]: time and agent health, the non-replicated inputs.
//! - [`agents`]: `AgentUp`/`AgentDown` from heartbeats, and why the grace period is long.
//! - [`shapes`], [`curve`], [`profiles`]: shapes a job can take, scaling curves, the
//!   profile book (what is measured, what to measure next, what is fitted or pruned).
pub mod agents;
pub mod config;
pub mod context;
pub mod curve;
pub mod profiles;
pub mod shapes;

#[cfg(test)]
mod test_support;
pub mod free_gpus;
pub mod instance;
pub mod profiler;
pub mod dispatch;
pub mod profile_stats;
