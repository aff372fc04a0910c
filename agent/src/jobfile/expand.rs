//! Turning templates into jobs: `{var}` placeholders, the sweep grid's cartesian
//! product, and the checks that only make sense on the final strings (names are paths).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use saturn_consensus::job::JobSpec;

use super::names;
use super::problem::{Problem, Problems};
use super::template::{TableKind, Template, Text};

/// A piece of a string with placeholders: literal text or the index of a grid variable.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Var(usize),
}

/// Splits `text` into pieces. `{ident}` is a placeholder and must name a grid variable;
/// `{{` is a literal `{`; any other brace is literal (commands may hold JSON).
fn pieces(text: &str, vars: &[&str]) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        literal.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(tail) = after.strip_prefix('{') {
            literal.push('{');
            rest = tail;
            continue;
        }
        let placeholder = after
            .find('}')
            .map(|close| &after[..close])
            .filter(|name| names::is_identifier(name));
        let Some(name) = placeholder else {
            literal.push('{');
            rest = after;
            continue;
        };
        let index = vars.iter().position(|v| *v == name).ok_or_else(|| {
            if vars.is_empty() {
                format!("{{{name}}} is not substituted here: only a [[sweep]] has grid variables (write {{{{ for a literal brace)")
            } else {
                format!("unknown placeholder {{{name}}}; the grid defines {}", vars.join(", "))
            }
        })?;
        if !literal.is_empty() {
            out.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        out.push(Piece::Var(index));
        rest = &after[name.len() + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Literal(literal));
    }
    Ok(out)
}

fn substitute(pieces: &[Piece], point: &[&str]) -> String {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Literal(text) => text.as_str(),
            Piece::Var(index) => point[*index],
        })
        .collect()
}

/// A template string split into pieces once, substituted at every grid point.
struct Pattern<'t> {
    text: &'t Text,
    pieces: Vec<Piece>,
}

impl Pattern<'_> {
    fn at(&self, point: &[&str]) -> String {
        substitute(&self.pieces, point)
    }
}

/// How many jobs a template expands to, saturating so a huge grid cannot overflow.
pub(crate) fn job_count(template: &Template) -> usize {
    template
        .grid
        .iter()
        .fold(1usize, |count, var| count.saturating_mul(var.values.len()))
}

/// Expands a template into its jobs, recording every problem. For a `[[job]]` this is
/// one job and braces are left alone; for a `[[sweep]]`, one job per grid point.
pub(crate) fn expand(
    template: &Template,
    default_workdir: &str,
    problems: &mut Problems,
) -> Vec<JobSpec> {
    let vars: Vec<&str> = template.grid.iter().map(|v| v.name.as_str()).collect();
    let Some(patterns) = Patterns::new(template, &vars, problems) else {
        return Vec::new();
    };
    let mut failures = Failures::default();
    let mut first_point_of_name: HashMap<String, usize> = HashMap::new();
    let mut jobs = Vec::with_capacity(job_count(template));
    let mut odometer = vec![0usize; template.grid.len()];
    for point_index in 0..job_count(template) {
        let point: Vec<&str> = template
            .grid
            .iter()
            .zip(&odometer)
            .map(|(var, &i)| var.values[i].as_str())
            .collect();
        let job = patterns.job(template, &point, default_workdir);
        check_job(&job, &point, &patterns, &mut failures);
        if first_point_of_name
            .insert(job.name.clone(), point_index)
            .is_some()
        {
            let text = patterns.name.text;
            failures.record(
                "unique",
                text,
                format!(
                    "two grid points give the same name {:?}; make the grid values distinct",
                    job.name
                ),
            );
        }
        jobs.push(job);
        advance(&mut odometer, template);
    }
    failures.report(jobs.len(), template.kind, problems);
    jobs
}

/// Next grid point: the last variable varies fastest, so points come out in the order
/// of nested loops over the variables as written.
fn advance(odometer: &mut [usize], template: &Template) {
    for (position, var) in odometer.iter_mut().zip(&template.grid).rev() {
        *position += 1;
        if *position < var.values.len() {
            return;
        }
        *position = 0;
    }
}

/// Every string field of a template, parsed for placeholders.
struct Patterns<'t> {
    name: Pattern<'t>,
    command: Vec<Pattern<'t>>,
    workdir: Option<Pattern<'t>>,
    env: Vec<(&'t str, Pattern<'t>)>,
    profile_group: Option<Pattern<'t>>,
}

impl<'t> Patterns<'t> {
    /// Parses every field; `None` if any placeholder is unknown or the name does not use
    /// every grid variable (each problem recorded).
    fn new(template: &'t Template, vars: &[&str], problems: &mut Problems) -> Option<Self> {
        let before = problems.count();
        let mut parse = |text: &'t Text| -> Option<Pattern<'t>> {
            // A [[job]] has no grid: its strings are taken literally, braces and all.
            if template.kind == TableKind::Job {
                return Some(Pattern {
                    text,
                    pieces: vec![Piece::Literal(text.value.clone())],
                });
            }
            match pieces(&text.value, vars) {
                Ok(pieces) => Some(Pattern { text, pieces }),
                Err(why) => {
                    problems.push(
                        text.line,
                        text.field.clone(),
                        Some(format!("{:?}", text.value)),
                        why,
                    );
                    None
                }
            }
        };
        let name = parse(&template.name);
        let command: Vec<Option<Pattern<'t>>> = template.command.iter().map(&mut parse).collect();
        let workdir = template.workdir.as_ref().map(&mut parse);
        let env: Vec<Option<(&'t str, Pattern<'t>)>> = template
            .env
            .iter()
            .map(|(key, text)| parse(text).map(|p| (key.as_str(), p)))
            .collect();
        let profile_group = template.profile_group.as_ref().map(&mut parse);
        if let Some(name) = &name {
            for (index, var) in template.grid.iter().enumerate() {
                if !name.pieces.contains(&Piece::Var(index)) {
                    let why = format!("{{{}}} does not appear in name, so jobs would share a name; add it to name", var.name);
                    problems.push(var.line, var.field.clone(), None, why);
                }
            }
        }
        if problems.count() != before {
            return None;
        }
        Some(Patterns {
            name: name?,
            command: command.into_iter().collect::<Option<_>>()?,
            workdir: workdir.flatten(),
            env: env.into_iter().collect::<Option<_>>()?,
            profile_group: profile_group.flatten(),
        })
    }

    fn job(&self, template: &Template, point: &[&str], default_workdir: &str) -> JobSpec {
        let name = self.name.at(point);
        let workdir = match &self.workdir {
            // A relative workdir is relative to where the file was submitted from.
            Some(pattern) => Path::new(default_workdir)
                .join(pattern.at(point))
                .to_string_lossy()
                .into_owned(),
            None => default_workdir.to_string(),
        };
        JobSpec {
            profile_group: self
                .profile_group
                .as_ref()
                .map_or_else(|| name.clone(), |p| p.at(point)),
            name,
            command: self.command.iter().map(|p| p.at(point)).collect(),
            workdir,
            env: self
                .env
                .iter()
                .map(|(key, p)| (key.to_string(), p.at(point)))
                .collect::<BTreeMap<_, _>>(),
            steps: template.steps,
            techniques: template.techniques.clone(),
            gpus_min: template.gpus.0,
            gpus_max: template.gpus.1,
            max_restarts: template.max_restarts,
            profile: template.profile.clone(),
            early_stop: template.early_stop.clone(),
            duration_estimate_s: template.duration_estimate_s,
        }
    }
}

/// Checks a finished job's strings; names and profile groups become paths.
fn check_job(job: &JobSpec, point: &[&str], patterns: &Patterns<'_>, failures: &mut Failures) {
    if let Err(why) = names::check_name(&job.name) {
        failures.record(
            "name",
            patterns.name.text,
            format!("the job name {:?} {why}", job.name),
        );
    }
    if let Some(pattern) = &patterns.profile_group {
        if let Err(why) = names::check_name(&job.profile_group) {
            failures.record(
                "group",
                pattern.text,
                format!("the profile group {:?} {why}", job.profile_group),
            );
        }
    }
    if let Some(pattern) = &patterns.workdir {
        if pattern.at(point).is_empty() {
            failures.record(
                "workdir",
                pattern.text,
                "must not be empty; leave workdir out to use the submitting directory".into(),
            );
        }
    }
    if job.command[0].is_empty() {
        failures.record(
            "program",
            patterns.command[0].text,
            "the program to run must not be empty".into(),
        );
    }
    // An argument, path or variable with a NUL byte cannot be passed to exec at all.
    let all = patterns
        .command
        .iter()
        .chain(&patterns.workdir)
        .chain(patterns.env.iter().map(|(_, p)| p));
    for pattern in all {
        if pattern.at(point).contains('\0') {
            failures.record(
                "nul",
                pattern.text,
                "contains a NUL character, which no process can be given".into(),
            );
        }
    }
}

/// Problems found at grid points, each reported once with how many points share it, so
/// one mistake in a sweep's template is one line rather than 10,000.
#[derive(Default)]
struct Failures {
    /// The first occurrence of each (check, field), in discovery order.
    first: Vec<(&'static str, Problem)>,
    counts: HashMap<(&'static str, String), usize>,
}

impl Failures {
    fn record(&mut self, check: &'static str, text: &Text, reason: String) {
        let count = self.counts.entry((check, text.field.clone())).or_insert(0);
        if *count == 0 {
            let value = Some(format!("{:?}", text.value));
            self.first.push((
                check,
                Problem {
                    line: text.line,
                    field: text.field.clone(),
                    value,
                    reason,
                },
            ));
        }
        *count += 1;
    }

    fn report(self, points: usize, kind: TableKind, problems: &mut Problems) {
        for (check, mut problem) in self.first {
            let count = self
                .counts
                .get(&(check, problem.field.clone()))
                .copied()
                .unwrap_or(1);
            if kind == TableKind::Sweep && count > 1 {
                problem.reason.push_str(&format!(
                    " (and at {} more of the {points} grid points)",
                    count - 1
                ));
            }
            problems.add(problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_escapes_and_literal_braces() {
        let vars = ["bs", "lr"];
        let parsed = pieces("vit-bs{bs}-lr{lr}", &vars).expect("known vars");
        assert_eq!(substitute(&parsed, &["64", "1e-4"]), "vit-bs64-lr1e-4");
        let json = pieces(r#"{"a": {"b": 1}} {{bs}"#, &vars).expect("no placeholders");
        assert_eq!(substitute(&json, &["64", "x"]), r#"{"a": {"b": 1}} {bs}"#);
        let err = pieces("x{bz}", &vars).expect_err("unknown var");
        assert!(
            err.contains("unknown placeholder {bz}") && err.contains("bs, lr"),
            "{err}"
        );
    }
}
