//! The job file: TOML (or the same structure as JSON) → validated [`JobSpec`]s.
//!
//! The format is in `spec/agent.md`. A file holds any number of `[[job]]` and `[[sweep]]`
//! tables; a sweep is a template expanded over its `grid` (cartesian product, variables
//! in the order written, the last one varying fastest), with `{var}` substituted in
//! `name`, `command`, `workdir`, `env` values and `profile_group`.
//!
//! Defaults for fields left out:
//!
//! | field | default |
//! |---|---|
//! | `workdir` | the directory `saturn job run` ran in (`default_workdir`); a relative `workdir` is taken relative to it |
//! | `env` | empty |
//! | `techniques` | `["ddp"]` — what a plain data-parallel script runs as |
//! | `gpus` | `[1, 1]` — a script that knows nothing of Saturn gets one GPU |
//! | `profile_group` | the job's own (expanded) name |
//! | `max_restarts` | 2 |
//! | `profile` | none: every configuration is profiled by trial runs |
//! | `early_stop` (sweeps only) | none: every job runs to its end; inside it `mode = "min"`, `rule = "asha"`, `reduction = 3` (`metric`, `min_steps` required) |
//! | `duration_estimate_s` | 3600: how long a job that reports no steps is planned to take |
//!
//! `name`, `command` and `steps` are required; a sweep also needs `grid`. `gpus = n` is
//! accepted as `[n, n]`. In a sweep, `{{` writes a literal `{`; other braces are kept
//! as they are. Nothing of a file is accepted unless all of it is valid: the checker
//! collects every problem (line and field for TOML, a path like `job[2].gpus` for JSON).
//!
//! One checker serves both formats: the text becomes a small tree of located values
//! (`tree`, built by `toml_source` or `json_source`), each table is read into a typed
//! template (`template`, with `fields` and `nested`), and templates are expanded into jobs (`expand`).

mod early_stop;
mod expand;
mod fields;
mod json_source;
mod names;
mod nested;
mod problem;
mod template;
mod toml_source;
mod tree;

pub use names::{check_name, MAX_NAME_LEN};
pub use problem::{JobFileErrors, Problem};
use saturn_consensus::job::JobSpec;

use problem::Problems;
use template::TableKind;
use tree::{Kind, Node};

/// Most jobs one file may expand to; checked before any grid is expanded.
pub const MAX_JOBS_PER_FILE: usize = 10_000;
/// Largest GPU count a job may ask for.
pub const MAX_GPUS: u32 = 1024;
/// Restarts of a failed attempt when `max_restarts` is not given.
pub const DEFAULT_MAX_RESTARTS: u32 = 2;
/// Largest `max_restarts` accepted.
pub const MAX_RESTARTS: u32 = 1000;
/// `duration_estimate_s` when not given: one hour.
pub const DEFAULT_DURATION_ESTIMATE_S: u64 = saturn_consensus::job::DEFAULT_DURATION_ESTIMATE_S;
/// Largest `duration_estimate_s` accepted (a year).
pub const MAX_DURATION_ESTIMATE_S: u64 = 365 * 24 * 3600;
/// Techniques of a job that does not list its own.
pub const DEFAULT_TECHNIQUES: &[&str] = &["ddp"];
/// Most problems listed in one [`JobFileErrors`]; the rest are counted.
pub const MAX_REPORTED_PROBLEMS: usize = 100;

/// Name used for JSON bodies in problem lines.
const JSON_SOURCE: &str = "JSON body";

/// Parses and validates a TOML job file; `source_name` (e.g. `sweep.toml`) prefixes every
/// problem line and `default_workdir` is where the user submitted from.
///
/// Returns the jobs in file order (a sweep's points in grid order), or every problem.
pub fn parse_job_file(
    text: &str,
    source_name: &str,
    default_workdir: &str,
) -> Result<Vec<JobSpec>, JobFileErrors> {
    let root = toml_source::parse(text).map_err(|problem| single(source_name, problem))?;
    jobs_from_tree(&root, source_name, default_workdir)
}

/// Parses and validates the JSON form of a job file: `{"job": [...], "sweep": [...]}`,
/// each element with the fields of a `[[job]]` / `[[sweep]]` table. Problems name paths
/// like `job[2].gpus`.
pub fn parse_job_json(body: &str, default_workdir: &str) -> Result<Vec<JobSpec>, JobFileErrors> {
    let root = json_source::parse(body).map_err(|problem| single(JSON_SOURCE, problem))?;
    jobs_from_tree(&root, JSON_SOURCE, default_workdir)
}

fn single(source_name: &str, problem: Problem) -> JobFileErrors {
    JobFileErrors {
        source_name: source_name.to_string(),
        problems: vec![problem],
        omitted: 0,
    }
}

fn jobs_from_tree(
    root: &Node,
    source_name: &str,
    default_workdir: &str,
) -> Result<Vec<JobSpec>, JobFileErrors> {
    let mut problems = Problems::default();
    let mut templates = Vec::new();
    for (kind, label, node) in tables(root, &mut problems) {
        if let Some(template) = template::read(kind, label, node, &mut problems) {
            templates.push(template);
        }
    }
    let total = templates
        .iter()
        .fold(0usize, |sum, t| sum.saturating_add(expand::job_count(t)));
    let mut jobs = Vec::new();
    if total > MAX_JOBS_PER_FILE {
        // Counted from the grid sizes, so a 10^12-point grid is refused without expanding it.
        let why = format!(
            "the file expands to {total} jobs; at most {MAX_JOBS_PER_FILE} are accepted at once"
        );
        problems.push(None, "", None, why);
    } else {
        for template in &templates {
            jobs.extend(expand::expand(template, default_workdir, &mut problems));
        }
    }
    if problems.is_empty() {
        Ok(jobs)
    } else {
        Err(problems.into_errors(source_name, MAX_REPORTED_PROBLEMS))
    }
}

/// The `[[job]]` and `[[sweep]]` tables in document order, each with its kind and label.
fn tables<'n>(root: &'n Node, problems: &mut Problems) -> Vec<(TableKind, String, &'n Node)> {
    let Kind::Table(entries) = &root.kind else {
        let why = "the document must be an object with \"job\" and/or \"sweep\" lists";
        problems.push(root.line, "", None, why);
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, node) in entries {
        let kind = match key.as_str() {
            "job" => TableKind::Job,
            "sweep" => TableKind::Sweep,
            _ => {
                let why =
                    "unknown top-level key; a job file holds only [[job]] and [[sweep]] tables";
                problems.push(node.line, key.clone(), Some(node.render()), why);
                continue;
            }
        };
        match &node.kind {
            Kind::Array(items) => {
                found.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| (kind, format!("{key}[{i}]"), item)),
                );
            }
            _ => {
                let why = match node.line {
                    Some(_) => format!("must be a list of tables: write [[{key}]], not [{key}]"),
                    None => format!("must be a list of objects: \"{key}\": [{{...}}, ...]"),
                };
                problems.push(node.line, key.clone(), None, why);
            }
        }
    }
    // TOML keeps [[job]] and [[sweep]] in separate arrays; the lines restore file order.
    found.sort_by_key(|(_, _, node)| node.line.unwrap_or(0));
    if found.is_empty() && problems.is_empty() {
        problems.push(
            root.line,
            "",
            None,
            "the file defines no jobs; add a [[job]] or [[sweep]] table",
        );
    }
    found
}
