//! A sweep's `early_stop` table:
//! `{ metric = "loss", mode = "min", rule = "asha", min_steps = 500, reduction = 3 }`.
//!
//! `metric` and `min_steps` are required; `mode` defaults to `min`, `rule` to `asha`,
//! `reduction` to 3. `min_steps` must be below the sweep's `steps` (a job is first judged
//! there). The metric name follows the `SATURN metric NAME=VALUE` line's rules.

use saturn_consensus::{EarlyStop, MetricMode, StopRule};

use super::fields::TableReader;
use super::tree::Node;

/// Default reduction factor (ASHA's η).
pub const DEFAULT_REDUCTION: u32 = 3;
/// Largest reduction factor accepted.
pub const MAX_REDUCTION: u32 = 100;

const FIELDS: &[&str] = &["metric", "mode", "rule", "min_steps", "reduction"];
const EXAMPLE: &str = "{ metric = \"loss\", mode = \"min\", rule = \"asha\", min_steps = 500, reduction = 3 }";

/// Reads `early_stop`; `steps` is the sweep's (when valid), `sweep` its name template.
pub(crate) fn read(r: &mut TableReader<'_>, node: &Node, steps: Option<i64>, sweep: &str) -> Option<EarlyStop> {
    let entries = r.table(node, "early_stop", EXAMPLE)?;
    let field = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, n)| n);
    let mut all_ok = true;
    for (key, value) in entries {
        if !FIELDS.contains(&key.as_str()) {
            let why = format!("unknown field; early_stop has {}", FIELDS.join(", "));
            r.bad(value, &format!("early_stop.{key}"), why);
            all_ok = false;
        }
    }
    let metric = match field("metric") {
        None => {
            r.bad(node, "early_stop.metric", "missing; add metric = \"loss\" (the name the job reports with SATURN metric NAME=VALUE)");
            None
        }
        Some(n) => r.string(n, "early_stop.metric").and_then(|name| {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/:".contains(c));
            if !ok {
                r.bad(n, "early_stop.metric", "must be a metric name: 1 to 64 letters, digits or _ . - / :");
            }
            ok.then_some(name)
        }),
    };
    let mode = choice(r, field("mode"), "early_stop.mode", &[("min", MetricMode::Min), ("max", MetricMode::Max)]);
    let rule = choice(r, field("rule"), "early_stop.rule", &[("asha", StopRule::Asha), ("median", StopRule::Median)]);
    let min_steps = match field("min_steps") {
        None => {
            r.bad(node, "early_stop.min_steps", "missing; add min_steps = N, the step of the first rung");
            None
        }
        Some(n) => r.integer(n, "early_stop.min_steps", 1, i64::MAX).and_then(|min| match steps {
            Some(steps) if min >= steps => {
                r.bad(n, "early_stop.min_steps", format!("must be below steps ({steps}), or no job is ever judged"));
                None
            }
            _ => u64::try_from(min).ok(),
        }),
    };
    let reduction = field("reduction").map_or(Some(i64::from(DEFAULT_REDUCTION)), |n| {
        r.integer(n, "early_stop.reduction", 2, i64::from(MAX_REDUCTION))
    });
    if !all_ok {
        return None;
    }
    Some(EarlyStop {
        sweep: sweep.to_string(),
        metric: metric?,
        mode: mode?,
        rule: rule?,
        min_steps: min_steps?,
        reduction: u32::try_from(reduction?).ok()?,
    })
}

/// One of `options` by name; the first option when the field is absent.
fn choice<T: Copy>(r: &mut TableReader<'_>, node: Option<&Node>, path: &str, options: &[(&str, T)]) -> Option<T> {
    let Some(node) = node else { return options.first().map(|(_, v)| *v) };
    let name = r.string(node, path)?;
    let found = options.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    if found.is_none() {
        let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
        r.bad(node, path, format!("must be {}", names.join(" or ")));
    }
    found
}
