//! The executor: runs the job processes the replicated state assigns to this agent and
//! reports what they do. Independent of consensus: it is told "run this attempt" and
//! answers with [`AttemptEvent`]s.
//!
//! - [`spec`]: what to run ([`AttemptSpec`]); [`env`](mod@env): the exact environment it gets.
//! - [`protocol`]: the `SATURN step=` / `checkpoint` / `metric` stdout lines.
//! - [`table`]: [`ProcessTable`], the level-triggered front the daemon drives.
//! - [`process`] and `supervise`: one process, its group, its signals, its output.
//! - [`logs`]: bounded, rotated per-attempt logs and reading them back.
//! - [`pidfile`]: records of live processes and ending leftovers after a crash.
//! - [`step_time`]: step time of trial runs; [`throttle`]: rate limiting of progress.
//! - [`reconcile`]: the pure decisions (start, stop, report, hand back) from this host's
//!   view of the state and the process table; [`report`]: process events as commands
//!   through the cluster port; [`hand_back`]: which exits are the agent's doing;
//!   [`gang`]: the address and port a gang's ranks meet at.

pub mod env;
pub mod event;
pub mod gang;
pub mod hand_back;
pub mod lines;
pub mod logs;
pub mod pidfile;
pub mod process;
pub mod procfs;
pub mod protocol;
pub mod reconcile;
#[cfg(test)]
mod reconcile_tests;
pub mod report;
mod spawner;
pub mod spec;
pub mod step_time;
mod supervise;
pub mod table;
pub mod throttle;
pub mod watchdog;

pub use env::attempt_env;
pub use event::{AttemptEvent, ProcessEvent};
pub use logs::{read_from, read_tail, LogChunk, LogLimits};
pub use pidfile::{end_orphans, ProcessRecord};
pub use process::{ProcessSettings, StartError};
pub use protocol::{parse_line, Report};
pub use spec::{AttemptKey, AttemptSpec, Gang};
pub use step_time::{robust_step_time, StepSample};
pub use table::{attempt_log_path, attempt_logs, checkpoint_dir, Ensured, ExecutorConfig, ExecutorError, ProcessTable};
