//! The simulated job's cost model: seconds per step for a technique on a number of
//! GPUs, or why the configuration cannot run. Pure, so the demo and benchmarks can
//! compute the times the simulated job will show.
//!
//! With `G = gpus_per_host × nnodes` GPUs, `B = base_step_ms / 1000` (one step on one
//! GPU), `f = compute_fraction` (the part of a step that parallelises), `M = model_gb`
//! and `mem` the memory of one GPU in GiB:
//!
//! ```text
//! compute = B × ((1 − f) + f / G)                      Amdahl's law
//! ring    = 2 (G − 1) / G                              ring all-reduce traffic per GPU, × buffer size
//! link    = 0.001 s/GB within one host (NVLink-class), 0.01 s/GB across hosts (network)
//!
//! ddp       needs 4M ≤ mem (weights, gradients, 2× optimizer state on every GPU)
//!           t = compute + 0.25 × ring × M × link       (gradient all-reduce, ¾ hidden behind backward)
//! fsdp      needs 4M / G + 0.1 M ≤ mem (a shard plus one gathered layer)
//!           t = compute + 0.75 × ring × M × link       (all-gather ×2 + reduce-scatter, half prefetched)
//! pipeline  needs 4M / G ≤ mem (layers split over G stages), 8 micro-batches
//!           t = compute × (8 + G − 1) / 8 + 2 (G − 1) × 0.02 M × link   (bubble + activations)
//! spilling  one GPU only, fits anything
//!           t = 1.05 B + 2 × max(0, 4M − mem) × 0.04   (what does not fit crosses PCIe both ways)
//! ```
//!
//! So ddp scales almost linearly but needs the whole model on each GPU, fsdp fits
//! bigger models at more communication, pipeline fits by splitting layers and pays a
//! bubble, spilling always fits one GPU and is slow; every technique loses more when
//! the gang spans hosts.

/// Seconds to move one GB between GPUs of one host.
const INTRA_HOST_S_PER_GB: f64 = 0.001;
/// Seconds to move one GB between hosts.
const INTER_HOST_S_PER_GB: f64 = 0.01;
/// Seconds to move one GB between host memory and a GPU (PCIe).
const PCIE_S_PER_GB: f64 = 0.04;
/// Micro-batches per pipeline step.
const PIPELINE_MICROBATCHES: f64 = 8.0;

/// The simulated model, as given on the `saturn synth-job` command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthModel {
    /// Size of the weights in GB; training state is 4× this (weights, gradients,
    /// two optimizer moments).
    pub model_gb: f64,
    /// Milliseconds per step on a single GPU that holds the whole model.
    pub base_step_ms: f64,
    /// Fraction of a step that parallelises across GPUs, in `0..=1`.
    pub compute_fraction: f64,
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Infeasible {
    /// The training state does not fit in GPU memory.
    #[error("CUDA out of memory (simulated): {technique} needs {needed_gib:.1} GiB per GPU but the GPU has {available_gib:.1} GiB")]
    OutOfMemory {
        /// The technique.
        technique: String,
        /// Memory one GPU would need.
        needed_gib: f64,
        /// Memory one GPU has.
        available_gib: f64,
    },
    /// Spilling runs on exactly one GPU.
    #[error("{technique} runs on exactly one GPU, not {gpus}")]
    SingleGpuOnly {
        /// The technique.
        technique: String,
        /// GPUs it was given.
        gpus: u32,
    },
    /// No GPUs (or no hosts) were given.
    #[error("no GPUs to run on")]
    NoGpus,
    /// A technique the simulated job does not know.
    #[error("unknown technique {0:?}: the simulated job runs ddp, fsdp, pipeline or spilling")]
    UnknownTechnique(String),
}

/// Seconds per step of `model` run as `technique` on `gpus_per_host` GPUs on each of
/// `nnodes` hosts with `gpu_memory_mib` per GPU (formula in the module docs), before
/// the job's `--time-scale` and jitter.
pub fn synthetic_step_time(
    model: &SynthModel,
    technique: &str,
    gpus_per_host: u32,
    nnodes: u32,
    gpu_memory_mib: u64,
) -> Result<f64, Infeasible> {
    if gpus_per_host == 0 || nnodes == 0 {
        return Err(Infeasible::NoGpus);
    }
    let gpus = f64::from(gpus_per_host * nnodes);
    let base = model.base_step_ms / 1000.0;
    let state = 4.0 * model.model_gb;
    let memory = gpu_memory_mib as f64 / 1024.0;
    let compute = base * ((1.0 - model.compute_fraction) + model.compute_fraction / gpus);
    let ring = 2.0 * (gpus - 1.0) / gpus;
    let link = if nnodes > 1 { INTER_HOST_S_PER_GB } else { INTRA_HOST_S_PER_GB };
    let fits = |needed: f64| {
        if needed <= memory {
            Ok(())
        } else {
            Err(Infeasible::OutOfMemory { technique: technique.to_owned(), needed_gib: needed, available_gib: memory })
        }
    };
    match technique {
        "ddp" => {
            fits(state)?;
            Ok(compute + 0.25 * ring * model.model_gb * link)
        }
        "fsdp" => {
            fits(state / gpus + 0.1 * model.model_gb)?;
            Ok(compute + 0.75 * ring * model.model_gb * link)
        }
        "pipeline" => {
            fits(state / gpus)?;
            let bubble = (PIPELINE_MICROBATCHES + gpus - 1.0) / PIPELINE_MICROBATCHES;
            let activations = 2.0 * (gpus - 1.0) * 0.02 * model.model_gb * link;
            Ok(compute * bubble + activations)
        }
        "spilling" => {
            if gpus_per_host * nnodes != 1 {
                return Err(Infeasible::SingleGpuOnly { technique: technique.to_owned(), gpus: gpus_per_host * nnodes });
            }
            Ok(1.05 * base + 2.0 * (state - memory).max(0.0) * PCIE_S_PER_GB)
        }
        other => Err(Infeasible::UnknownTechnique(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPT: SynthModel = SynthModel { model_gb: 6.0, base_step_ms: 120.0, compute_fraction: 0.9 };
    const GIB: u64 = 1024;

    #[test]
    fn ddp_needs_four_times_the_model_on_each_gpu() {
        assert!(synthetic_step_time(&GPT, "ddp", 1, 1, 24 * GIB).is_ok());
        let err = synthetic_step_time(&GPT, "ddp", 8, 1, 16 * GIB).unwrap_err();
        assert!(matches!(err, Infeasible::OutOfMemory { needed_gib, .. } if needed_gib == 24.0));
    }

    #[test]
    fn fsdp_and_pipeline_fit_by_sharding_spilling_always_fits_one_gpu() {
        assert!(synthetic_step_time(&GPT, "fsdp", 1, 1, 16 * GIB).is_err());
        assert!(synthetic_step_time(&GPT, "fsdp", 2, 1, 16 * GIB).is_ok());
        assert!(synthetic_step_time(&GPT, "pipeline", 2, 1, 16 * GIB).is_ok());
        let spilling = synthetic_step_time(&GPT, "spilling", 1, 1, 16 * GIB).unwrap();
        assert!(spilling > synthetic_step_time(&GPT, "fsdp", 2, 1, 16 * GIB).unwrap() * 2.0);
        assert!(matches!(
            synthetic_step_time(&GPT, "spilling", 2, 1, 80 * GIB),
            Err(Infeasible::SingleGpuOnly { gpus: 2, .. })
        ));
    }

    #[test]
    fn more_gpus_help_sub_linearly_and_ddp_scales_best() {
        let time = |technique, gpus| synthetic_step_time(&GPT, technique, gpus, 1, 80 * GIB).unwrap();
        for technique in ["ddp", "fsdp", "pipeline"] {
            let (one, four, eight) = (time(technique, 1), time(technique, 4), time(technique, 8));
            assert!(one > four && four > eight, "{technique}");
            assert!(one / eight < 8.0, "{technique} must scale sub-linearly");
        }
        assert!(time("ddp", 8) < time("fsdp", 8) && time("fsdp", 8) < time("pipeline", 8));
    }

    #[test]
    fn crossing_hosts_costs_more_than_staying_on_one() {
        let one_host = synthetic_step_time(&GPT, "fsdp", 8, 1, 80 * GIB).unwrap();
        let two_hosts = synthetic_step_time(&GPT, "fsdp", 4, 2, 80 * GIB).unwrap();
        assert!(two_hosts > one_host);
    }

    #[test]
    fn unknown_techniques_and_no_gpus_are_rejected() {
        assert_eq!(synthetic_step_time(&GPT, "zero3", 1, 1, GIB), Err(Infeasible::UnknownTechnique("zero3".into())));
        assert_eq!(synthetic_step_time(&GPT, "ddp", 0, 1, 80 * GIB), Err(Infeasible::NoGpus));
    }
}
