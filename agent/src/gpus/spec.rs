//! `--gpus auto | none | sim:SPEC`: which GPUs an agent offers.

use std::fmt;
use std::str::FromStr;

/// Memory of a simulated GPU whose model name has no `-<N>GB` suffix.
pub const DEFAULT_SIMULATED_MEMORY_MIB: u64 = 16 * 1024;
/// Most simulated GPUs one agent may claim; more is surely a typo.
pub const MAX_SIMULATED_GPUS: u32 = 1024;

/// Where an agent's GPUs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSpec {
    /// Ask the NVIDIA driver (NVML); no driver means no GPUs, not an error.
    Auto,
    /// Offer no GPUs: the agent still votes, plans and accepts jobs.
    None,
    /// Simulated GPUs (tests, demos, laptops): jobs run, but on no real device.
    Simulated(Vec<SimulatedGroup>),
}

/// `4xA100-80GB`: a number of identical simulated GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedGroup {
    /// How many GPUs of this model.
    pub count: u32,
    /// The model name as written, e.g. `A100-80GB`.
    pub model: String,
    /// Memory of each GPU, from the model's `-<N>GB` suffix or the default.
    pub memory_mib: u64,
}

/// A `--gpus` value that is none of `auto`, `none`, `sim:SPEC`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--gpus {input:?}: {reason}")]
pub struct GpuSpecError {
    /// The value as given.
    pub input: String,
    /// What is wrong, with an example of what is right.
    pub reason: String,
}

impl FromStr for GpuSpec {
    type Err = GpuSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| GpuSpecError {
            input: input.to_string(),
            reason,
        };
        match input.trim() {
            "auto" => Ok(GpuSpec::Auto),
            "none" => Ok(GpuSpec::None),
            other => {
                let Some(groups) = other.strip_prefix("sim:") else {
                    return Err(error(
                        "expected auto, none or sim:SPEC (e.g. sim:4xA100-80GB,2xV100-16GB)".into(),
                    ));
                };
                let groups = groups
                    .split(',')
                    .map(parse_group)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(error)?;
                let total = groups.iter().fold(0u64, |sum, g| sum + u64::from(g.count));
                if total > u64::from(MAX_SIMULATED_GPUS) {
                    return Err(error(format!(
                        "{total} simulated GPUs; at most {MAX_SIMULATED_GPUS} are allowed"
                    )));
                }
                Ok(GpuSpec::Simulated(groups))
            }
        }
    }
}

/// `NxMODEL` (or just `MODEL`, one GPU), e.g. `4xA100-80GB`.
fn parse_group(group: &str) -> Result<SimulatedGroup, String> {
    let group = group.trim();
    let example = "like 4xA100-80GB";
    if group.is_empty() {
        return Err(format!(
            "an empty GPU group; write groups {example}, separated by commas"
        ));
    }
    let (count, model) = match group.split_once('x') {
        Some((digits, model))
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) =>
        {
            let count: u32 = digits
                .parse()
                .map_err(|_| format!("{digits:?} is not a GPU count"))?;
            (count, model)
        }
        _ => (1, group),
    };
    if count == 0 {
        return Err(format!("{group:?}: the count must be at least 1"));
    }
    if model.is_empty() {
        return Err(format!("{group:?}: the model name is missing, {example}"));
    }
    if !model
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{group:?}: a model name may only hold letters, digits, '-', '_' and '.', {example}"
        ));
    }
    let memory_mib = memory_from_model(model).map_err(|why| format!("{group:?}: {why}"))?;
    Ok(SimulatedGroup {
        count,
        model: model.to_string(),
        memory_mib,
    })
}

/// The memory a model name announces with a `-<N>GB` suffix (GiB, as GPU vendors mean it).
fn memory_from_model(model: &str) -> Result<u64, String> {
    let Some((_, suffix)) = model.rsplit_once('-') else {
        return Ok(DEFAULT_SIMULATED_MEMORY_MIB);
    };
    let upper = suffix.to_ascii_uppercase();
    let Some(digits) = upper.strip_suffix("GB") else {
        return Ok(DEFAULT_SIMULATED_MEMORY_MIB);
    };
    match digits.parse::<u64>() {
        Ok(gib) if (1..=1 << 20).contains(&gib) => Ok(gib * 1024),
        _ => Err(format!(
            "-{suffix} is not a memory size; write it like -80GB"
        )),
    }
}

impl fmt::Display for GpuSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSpec::Auto => f.write_str("auto"),
            GpuSpec::None => f.write_str("none"),
            GpuSpec::Simulated(groups) => {
                let groups: Vec<String> = groups
                    .iter()
                    .map(|g| format!("{}x{}", g.count, g.model))
                    .collect();
                write!(f, "sim:{}", groups.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(spec: &str) -> Vec<SimulatedGroup> {
        match spec.parse::<GpuSpec>() {
            Ok(GpuSpec::Simulated(groups)) => groups,
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn simulated_specs_give_counts_models_and_memory() {
        let groups = sim("sim:4xA100-80GB,2xV100-16GB");
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (
                groups[0].count,
                groups[0].model.as_str(),
                groups[0].memory_mib
            ),
            (4, "A100-80GB", 80 * 1024)
        );
        assert_eq!((groups[1].count, groups[1].memory_mib), (2, 16 * 1024));
        let plain = sim("sim:T4");
        assert_eq!(
            (plain[0].count, plain[0].memory_mib),
            (1, DEFAULT_SIMULATED_MEMORY_MIB)
        );
        assert_eq!(sim("sim:2xSIM-24GB")[0].memory_mib, 24 * 1024);
    }

    #[test]
    fn keywords_and_round_trip() {
        assert_eq!("auto".parse::<GpuSpec>(), Ok(GpuSpec::Auto));
        assert_eq!("none".parse::<GpuSpec>(), Ok(GpuSpec::None));
        let spec: GpuSpec = "sim:4xA100-80GB,2xV100-16GB".parse().expect("valid");
        assert_eq!(spec.to_string(), "sim:4xA100-80GB,2xV100-16GB");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (input, needle) in [
            ("gpu", "expected auto, none or sim:SPEC"),
            ("sim:", "an empty GPU group"),
            ("sim:0xA100", "at least 1"),
            ("sim:4x", "model name is missing"),
            ("sim:4xA100 80GB", "may only hold"),
            ("sim:4xA100-0GB", "not a memory size"),
            ("sim:2000xA100", "at most 1024"),
            ("sim:4xA100,", "an empty GPU group"),
        ] {
            let err = input.parse::<GpuSpec>().expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
