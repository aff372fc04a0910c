//! GPU discovery and load sampling: NVML on real hosts, simulated GPUs elsewhere.
//!
//! `--gpus auto` asks the NVIDIA driver through NVML. `nvml-wrapper` opens
//! `libnvidia-ml.so.1` at run time (libloading), so the agent builds and runs on hosts with
//! no driver; there, discovery finds no GPUs and says why in one line for the log.
//! `--gpus sim:4xA100-80GB` makes up GPUs that exist only in Saturn's bookkeeping, so a
//! laptop or a test can run a whole mesh; they are marked [`GpuInfo::simulated`].
//!
//! A [`GpuInventory`] keeps the NVML handle open for the agent's lifetime: heartbeats
//! sample load every few hundred milliseconds, and initialising NVML costs far more.

mod mig;
mod nvml;
mod spec;

use std::collections::BTreeSet;

pub use spec::{
    GpuSpec, GpuSpecError, SimulatedGroup, DEFAULT_SIMULATED_MEMORY_MIB, MAX_SIMULATED_GPUS,
};

/// One GPU (or MIG instance) this agent offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    /// Saturn's index of the GPU on this host. For a whole NVIDIA GPU it is the NVML
    /// index; MIG instances are numbered after all whole GPUs, in discovery order.
    pub index: u32,
    /// `GPU-…` or `MIG-…` from the driver; `SIM-<index>` for a simulated GPU (unique on
    /// its host only).
    pub uuid: String,
    /// Model name, e.g. `NVIDIA A100-SXM4-80GB`, or the simulated model as written.
    pub model: String,
    /// Total memory.
    pub memory_mib: u64,
    /// True for a simulated GPU: no device backs it, jobs just see its index.
    pub simulated: bool,
}

impl GpuInfo {
    /// What `CUDA_VISIBLE_DEVICES` must hold to give a process this GPU: CUDA addresses a
    /// MIG instance only by its UUID; a whole GPU by its index (the executor sets
    /// `CUDA_DEVICE_ORDER=PCI_BUS_ID` with it, or CUDA would number GPUs fastest-first,
    /// not as NVML does; see `executor::env`).
    pub fn cuda_visible_id(&self) -> String {
        if self.uuid.starts_with("MIG-") {
            self.uuid.clone()
        } else {
            self.index.to_string()
        }
    }
}

/// The `CUDA_VISIBLE_DEVICES` names of the GPUs that are not addressed by their index
/// (MIG instances), by Saturn index: what [`crate::executor::spec::AttemptSpec::cuda_ids`] needs.
pub fn cuda_ids(gpus: &[GpuInfo]) -> std::collections::BTreeMap<u32, String> {
    gpus.iter()
        .filter(|gpu| gpu.cuda_visible_id() != gpu.index.to_string())
        .map(|gpu| (gpu.index, gpu.cuda_visible_id()))
        .collect()
}

/// A GPU's load at one instant, for heartbeats and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuLoad {
    /// [`GpuInfo::index`] of the GPU.
    pub index: u32,
    /// Share of the last sample period a kernel ran. For a simulated GPU: 100 while a
    /// job holds it, else 0. Where NVML cannot tell (MIG instances), 100 if any
    /// process uses the instance, else 0.
    pub utilization_pct: u32,
    /// Memory in use (0 for an idle simulated GPU, all of it for a busy one).
    pub memory_used_mib: u64,
    /// Process ids using the GPU (always empty for simulated GPUs).
    pub processes: Vec<u32>,
}

/// The GPUs of this host, and what is needed to sample their load.
pub struct GpuInventory {
    gpus: Vec<GpuInfo>,
    /// Open while the agent runs; `None` for `none`, `sim:` and hosts without NVML.
    nvml: Option<nvml::NvmlGpus>,
    /// Why `auto` found no GPU, for the one log line the agent prints.
    none_found_reason: Option<String>,
    /// Simulated GPUs a job currently holds, as told by the executor.
    simulated_busy: BTreeSet<u32>,
}

impl GpuInventory {
    /// Finds the GPUs `spec` names. Never fails: `auto` without a driver gives no GPUs
    /// and a reason ([`GpuInventory::none_found_reason`]).
    pub fn discover(spec: &GpuSpec) -> Self {
        let (gpus, nvml, none_found_reason) = match spec {
            GpuSpec::None => (Vec::new(), None, None),
            GpuSpec::Simulated(groups) => (simulated(groups), None, None),
            GpuSpec::Auto => match nvml::NvmlGpus::open() {
                Ok(found) if found.gpus().is_empty() => (
                    Vec::new(),
                    None,
                    Some("NVML reports no GPU on this host".into()),
                ),
                Ok(found) => (found.gpus().to_vec(), Some(found), None),
                Err(reason) => (Vec::new(), None, Some(reason)),
            },
        };
        GpuInventory {
            gpus,
            nvml,
            none_found_reason,
            simulated_busy: BTreeSet::new(),
        }
    }

    /// The GPUs found, by index.
    pub fn gpus(&self) -> &[GpuInfo] {
        &self.gpus
    }

    /// Why `--gpus auto` found nothing (no driver, no library, no device); `None` when
    /// GPUs were found or none were asked for.
    pub fn none_found_reason(&self) -> Option<&str> {
        self.none_found_reason.as_deref()
    }

    /// Tells the inventory whether a job holds a simulated GPU, which is all the load a
    /// simulated GPU has. Ignored for real GPUs, whose load NVML measures.
    pub fn set_simulated_busy(&mut self, index: u32, busy: bool) {
        if busy {
            self.simulated_busy.insert(index);
        } else {
            self.simulated_busy.remove(&index);
        }
    }

    /// The load of every GPU now. A GPU NVML cannot read this time reports zeros rather
    /// than failing the heartbeat it feeds.
    pub fn sample_load(&mut self) -> Vec<GpuLoad> {
        self.gpus
            .iter()
            .map(|gpu| match (&self.nvml, gpu.simulated) {
                (Some(nvml), false) => nvml.load(gpu),
                _ => {
                    let busy = self.simulated_busy.contains(&gpu.index);
                    GpuLoad {
                        index: gpu.index,
                        utilization_pct: if busy { 100 } else { 0 },
                        memory_used_mib: if busy { gpu.memory_mib } else { 0 },
                        processes: Vec::new(),
                    }
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for GpuInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuInventory")
            .field("gpus", &self.gpus)
            .field("nvml", &self.nvml.is_some())
            .field("none_found_reason", &self.none_found_reason)
            .finish()
    }
}

/// The GPUs `spec` names, without keeping anything open; see [`GpuInventory::discover`]
/// for sampling and for why `auto` found none.
pub fn discover(spec: &GpuSpec) -> Vec<GpuInfo> {
    GpuInventory::discover(spec).gpus
}

/// Simulated GPUs numbered from 0 in the order the groups were written.
fn simulated(groups: &[SimulatedGroup]) -> Vec<GpuInfo> {
    groups
        .iter()
        .flat_map(|group| std::iter::repeat_n(group, group.count as usize))
        .enumerate()
        .map(|(index, group)| {
            let index = index as u32;
            GpuInfo {
                index,
                uuid: format!("SIM-{index}"),
                model: group.model.clone(),
                memory_mib: group.memory_mib,
                simulated: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_gpus_are_numbered_in_order_and_marked_simulated() {
        let spec: GpuSpec = "sim:2xA100-80GB,1xT4".parse().expect("valid spec");
        let gpus = discover(&spec);
        let summary: Vec<(u32, &str, u64, bool)> = gpus
            .iter()
            .map(|g| (g.index, g.model.as_str(), g.memory_mib, g.simulated))
            .collect();
        assert_eq!(
            summary,
            [
                (0, "A100-80GB", 81920, true),
                (1, "A100-80GB", 81920, true),
                (2, "T4", 16384, true)
            ]
        );
        assert_eq!(gpus[2].cuda_visible_id(), "2");
    }

    #[test]
    fn simulated_load_follows_what_the_executor_says() {
        let mut inventory = GpuInventory::discover(&"sim:2xSIM-24GB".parse().expect("valid spec"));
        inventory.set_simulated_busy(1, true);
        let load = inventory.sample_load();
        assert_eq!((load[0].utilization_pct, load[0].memory_used_mib), (0, 0));
        assert_eq!(
            (load[1].utilization_pct, load[1].memory_used_mib),
            (100, 24 * 1024)
        );
        inventory.set_simulated_busy(1, false);
        assert_eq!(inventory.sample_load()[1].utilization_pct, 0);
    }

    #[test]
    fn the_inventory_can_move_into_a_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<GpuInventory>();
    }

    #[test]
    fn none_means_no_gpus_and_no_complaint() {
        let inventory = GpuInventory::discover(&GpuSpec::None);
        assert!(inventory.gpus().is_empty());
        assert_eq!(inventory.none_found_reason(), None);
    }
}
