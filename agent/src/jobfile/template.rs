//! One `[[job]]` or `[[sweep]]` table read into a [`Template`]: every field typed and
//! checked, strings still holding their `{var}` placeholders.

use std::collections::BTreeMap;

use saturn_consensus::EarlyStop;

use super::early_stop;
use super::fields::TableReader;
use super::names;
use super::nested::{grid, profile};
use super::problem::Problems;
use super::tree::{Kind, Node};
use super::{
    DEFAULT_DURATION_ESTIMATE_S, DEFAULT_MAX_RESTARTS, DEFAULT_TECHNIQUES, MAX_DURATION_ESTIMATE_S, MAX_GPUS, MAX_RESTARTS,
};

/// Which kind of table a template was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    Job,
    Sweep,
}

impl TableKind {
    fn allowed_fields(self) -> &'static [&'static str] {
        const JOB: &[&str] = &[
            "name",
            "command",
            "workdir",
            "env",
            "steps",
            "techniques",
            "gpus",
            "profile_group",
            "max_restarts",
            "profile",
            "duration_estimate_s",
        ];
        const SWEEP: &[&str] = &[
            "name",
            "command",
            "workdir",
            "env",
            "steps",
            "techniques",
            "gpus",
            "profile_group",
            "max_restarts",
            "profile",
            "duration_estimate_s",
            "grid",
            "early_stop",
        ];
        match self {
            TableKind::Job => JOB,
            TableKind::Sweep => SWEEP,
        }
    }
}

/// A string field that may hold `{var}` placeholders, and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    pub value: String,
    pub line: Option<usize>,
    /// The field as messages name it (`command[2]`, or `sweep[0].command[2]` for JSON).
    pub field: String,
}

/// One grid variable of a sweep and its values as the text they substitute.
#[derive(Debug, Clone)]
pub(crate) struct GridVar {
    pub name: String,
    pub values: Vec<String>,
    pub line: Option<usize>,
    pub field: String,
}

/// A table whose fields all have the right types and ranges.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub kind: TableKind,
    pub name: Text,
    pub command: Vec<Text>,
    pub workdir: Option<Text>,
    pub env: Vec<(String, Text)>,
    pub profile_group: Option<Text>,
    pub steps: u64,
    pub techniques: Vec<String>,
    pub gpus: (u32, u32),
    pub max_restarts: u32,
    pub profile: BTreeMap<String, BTreeMap<u32, f64>>,
    /// Seconds the job is planned to take when it reports no steps.
    pub duration_estimate_s: u64,
    /// Empty for a `[[job]]`.
    pub grid: Vec<GridVar>,
    /// A sweep's early-stopping rule (never on a `[[job]]`).
    pub early_stop: Option<EarlyStop>,
}

/// Reads one table; `None` when any field is wrong (each problem is recorded).
pub(crate) fn read(
    kind: TableKind,
    label: String,
    node: &Node,
    problems: &mut Problems,
) -> Option<Template> {
    let Kind::Table(entries) = &node.kind else {
        problems.push(
            node.line,
            label,
            Some(node.render()),
            format!("must be a table, not {}", node.type_name()),
        );
        return None;
    };
    let before = problems.count();
    let mut r = TableReader::new(label, node.line, entries, problems);

    let name = r
        .required("name", "name = \"my-job\"")
        .and_then(|n| text(&mut r, n, "name"));
    let command = r
        .required("command", "command = [\"python3\", \"train.py\"]")
        .and_then(|n| command(&mut r, n));
    let workdir = r
        .optional("workdir")
        .and_then(|n| text(&mut r, n, "workdir"));
    let env = r
        .optional("env")
        .map_or(Some(Vec::new()), |n| env(&mut r, n));
    let steps = r
        .required("steps", "steps = N, the total number of training steps")
        .and_then(|n| r.integer(n, "steps", 1, i64::MAX));
    let techniques = r.optional("techniques").map_or_else(
        || Some(DEFAULT_TECHNIQUES.iter().map(|t| t.to_string()).collect()),
        |n| techniques(&mut r, n),
    );
    let gpus = r.optional("gpus").map_or(Some((1, 1)), |n| gpus(&mut r, n));
    let profile_group = r
        .optional("profile_group")
        .and_then(|n| text(&mut r, n, "profile_group"));
    let max_restarts = r
        .optional("max_restarts")
        .map_or(Some(i64::from(DEFAULT_MAX_RESTARTS)), |n| {
            r.integer(n, "max_restarts", 0, i64::from(MAX_RESTARTS))
        });
    let duration_estimate_s = r
        .optional("duration_estimate_s")
        .map_or(Some(DEFAULT_DURATION_ESTIMATE_S as i64), |n| {
            r.integer(n, "duration_estimate_s", 1, MAX_DURATION_ESTIMATE_S as i64)
        });
    let profile = match (r.optional("profile"), &techniques, gpus) {
        (None, _, _) => Some(BTreeMap::new()),
        (Some(n), Some(techniques), Some(gpus)) => profile(&mut r, n, techniques, gpus),
        // The profile is checked against techniques and gpus; with those broken, its
        // own problems would be guesses.
        (Some(_), _, _) => None,
    };
    let grid = match kind {
        TableKind::Sweep => r
            .required("grid", "grid = { var = [value, ...] }")
            .and_then(|n| grid(&mut r, n)),
        TableKind::Job => Some(Vec::new()),
    };
    let early_stop = match (kind, r.optional("early_stop")) {
        (TableKind::Sweep, Some(n)) => {
            let sweep = name.as_ref().map_or("", |name| name.value.as_str());
            early_stop::read(&mut r, n, steps, sweep).map(Some)
        }
        (TableKind::Job, Some(n)) => {
            let why = "only a [[sweep]] stops its jobs early (its jobs are compared with each other); write this table as [[sweep]] or remove early_stop";
            r.bad(n, "early_stop", why);
            None
        }
        (_, None) => Some(None),
    };
    r.reject_unknown(kind.allowed_fields(), |key| {
        (kind == TableKind::Job && key == "grid")
            .then(|| "only a [[sweep]] has a grid; write this table as [[sweep]]".to_string())
    });

    let template = Template {
        kind,
        name: name?,
        command: command?,
        workdir,
        env: env?,
        profile_group,
        steps: u64::try_from(steps?).ok()?,
        techniques: techniques?,
        gpus: gpus?,
        max_restarts: u32::try_from(max_restarts?).ok()?,
        profile: profile?,
        duration_estimate_s: u64::try_from(duration_estimate_s?).ok()?,
        grid: grid?,
        early_stop: early_stop?,
    };
    // An optional field that was present but wrong reads as absent above; only a
    // problem-free table yields a template.
    (problems.count() == before).then_some(template)
}

fn text(r: &mut TableReader<'_>, node: &Node, key: &str) -> Option<Text> {
    let value = r.string(node, key)?;
    Some(Text {
        value,
        line: node.line.or(r.line),
        field: r.field(key),
    })
}

fn command(r: &mut TableReader<'_>, node: &Node) -> Option<Vec<Text>> {
    let parts = r.strings(node, "command")?;
    if parts.is_empty() {
        r.bad(
            node,
            "command",
            "must name the program to run, e.g. [\"python3\", \"train.py\"]",
        );
        return None;
    }
    let texts = parts
        .into_iter()
        .enumerate()
        .map(|(i, (value, line))| Text {
            value,
            line: line.or(r.line),
            field: r.field(&format!("command[{i}]")),
        })
        .collect();
    Some(texts)
}

fn env(r: &mut TableReader<'_>, node: &Node) -> Option<Vec<(String, Text)>> {
    let entries = r.table(node, "env", "{ HF_HOME = \"/data/hf\" }")?;
    let mut out = Vec::with_capacity(entries.len());
    let mut all_ok = true;
    for (key, value) in entries {
        let path = format!("env.{key}");
        if let Err(why) = names::check_env_key(key) {
            r.bad(value, &path, why);
            all_ok = false;
            continue;
        }
        // Numbers and booleans are accepted as their text: `OMP_NUM_THREADS = 4` is what
        // people write.
        match (&value.kind, value.scalar_text()) {
            (Kind::Str(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_), Some(text)) => {
                out.push((
                    key.clone(),
                    Text {
                        value: text,
                        line: value.line.or(r.line),
                        field: r.field(&path),
                    },
                ));
            }
            _ => {
                r.bad(
                    value,
                    &path,
                    format!("must be a string, not {}", value.type_name()),
                );
                all_ok = false;
            }
        }
    }
    all_ok.then_some(out)
}

fn techniques(r: &mut TableReader<'_>, node: &Node) -> Option<Vec<String>> {
    let list = r.strings(node, "techniques")?;
    if list.is_empty() {
        r.bad(
            node,
            "techniques",
            "must list at least one technique, e.g. [\"ddp\"]",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (technique, _) in list {
        if let Err(why) = names::check_technique(&technique) {
            r.bad(node, "techniques", format!("{technique:?}: {why}"));
            return None;
        }
        if out.contains(&technique) {
            r.bad(node, "techniques", format!("{technique:?} is listed twice"));
            return None;
        }
        out.push(technique);
    }
    Some(out)
}

/// `gpus = [min, max]` (inclusive), or `gpus = n` for exactly n.
fn gpus(r: &mut TableReader<'_>, node: &Node) -> Option<(u32, u32)> {
    let (lo, hi) = match &node.kind {
        Kind::Int(n) => (*n, *n),
        Kind::Array(items) => match items.as_slice() {
            [Node {
                kind: Kind::Int(lo),
                ..
            }, Node {
                kind: Kind::Int(hi),
                ..
            }] => (*lo, *hi),
            _ => {
                r.bad(
                    node,
                    "gpus",
                    "must be [min, max], two integers, e.g. [1, 8]",
                );
                return None;
            }
        },
        _ => {
            r.bad(
                node,
                "gpus",
                format!("must be [min, max], two integers, not {}", node.type_name()),
            );
            return None;
        }
    };
    let max = i64::from(MAX_GPUS);
    let why = if lo < 1 {
        "the lower bound must be at least 1".to_string()
    } else if hi > max {
        format!("the upper bound must be at most {max}")
    } else if lo > hi {
        "the lower bound must not exceed the upper bound".to_string()
    } else {
        return Some((u32::try_from(lo).ok()?, u32::try_from(hi).ok()?));
    };
    r.bad(node, "gpus", why);
    None
}
