//! TOML text → [`Node`] tree, every node tagged with the line it starts on.

use toml_edit::{ImDocument, Item, Table, Value};

use super::problem::Problem;
use super::tree::{Kind, Node};

/// Parses TOML text into a tree; a syntax error becomes one [`Problem`] with its line.
pub(crate) fn parse(text: &str) -> Result<Node, Problem> {
    let lines = LineIndex::new(text);
    let document = ImDocument::parse(text).map_err(|err| syntax_problem(text, &err))?;
    Ok(table_node(document.as_table(), Some(1), &lines))
}

fn syntax_problem(text: &str, err: &toml_edit::TomlError) -> Problem {
    // toml_edit reports this span in characters, not bytes.
    let line = err
        .span()
        .map(|span| 1 + text.chars().take(span.start).filter(|&c| c == '\n').count());
    let message = err
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .trim()
        .to_string();
    Problem {
        line,
        field: String::new(),
        value: None,
        reason: format!("not valid TOML: {message}"),
    }
}

fn table_node(table: &Table, fallback_line: Option<usize>, lines: &LineIndex) -> Node {
    let line = lines.line_of(table.span()).or(fallback_line);
    let entries = table
        .iter()
        .map(|(key, item)| {
            // A value's own span is the most precise place; a dotted or implicit table has
            // none, so its key's place (or the enclosing table's) stands in.
            let key_line = lines
                .line_of(table.key(key).and_then(|k| k.span()))
                .or(line);
            (key.to_string(), item_node(item, key_line, lines))
        })
        .collect();
    Node {
        kind: Kind::Table(entries),
        line,
    }
}

fn item_node(item: &Item, fallback_line: Option<usize>, lines: &LineIndex) -> Node {
    match item {
        Item::Value(value) => value_node(value, fallback_line, lines),
        Item::Table(table) => table_node(table, fallback_line, lines),
        Item::ArrayOfTables(array) => {
            let tables = array
                .iter()
                .map(|table| table_node(table, fallback_line, lines))
                .collect();
            Node {
                kind: Kind::Array(tables),
                line: lines.line_of(array.span()).or(fallback_line),
            }
        }
        Item::None => Node {
            kind: Kind::Unsupported("nothing"),
            line: fallback_line,
        },
    }
}

fn value_node(value: &Value, fallback_line: Option<usize>, lines: &LineIndex) -> Node {
    let line = lines.line_of(value.span()).or(fallback_line);
    let kind = match value {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(f) => Kind::Float(*f.value()),
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(_) => Kind::Unsupported("a date-time"),
        Value::Array(array) => {
            Kind::Array(array.iter().map(|v| value_node(v, line, lines)).collect())
        }
        Value::InlineTable(table) => Kind::Table(
            table
                .iter()
                .map(|(key, v)| {
                    let key_line = lines
                        .line_of(table.key(key).and_then(|k| k.span()))
                        .or(line);
                    (key.to_string(), value_node(v, key_line, lines))
                })
                .collect(),
        ),
    };
    Node { kind, line }
}

/// Byte offset → 1-based line number, by binary search over the line starts.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    fn line_of(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        let offset = span?.start;
        Some(match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.kind {
            Kind::Table(entries) => {
                &entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .expect("key present")
                    .1
            }
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn values_remember_their_lines() {
        let text =
            "[[job]]\nname = \"a\"\n\n[[job]]\nname = \"b\"\n[job.profile]\nddp = { 1 = 0.5 }\n";
        let root = parse(text).expect("valid TOML");
        let Kind::Array(jobs) = &entry(&root, "job").kind else {
            panic!("job is an array")
        };
        assert_eq!(jobs[0].line, Some(1));
        assert_eq!(entry(&jobs[0], "name").line, Some(2));
        assert_eq!(jobs[1].line, Some(4));
        assert_eq!(entry(&jobs[1], "name").line, Some(5));
        assert_eq!(entry(entry(&jobs[1], "profile"), "ddp").line, Some(7));
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let problem = parse("[[job]]\nname = \"a\"\nsteps = = 3\n").expect_err("invalid TOML");
        assert_eq!(problem.line, Some(3));
        assert!(
            problem.reason.starts_with("not valid TOML"),
            "{}",
            problem.reason
        );
    }
}
