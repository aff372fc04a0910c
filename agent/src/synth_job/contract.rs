//! The simulated job's view of the job contract: the `SATURN_*` variables it reads.

use std::path::PathBuf;

/// GPU memory assumed when neither `SATURN_GPU_MEMORY_MIB` nor the model name says.
pub const DEFAULT_GPU_MEMORY_MIB: u64 = 16 * 1024;

/// What the agent told this process through its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnv {
    /// `SATURN_JOB_ID` (`local` when run by hand).
    pub job_id: String,
    /// `SATURN_ATTEMPT` (1 when unset).
    pub attempt: u32,
    /// `SATURN_AGENT`.
    pub agent: String,
    /// `SATURN_TECHNIQUE` (`ddp` when unset).
    pub technique: String,
    /// GPU indices from `CUDA_VISIBLE_DEVICES`.
    pub gpus: Vec<u32>,
    /// `SATURN_GPUS`, else the number of indices, else 1.
    pub gpus_per_host: u32,
    /// `SATURN_GPU_MODEL`.
    pub gpu_model: String,
    /// Memory of one GPU: `SATURN_GPU_MEMORY_MIB`, else the model's `-NGB` suffix,
    /// else [`DEFAULT_GPU_MEMORY_MIB`].
    pub gpu_memory_mib: u64,
    /// `SATURN_STEPS` (required).
    pub steps: u64,
    /// `SATURN_START_STEP` (0 when unset).
    pub start_step: u64,
    /// `SATURN_CHECKPOINT_DIR`; without it nothing is checkpointed.
    pub checkpoint_dir: Option<PathBuf>,
    /// `SATURN_PROFILE_STEPS`, set only in trial runs.
    pub profile_steps: Option<u64>,
    /// `SATURN_NNODES` (1 when unset).
    pub nnodes: u32,
}

impl JobEnv {
    /// Reads the contract through `var` (the process environment, or a map in tests).
    /// An error names the variable and what is wrong with it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let gpus: Vec<u32> = match var("CUDA_VISIBLE_DEVICES") {
            Some(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|index| index.trim().parse().map_err(|_| format!("CUDA_VISIBLE_DEVICES={list:?} is not a list of GPU indices")))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let gpu_model = var("SATURN_GPU_MODEL").unwrap_or_default();
        let gpu_memory_mib = match var("SATURN_GPU_MEMORY_MIB") {
            Some(mib) => parse("SATURN_GPU_MEMORY_MIB", &mib)?,
            None => memory_from_model_name(&gpu_model).unwrap_or(DEFAULT_GPU_MEMORY_MIB),
        };
        let number = |name: &str, default: Option<u64>| -> Result<u64, String> {
            match (var(name), default) {
                (Some(value), _) => parse(name, &value),
                (None, Some(default)) => Ok(default),
                (None, None) => Err(format!("{name} is not set: run this as a Saturn job, or set it by hand")),
            }
        };
        let small = |name: &str, default: u64| -> Result<u32, String> {
            u32::try_from(number(name, Some(default))?).map_err(|_| format!("{name} is too large"))
        };
        Ok(Self {
            job_id: var("SATURN_JOB_ID").unwrap_or_else(|| "local".to_owned()),
            attempt: small("SATURN_ATTEMPT", 1)?,
            agent: var("SATURN_AGENT").unwrap_or_default(),
            technique: var("SATURN_TECHNIQUE").unwrap_or_else(|| "ddp".to_owned()),
            gpus_per_host: small("SATURN_GPUS", gpus.len().max(1) as u64)?,
            gpus,
            gpu_model,
            gpu_memory_mib,
            steps: number("SATURN_STEPS", None)?,
            start_step: number("SATURN_START_STEP", Some(0))?,
            checkpoint_dir: var("SATURN_CHECKPOINT_DIR").filter(|dir| !dir.is_empty()).map(PathBuf::from),
            profile_steps: var("SATURN_PROFILE_STEPS").map(|v| parse("SATURN_PROFILE_STEPS", &v)).transpose()?,
            nnodes: small("SATURN_NNODES", 1)?,
        })
    }
}

fn parse(name: &str, value: &str) -> Result<u64, String> {
    value.trim().parse().map_err(|_| format!("{name}={value:?} is not a whole number"))
}

/// Memory from a model name ending in `-NGB` (`A100-80GB`, `SIM-24GB`), in MiB.
pub fn memory_from_model_name(model: &str) -> Option<u64> {
    let (_, suffix) = model.rsplit_once('-')?;
    let digits = suffix.strip_suffix("GB").or_else(|| suffix.strip_suffix("gb"))?;
    digits.parse::<u64>().ok().map(|gib| gib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<JobEnv, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        JobEnv::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn reads_the_contract() {
        let job = env(&[
            ("SATURN_JOB_ID", "j-7"),
            ("SATURN_ATTEMPT", "3"),
            ("SATURN_TECHNIQUE", "fsdp"),
            ("SATURN_GPUS", "2"),
            ("CUDA_VISIBLE_DEVICES", "1,3"),
            ("SATURN_GPU_MODEL", "A100-80GB"),
            ("SATURN_STEPS", "100"),
            ("SATURN_START_STEP", "40"),
            ("SATURN_NNODES", "2"),
        ])
        .unwrap();
        assert_eq!((job.attempt, job.gpus_per_host, job.gpus.clone()), (3, 2, vec![1, 3]));
        assert_eq!((job.gpu_memory_mib, job.start_step, job.nnodes), (81920, 40, 2));
        assert_eq!(job.profile_steps, None);
    }

    #[test]
    fn memory_comes_from_the_variable_then_the_model_name_then_the_default() {
        let explicit = env(&[("SATURN_STEPS", "1"), ("SATURN_GPU_MODEL", "SIM-24GB"), ("SATURN_GPU_MEMORY_MIB", "1000")]);
        assert_eq!(explicit.unwrap().gpu_memory_mib, 1000);
        assert_eq!(env(&[("SATURN_STEPS", "1"), ("SATURN_GPU_MODEL", "SIM-24GB")]).unwrap().gpu_memory_mib, 24576);
        assert_eq!(env(&[("SATURN_STEPS", "1"), ("SATURN_GPU_MODEL", "V100")]).unwrap().gpu_memory_mib, 16384);
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(env(&[]).unwrap_err().contains("SATURN_STEPS"));
        assert!(env(&[("SATURN_STEPS", "ten")]).unwrap_err().contains("SATURN_STEPS=\"ten\""));
        assert!(env(&[("SATURN_STEPS", "1"), ("CUDA_VISIBLE_DEVICES", "a")]).unwrap_err().contains("CUDA_VISIBLE_DEVICES"));
    }
}
