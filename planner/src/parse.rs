//! Reading an instance from JSON text with errors that point at the entry at fault.
//!
//! `serde_json` alone reports "invalid value: integer `-1`, expected u32 at line 40"; a
//! person wants "job \"bert\" option 2: gpus_per_host: expected a non-negative integer,
//! got -1". So the text is first read as a JSON tree and every host, job and option is
//! converted on its own, naming it on failure.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::InstanceError;
use crate::instance::{Host, Instance, Job, JobOption};

/// What a field must hold, for error messages.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Count,
    Number,
}

/// Parses and validates an instance (see spec/planner.md); unknown fields are ignored.
pub fn parse_instance(text: &str) -> Result<Instance, InstanceError> {
    let root: Value = serde_json::from_str(text).map_err(|e| InstanceError::Json(e.to_string()))?;
    let Value::Object(top) = &root else {
        return Err(shape("the instance", "expected a JSON object with `hosts` and `jobs`"));
    };
    let hosts = array(top.get("hosts"), "hosts")?
        .iter()
        .enumerate()
        .map(|(i, v)| convert::<Host>(v, || item_label("host", "name", i, v), HOST_FIELDS))
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = array(top.get("jobs"), "jobs")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_job(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    let switch_cost_s = match top.get("switch_cost_s") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| shape("switch_cost_s", &format!("expected a number, got {v}")))?,
    };
    let instance = Instance { hosts, jobs, switch_cost_s };
    instance.validate()?;
    Ok(instance)
}

const HOST_FIELDS: &[(&str, Kind)] = &[("name", Kind::Text), ("gpus", Kind::Count)];
const JOB_FIELDS: &[(&str, Kind)] =
    &[("id", Kind::Text), ("steps", Kind::Count), ("release_s", Kind::Number)];
const OPTION_FIELDS: &[(&str, Kind)] = &[
    ("technique", Kind::Text),
    ("gpus_per_host", Kind::Count),
    ("hosts", Kind::Count),
    ("step_time_s", Kind::Number),
];

fn parse_job(index: usize, value: &Value) -> Result<Job, InstanceError> {
    let label = || item_label("job", "id", index, value);
    // Options first, so a bad option is reported as such rather than as a bad job.
    if let Some(Value::Array(options)) = value.get("options") {
        for (o, option) in options.iter().enumerate() {
            convert::<JobOption>(option, || format!("{} option {o}", label()), OPTION_FIELDS)?;
        }
    }
    convert::<Job>(value, label, JOB_FIELDS)
}

fn array<'a>(value: Option<&'a Value>, name: &str) -> Result<&'a Vec<Value>, InstanceError> {
    match value {
        Some(Value::Array(items)) => Ok(items),
        None => Err(shape("the instance", &format!("missing field `{name}`"))),
        Some(other) => Err(shape(name, &format!("expected an array, got {other}"))),
    }
}

/// Converts one entry; on failure, explains which field is wrong when it can tell.
fn convert<T: DeserializeOwned>(
    value: &Value,
    label: impl Fn() -> String,
    fields: &[(&str, Kind)],
) -> Result<T, InstanceError> {
    T::deserialize(value).map_err(|err| {
        let message = fields
            .iter()
            .find_map(|&(name, kind)| field_problem(value.get(name)?, name, kind))
            .unwrap_or_else(|| err.to_string());
        shape(&label(), &message)
    })
}

fn field_problem(value: &Value, name: &str, kind: Kind) -> Option<String> {
    let fits = match kind {
        Kind::Text => value.is_string(),
        Kind::Count => value.is_u64(),
        Kind::Number => value.is_number(),
    };
    let wanted = match kind {
        Kind::Text => "a string",
        Kind::Count => "a non-negative integer",
        Kind::Number => "a number",
    };
    (!fits).then(|| format!("{name}: expected {wanted}, got {value}"))
}

/// `job "bert" (jobs[3])` when the entry has a usable name, `jobs[3]` otherwise.
fn item_label(kind: &str, name_field: &str, index: usize, value: &Value) -> String {
    match value.get(name_field).and_then(Value::as_str) {
        Some(name) => format!("{kind} \"{name}\" ({kind}s[{index}])"),
        None => format!("{kind}s[{index}]"),
    }
}

fn shape(item: &str, message: &str) -> InstanceError {
    InstanceError::Shape { item: item.to_string(), message: message.to_string() }
}
