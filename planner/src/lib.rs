//! SPASE planner for Saturn: given jobs with profiled configurations and a set of GPU hosts,
//! choose per job a parallelism technique, GPUs and a start time so the whole workload
//! finishes as early as possible. Pure library: no async, no I/O besides serde.
//!
//! Map of the crate:
//! - [`instance`]: the instance types of spec/planner.md; [`parse_instance`] reads one with
//!   messages naming the job or host at fault, [`Instance::validate`] checks one.
//! - [`plan`]: the plan types; [`validate_plan`] checks a plan against the five rules.
//! - [`lower_bound`]: a proven bound on the optimal makespan.
//! - [`solve`]: the local-search solver and the paper's baselines behind one call.
//! - [`simulate`]: a discrete-event run of a plan under noisy step times, with and without
//!   periodic re-planning (Saturn's introspection).
//! - [`render_svg`]: a Gantt chart of a plan.
#![deny(missing_docs)]

mod assemble;
mod baselines;
mod bound;
mod construct;
mod decode;
mod error;
mod execute;
pub mod instance;
mod parse;
pub mod plan;
mod problem;
mod recreate;
mod search;
mod simulate;
mod solve;
mod svg;
mod validate;

pub use bound::lower_bound;
pub use error::InstanceError;
pub use instance::{Host, Instance, Job, JobOption, PlacementEntry, Running};
pub use parse::parse_instance;
pub use plan::{Assignment, Plan};
pub use validate::{validate_plan, PlanError};
pub use solve::{solve, solve_traced, MoveStats, SolveError, SolveOptions, SolveReport, Solver, UnknownSolver};
pub use svg::render_svg;
pub use simulate::{simulate, SimOptions, SimReport};
