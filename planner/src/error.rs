//! Why an instance was rejected. Every message names the job or host at fault, because the
//! person reading it has to find that entry in a file of hundreds.

use thiserror::Error;

/// A malformed instance.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InstanceError {
    /// The text is not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// One entry does not have the shape of spec/planner.md (missing field, wrong type).
    #[error("{item}: {message}")]
    Shape {
        /// The entry, e.g. `job "bert-bs12" (jobs[3])`.
        item: String,
        /// What is wrong with it.
        message: String,
    },
    /// `hosts` is empty.
    #[error("the instance has no hosts: add at least one entry to `hosts`")]
    NoHosts,
    /// Two hosts share a name.
    #[error("host \"{host}\" appears twice: host names must be unique")]
    DuplicateHost {
        /// The repeated name.
        host: String,
    },
    /// Two jobs share an id.
    #[error("job \"{job}\" appears twice: job ids must be unique")]
    DuplicateJob {
        /// The repeated id.
        job: String,
    },
    /// A job or host has an empty name.
    #[error("{item} has an empty name")]
    EmptyName {
        /// Which entry, by position.
        item: String,
    },
    /// A job lists no options.
    #[error("job \"{job}\" has no options: give it at least one configuration")]
    NoOptions {
        /// The job.
        job: String,
    },
    /// A number is negative, not finite or zero where it must be positive.
    #[error("{item}: {field} = {value}: {rule}")]
    BadNumber {
        /// The job, option or host holding the number.
        item: String,
        /// The field name.
        field: &'static str,
        /// The value found.
        value: f64,
        /// What it must be.
        rule: &'static str,
    },
    /// No set of hosts can run an option.
    #[error("job \"{job}\" option {option} ({shape}) fits no host: {why}")]
    OptionFitsNoHost {
        /// The job.
        job: String,
        /// The option's index in `options`.
        option: usize,
        /// The option, in words.
        shape: String,
        /// What is missing.
        why: String,
    },
    /// A job's `running` entry is inconsistent with the hosts or its options.
    #[error("job \"{job}\" running placement: {why}")]
    BadRunning {
        /// The job.
        job: String,
        /// What is wrong.
        why: String,
    },
    /// Two running jobs hold the same GPU.
    #[error("jobs \"{job}\" and \"{other}\" both run on host \"{host}\" GPU {gpu}")]
    RunningOverlap {
        /// One job.
        job: String,
        /// The other job.
        other: String,
        /// The host.
        host: String,
        /// The GPU index.
        gpu: u32,
    },
}
