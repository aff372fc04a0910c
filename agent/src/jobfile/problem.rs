//! What is wrong with a job file: every problem, each with its place and reason.

use std::fmt;

/// One thing wrong with a job file.
///
/// Rendered by [`JobFileErrors`] as `sweep.toml line 12: gpus = [0, 8]: the lower bound
/// must be at least 1` (TOML) or `JSON body: job[2].gpus = [0, 8]: ...` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// 1-based line in the TOML text; `None` for JSON, where `field` is a full path.
    pub line: Option<usize>,
    /// The field: a key path inside its table for TOML (`gpus`, `profile.fsdp.2`), a path
    /// from the document root for JSON (`job[2].gpus`); empty for whole-file problems.
    pub field: String,
    /// The offending value as written, shortened; `None` when the field is missing.
    pub value: Option<String>,
    /// Why it is wrong, phrased so the fix is clear.
    pub reason: String,
}

impl Problem {
    /// Renders the problem as one line, prefixed with the file's name.
    pub fn render(&self, source: &str) -> String {
        let mut out = match self.line {
            Some(line) => format!("{source} line {line}: "),
            None => format!("{source}: "),
        };
        if !self.field.is_empty() {
            out.push_str(&self.field);
            if let Some(value) = &self.value {
                out.push_str(" = ");
                out.push_str(value);
            }
            out.push_str(": ");
        }
        out.push_str(&self.reason);
        out
    }
}

/// A rejected job file: every problem found, in document order.
///
/// `Display` prints one problem per line. Nothing of a file with problems is submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JobFileErrors {
    /// Name of the file (or `JSON body`) used as the prefix of every line.
    pub source_name: String,
    /// The problems, at most [`MAX_REPORTED_PROBLEMS`](super::MAX_REPORTED_PROBLEMS).
    pub problems: Vec<Problem>,
    /// How many further problems were found but not listed.
    pub omitted: usize,
}

impl JobFileErrors {
    /// Each problem as one line, ready for a terminal or an API error list.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| p.render(&self.source_name))
            .collect();
        if self.omitted > 0 {
            lines.push(format!(
                "{}: and {} more problems",
                self.source_name, self.omitted
            ));
        }
        lines
    }
}

impl fmt::Display for JobFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

/// Collects problems while a file is checked; the checker never stops at the first one.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    /// Records a problem about `field` (with its value when there is one).
    pub fn push(
        &mut self,
        line: Option<usize>,
        field: impl Into<String>,
        value: Option<String>,
        reason: impl Into<String>,
    ) {
        self.list.push(Problem {
            line,
            field: field.into(),
            value,
            reason: reason.into(),
        });
    }

    /// Records an already built problem.
    pub fn add(&mut self, problem: Problem) {
        self.list.push(problem);
    }

    /// How many problems have been recorded so far.
    pub fn count(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The final error: problems in document order (JSON ones keep discovery order, which
    /// follows the document), the same problem never twice, and at most `limit` listed.
    pub fn into_errors(self, source_name: &str, limit: usize) -> JobFileErrors {
        let mut list = self.list;
        // A stable sort keeps discovery order among problems of the same line.
        list.sort_by_key(|p| p.line.unwrap_or(0));
        let mut seen = std::collections::HashSet::new();
        list.retain(|p| seen.insert(p.clone()));
        let omitted = list.len().saturating_sub(limit);
        list.truncate(limit);
        JobFileErrors {
            source_name: source_name.to_string(),
            problems: list,
            omitted,
        }
    }
}
