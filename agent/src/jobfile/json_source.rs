//! JSON text → [`Node`] tree, keeping object keys in document order.
//!
//! `serde_json::Value` would sort keys (the workspace does not enable `preserve_order`),
//! and sweep grids must expand in the order the user wrote them, so the tree is built by
//! a small serde visitor instead.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::problem::Problem;
use super::tree::{Kind, Node};

/// Parses JSON text into a tree; a syntax error becomes one [`Problem`] with its line.
pub(crate) fn parse(text: &str) -> Result<Node, Problem> {
    serde_json::from_str::<Node>(text).map_err(|err| Problem {
        line: Some(err.line()),
        field: String::new(),
        value: None,
        reason: format!("not valid JSON: {err}"),
    })
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn node(kind: Kind) -> Node {
    Node { kind, line: None }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(node(Kind::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(node(Kind::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        // Beyond i64 no field of a job makes sense; keep it as a float so the validator
        // reports it as out of range rather than the parser failing obscurely.
        Ok(node(
            i64::try_from(v).map_or(Kind::Float(v as f64), Kind::Int),
        ))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(node(Kind::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(node(Kind::Str(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(node(Kind::Str(v)))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(node(Kind::Unsupported("null")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(node(Kind::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // TOML rejects duplicate keys while parsing; JSON parsers silently keep the
            // last one, which would hide a typo'd copy of a field.
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(node(Kind::Table(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_document_order() {
        let root = parse(r#"{"zeta": 1, "alpha": [true, 2.5, "x"]}"#).expect("valid JSON");
        let Kind::Table(entries) = root.kind else {
            panic!("object")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["zeta", "alpha"]);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_a_line() {
        let problem = parse("{\n\"a\": 1,\n\"a\": 2}").expect_err("duplicate key");
        assert_eq!(problem.line, Some(3));
        assert!(
            problem.reason.contains("duplicate key \"a\""),
            "{}",
            problem.reason
        );
    }
}
