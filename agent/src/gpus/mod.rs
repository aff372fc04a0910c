//! GPU discovery: NVML on real hosts, simulated GPUs elsewhere.
//!
//! `--gpus auto` asks the NVIDIA driver through NVML. `nvml-wrapper` opens
//! `libnvidia-ml.so.1` at run time (libloading), so the agent builds and runs on hosts with
//! no driver; there, discovery finds no GPUs and says why in one line for the log.
//! `--gpus sim:4xA100-80GB` makes up GPUs that exist only in Saturn's bookkeeping, so a
//! laptop or a test can run a whole mesh; they are marked [`HostGpu::simulated`].
//!
//! What the cluster knows of a GPU is [`saturn_consensus::GpuInfo`] ([`HostGpu::info`]);
//! a heartbeat's GPU load is `mesh::GpuLoad`, derived from the replicated state.

mod mig;
mod nvml;
mod spec;

pub use spec::{
    GpuSpec, GpuSpecError, SimulatedGroup, DEFAULT_SIMULATED_MEMORY_MIB, MAX_SIMULATED_GPUS,
};

/// One GPU (or MIG instance) this agent found and offers: the cluster's
/// [`GpuInfo`](saturn_consensus::GpuInfo) plus what only this host needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostGpu {
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

impl HostGpu {
    /// What the cluster records of this GPU.
    pub fn info(&self) -> saturn_consensus::GpuInfo {
        saturn_consensus::GpuInfo { index: self.index, model: self.model.clone(), memory_mib: self.memory_mib }
    }

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
pub fn cuda_ids(gpus: &[HostGpu]) -> std::collections::BTreeMap<u32, String> {
    gpus.iter()
        .filter(|gpu| gpu.cuda_visible_id() != gpu.index.to_string())
        .map(|gpu| (gpu.index, gpu.cuda_visible_id()))
        .collect()
}

/// The GPUs of this host, and why `auto` found none.
pub struct GpuInventory {
    gpus: Vec<HostGpu>,
    /// Why `auto` found no GPU, for the one log line the agent prints.
    none_found_reason: Option<String>,
}

impl GpuInventory {
    /// Finds the GPUs `spec` names. Never fails: `auto` without a driver gives no GPUs
    /// and a reason ([`GpuInventory::none_found_reason`]).
    pub fn discover(spec: &GpuSpec) -> Self {
        let (gpus, none_found_reason) = match spec {
            GpuSpec::None => (Vec::new(), None),
            GpuSpec::Simulated(groups) => (simulated(groups), None),
            GpuSpec::Auto => match nvml::discover() {
                Ok(found) if found.is_empty() => (Vec::new(), Some("NVML reports no GPU on this host".into())),
                Ok(found) => (found, None),
                Err(reason) => (Vec::new(), Some(reason)),
            },
        };
        GpuInventory { gpus, none_found_reason }
    }

    /// The GPUs found, by index.
    pub fn gpus(&self) -> &[HostGpu] {
        &self.gpus
    }

    /// Why `--gpus auto` found nothing (no driver, no library, no device); `None` when
    /// GPUs were found or none were asked for.
    pub fn none_found_reason(&self) -> Option<&str> {
        self.none_found_reason.as_deref()
    }
}

impl std::fmt::Debug for GpuInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuInventory")
            .field("gpus", &self.gpus)
            .field("none_found_reason", &self.none_found_reason)
            .finish()
    }
}

/// The GPUs `spec` names, without keeping anything open; see [`GpuInventory::discover`]
/// for sampling and for why `auto` found none.
pub fn discover(spec: &GpuSpec) -> Vec<HostGpu> {
    GpuInventory::discover(spec).gpus
}

/// Simulated GPUs numbered from 0 in the order the groups were written.
fn simulated(groups: &[SimulatedGroup]) -> Vec<HostGpu> {
    groups
        .iter()
        .flat_map(|group| std::iter::repeat_n(group, group.count as usize))
        .enumerate()
        .map(|(index, group)| {
            let index = index as u32;
            HostGpu {
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
