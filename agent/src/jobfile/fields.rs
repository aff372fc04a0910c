//! Typed reading of one table's fields, recording a problem for every mismatch.
//!
//! Readers return `None` after recording why, so the caller just skips what is broken
//! and carries on to find the next problem.

use super::names;
use super::problem::Problems;
use super::tree::{Kind, Node};

/// One table being read: where it is, which keys were used, and where problems go.
pub(crate) struct TableReader<'a> {
    /// `job[2]` or `sweep[0]`: prefixes JSON field paths.
    label: String,
    /// Header line of the table (TOML); `None` for JSON.
    pub line: Option<usize>,
    entries: &'a [(String, Node)],
    used: Vec<bool>,
    pub problems: &'a mut Problems,
}

impl<'a> TableReader<'a> {
    pub fn new(
        label: String,
        line: Option<usize>,
        entries: &'a [(String, Node)],
        problems: &'a mut Problems,
    ) -> Self {
        TableReader {
            label,
            line,
            entries,
            used: vec![false; entries.len()],
            problems,
        }
    }

    /// How a field is named in a message: the key path for TOML (the line says which
    /// table), the full path for JSON (which has no lines).
    pub fn field(&self, key_path: &str) -> String {
        if self.line.is_some() {
            key_path.to_string()
        } else {
            format!("{}.{key_path}", self.label)
        }
    }

    /// Records that `node`, at `key_path`, is wrong for `reason`.
    pub fn bad(&mut self, node: &Node, key_path: &str, reason: impl Into<String>) {
        let field = self.field(key_path);
        self.problems
            .push(node.line.or(self.line), field, Some(node.render()), reason);
    }

    /// Takes an optional field, marking it as known.
    pub fn optional(&mut self, key: &str) -> Option<&'a Node> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[index] = true;
        Some(&self.entries[index].1)
    }

    /// Takes a field that must be there; records `what` it should be when it is missing.
    pub fn required(&mut self, key: &str, what: &str) -> Option<&'a Node> {
        let node = self.optional(key);
        if node.is_none() {
            let field = self.field(key);
            self.problems
                .push(self.line, field, None, format!("missing; add {what}"));
        }
        node
    }

    /// Records every key no reader took: a misspelt field must not be silently ignored.
    pub fn reject_unknown(&mut self, allowed: &[&str], hint: impl Fn(&str) -> Option<String>) {
        for (index, (key, node)) in self.entries.iter().enumerate() {
            if self.used[index] {
                continue;
            }
            let reason = match (hint(key), names::suggestion(key, allowed)) {
                (Some(hint), _) => hint,
                (None, Some(close)) => format!("unknown field; did you mean {close}?"),
                (None, None) => {
                    format!("unknown field; the known fields are {}", allowed.join(", "))
                }
            };
            self.bad(node, key, reason);
        }
    }

    pub fn string(&mut self, node: &Node, key_path: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.bad(
                    node,
                    key_path,
                    format!("must be a string, not {}", node.type_name()),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&mut self, node: &Node, key_path: &str, min: i64, max: i64) -> Option<i64> {
        match node.kind {
            Kind::Int(i) if (min..=max).contains(&i) => Some(i),
            Kind::Int(_) => {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                self.bad(node, key_path, format!("must be {range}"));
                None
            }
            _ => {
                self.bad(
                    node,
                    key_path,
                    format!("must be an integer, not {}", node.type_name()),
                );
                None
            }
        }
    }

    /// An array of strings, each paired with its line; reports every bad element.
    pub fn strings(&mut self, node: &Node, key_path: &str) -> Option<Vec<(String, Option<usize>)>> {
        let Kind::Array(items) = &node.kind else {
            self.bad(
                node,
                key_path,
                format!("must be an array of strings, not {}", node.type_name()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut all_ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &format!("{key_path}[{i}]")) {
                Some(s) => out.push((s, item.line)),
                None => all_ok = false,
            }
        }
        all_ok.then_some(out)
    }

    /// A table's entries; records a problem when `node` is something else.
    pub fn table<'n>(
        &mut self,
        node: &'n Node,
        key_path: &str,
        example: &str,
    ) -> Option<&'n [(String, Node)]> {
        match &node.kind {
            Kind::Table(entries) => Some(entries),
            _ => {
                self.bad(
                    node,
                    key_path,
                    format!("must be a table, like {example}, not {}", node.type_name()),
                );
                None
            }
        }
    }
}
