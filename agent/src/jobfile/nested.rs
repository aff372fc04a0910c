//! The fields that are tables of tables: a job's `profile` and a sweep's `grid`.

use std::collections::BTreeMap;

use super::fields::TableReader;
use super::names;
use super::template::GridVar;
use super::tree::{Kind, Node};

/// `profile = { technique = { gpu_count = seconds_per_step } }`.
pub(crate) fn profile(
    r: &mut TableReader<'_>,
    node: &Node,
    techniques: &[String],
    (lo, hi): (u32, u32),
) -> Option<BTreeMap<String, BTreeMap<u32, f64>>> {
    let entries = r.table(node, "profile", "{ ddp = { 1 = 0.9, 4 = 0.3 } }")?;
    let mut out = BTreeMap::new();
    let mut all_ok = true;
    for (technique, times) in entries {
        let path = format!("profile.{technique}");
        if !techniques.contains(technique) {
            r.bad(
                times,
                &path,
                format!(
                    "{technique:?} is not one of the job's techniques ({})",
                    techniques.join(", ")
                ),
            );
            all_ok = false;
            continue;
        }
        let Some(times) = r.table(times, &path, "{ 1 = 0.9, 4 = 0.3 }") else {
            all_ok = false;
            continue;
        };
        let mut by_count = BTreeMap::new();
        for (count, seconds) in times {
            let path = format!("profile.{technique}.{count}");
            let step_time = match seconds.kind {
                Kind::Float(f) => f,
                Kind::Int(i) => i as f64,
                _ => f64::NAN,
            };
            let why = match count.parse::<u32>() {
                Err(_) => Some("the key must be a GPU count, like 4 = 0.3".to_string()),
                Ok(n) if n < lo || n > hi => Some(format!(
                    "{n} GPUs is outside the job's gpus range [{lo}, {hi}]"
                )),
                Ok(_) if !(step_time.is_finite() && step_time > 0.0) => Some(
                    "must be the seconds one training step takes, a number greater than 0"
                        .to_string(),
                ),
                Ok(n) => {
                    by_count.insert(n, step_time);
                    None
                }
            };
            if let Some(why) = why {
                r.bad(seconds, &path, why);
                all_ok = false;
            }
        }
        out.insert(technique.clone(), by_count);
    }
    all_ok.then_some(out)
}

pub(crate) fn grid(r: &mut TableReader<'_>, node: &Node) -> Option<Vec<GridVar>> {
    let entries = r.table(
        node,
        "grid",
        "{ bs = [64, 128], lr = [\"1e-5\", \"1e-4\"] }",
    )?;
    if entries.is_empty() {
        r.bad(
            node,
            "grid",
            "must define at least one variable, e.g. { bs = [64, 128] }",
        );
        return None;
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut all_ok = true;
    for (name, values) in entries {
        let path = format!("grid.{name}");
        if !names::is_identifier(name) {
            r.bad(
                values,
                &path,
                "a grid variable name must match [A-Za-z_][A-Za-z0-9_]*",
            );
            all_ok = false;
            continue;
        }
        let texts: Option<Vec<String>> = match &values.kind {
            Kind::Array(items) if !items.is_empty() => {
                items.iter().map(Node::scalar_text).collect()
            }
            _ => None,
        };
        match texts {
            Some(texts) => out.push(GridVar {
                name: name.clone(),
                values: texts,
                line: values.line.or(r.line),
                field: r.field(&path),
            }),
            None => {
                r.bad(
                    values,
                    &path,
                    "must be a non-empty array of strings or numbers, e.g. [64, 128]",
                );
                all_ok = false;
            }
        }
    }
    all_ok.then_some(out)
}
