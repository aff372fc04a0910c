//! The document as a small tree of values that remember where they came from.
//!
//! TOML and JSON both become this tree (see `toml_source` and `json_source`), so a single
//! validator serves both formats and every problem can name its line (TOML) or its path
//! (JSON, which has no line information after parsing).

/// One value of the document and the line it starts on (`None` for JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub line: Option<usize>,
}

/// What a [`Node`] holds. Tables keep their keys in document order because sweep grids
/// expand in the order the user wrote the variables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Node>),
    Table(Vec<(String, Node)>),
    /// A value the job format never accepts (a TOML datetime, a JSON null), by type name.
    Unsupported(&'static str),
}

/// Longest rendering of a value quoted in an error message; a huge inline table would
/// otherwise drown the reason.
const MAX_RENDERED_CHARS: usize = 60;

impl Node {
    /// The value's type in the words an error message uses ("a string", "a table").
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
            Kind::Unsupported(name) => name,
        }
    }

    /// The value written back the way TOML would show it, shortened for error messages.
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_into(self, &mut out);
        if out.chars().count() > MAX_RENDERED_CHARS {
            let cut: String = out.chars().take(MAX_RENDERED_CHARS - 1).collect();
            return format!("{cut}…");
        }
        out
    }

    /// The text a grid value contributes when substituted for `{var}`: strings as they
    /// are (so `"1e-4"` stays `1e-4`), numbers in their shortest natural form.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(format_float(*f)),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

fn render_into(node: &Node, out: &mut String) {
    // Stop early: the result is truncated anyway, and a pathological value could be huge.
    if out.len() > MAX_RENDERED_CHARS * 4 {
        return;
    }
    match &node.kind {
        Kind::Str(s) => out.push_str(&format!("{s:?}")),
        Kind::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(item, out);
            }
            out.push(']');
        }
        Kind::Table(entries) => {
            out.push_str("{ ");
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(" = ");
                render_into(value, out);
            }
            out.push_str(" }");
        }
        Kind::Unsupported(name) => out.push_str(&format!("<{name}>")),
        _ => out.push_str(&node.scalar_text().unwrap_or_default()),
    }
}

/// Formats a float as short as it can be read back exactly: `0.5`, `1e-4`, `3000`.
///
/// Integral values print without a fraction or exponent (`3000`, not `3e3`, which would
/// surprise in a job name); others take whichever of the plain and the exponent form is
/// shorter, preferring the plain one.
pub(crate) fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let plain = value.to_string();
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return plain;
    }
    let exponent = format!("{value:e}");
    if exponent.len() < plain.len() {
        exponent
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_in_their_shortest_natural_form() {
        assert_eq!(format_float(1e-4), "1e-4");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(3e-3), "3e-3");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(3000.0), "3000");
        assert_eq!(format_float(2.5e-7), "2.5e-7");
        assert_eq!(format_float(123.456), "123.456");
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let items = (0..100)
            .map(|i| Node {
                kind: Kind::Int(i),
                line: None,
            })
            .collect();
        let rendered = Node {
            kind: Kind::Array(items),
            line: None,
        }
        .render();
        assert!(rendered.ends_with('…'));
        assert_eq!(rendered.chars().count(), MAX_RENDERED_CHARS);
    }
}
