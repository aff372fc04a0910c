//! What the executor says about a running attempt.

use std::time::SystemTime;

use super::spec::AttemptKey;

/// Something that happened to an attempt's process.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessEvent {
    /// The process started.
    Started {
        /// Its pid, also its process group id.
        pid: u32,
    },
    /// Progress: `step` steps are done in total. Rate-limited, but the latest value is
    /// always delivered (before any later checkpoint and before `Exited`).
    Step {
        /// Steps done in total.
        step: u64,
        /// When the line arrived.
        at: SystemTime,
    },
    /// A checkpoint at `step` is durable; forwarded as soon as it is read.
    Checkpoint {
        /// The checkpoint's step.
        step: u64,
    },
    /// A metric value; rate-limited like `Step`, latest value per name.
    Metric {
        /// Metric name.
        name: String,
        /// Metric value.
        value: f64,
    },
    /// Trial runs only, just before `Exited`, when the measurement stands: the measured
    /// step time (see [`robust_step_time`](super::robust_step_time)).
    StepTime {
        /// Median seconds per step after warm-up.
        seconds_per_step: f64,
        /// How many `SATURN step=` reports it was computed from.
        samples: usize,
    },
    /// Trial runs only, just before `Exited`: the trial ran out of time without one
    /// `SATURN step=` line.
    TrialNoSteps,
    /// The process is gone (or never started); always the attempt's last event.
    Exited {
        /// Exit status, when it exited by itself.
        code: Option<i32>,
        /// Signal number, when a signal ended it.
        signal: Option<i32>,
        /// For a failure: why, in words a person can act on, e.g. `command not found:
        /// foo`, or the last lines of stderr for a non-zero exit.
        error: Option<String>,
    },
}

impl ProcessEvent {
    /// Whether this is an `Exited` event that means the attempt completed its work
    /// (exit status 0).
    pub fn is_success(&self) -> bool {
        matches!(self, ProcessEvent::Exited { code: Some(0), .. })
    }
}

/// A [`ProcessEvent`] of a given attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEvent {
    /// Which attempt.
    pub key: AttemptKey,
    /// What happened.
    pub event: ProcessEvent,
}
