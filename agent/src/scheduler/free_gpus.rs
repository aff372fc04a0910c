//! Free GPUs per host, and picking a placement for a shape among them.

use std::collections::BTreeMap;

use saturn_consensus::{ClusterState, HostGpus, Placement};

use super::shapes::{HostView, Shape};

/// The free GPUs of every up host (of its offered model only), by host name.
#[derive(Clone, Debug, Default)]
pub struct FreeGpus {
    hosts: BTreeMap<String, (String, Vec<u32>)>,
}

impl FreeGpus {
    /// GPUs of `hosts` that no live attempt holds in `state`.
    pub fn of(state: &ClusterState, hosts: &[HostView]) -> FreeGpus {
        let hosts = hosts
            .iter()
            .map(|h| {
                let free = h.gpus.iter().copied().filter(|g| state.gpu_holder(&h.name, *g).is_none()).collect();
                (h.name.clone(), (h.model.clone(), free))
            })
            .collect();
        FreeGpus { hosts }
    }

    /// A placement of `shape` on free GPUs of `model`, or `None` if it does not fit now.
    /// Best fit: hosts with the fewest free GPUs that still suffice go first, so large
    /// holes stay open for large shapes.
    pub fn pick(&self, model: &str, shape: Shape) -> Option<Placement> {
        let mut candidates: Vec<(&String, &Vec<u32>)> = self
            .hosts
            .iter()
            .filter(|(_, (m, free))| m == model && free.len() >= shape.gpus_per_host as usize)
            .map(|(name, (_, free))| (name, free))
            .collect();
        if candidates.len() < shape.hosts as usize {
            return None;
        }
        candidates.sort_by_key(|(name, free)| (free.len(), name.as_str()));
        let placement = candidates
            .iter()
            .take(shape.hosts as usize)
            .map(|(name, free)| HostGpus {
                host: name.to_string(),
                gpus: free.iter().take(shape.gpus_per_host as usize).copied().collect(),
            })
            .collect();
        Some(placement)
    }

    /// Whether every GPU of `placement` is free.
    pub fn all_free(&self, placement: &Placement) -> bool {
        placement
            .iter()
            .all(|hg| self.hosts.get(&hg.host).is_some_and(|(_, free)| hg.gpus.iter().all(|g| free.contains(g))))
    }

    /// Marks the GPUs of `placement` as taken.
    pub fn take(&mut self, placement: &Placement) {
        for hg in placement {
            if let Some((_, free)) = self.hosts.get_mut(&hg.host) {
                free.retain(|g| !hg.gpus.contains(g));
            }
        }
    }

    /// Marks these `(host, gpu)` slots as taken.
    pub fn take_slots(&mut self, slots: &[saturn_consensus::GpuSlot]) {
        for (host, gpu) in slots {
            if let Some((_, free)) = self.hosts.get_mut(host) {
                free.retain(|g| g != gpu);
            }
        }
    }

    /// Free GPUs in total.
    pub fn count(&self) -> usize {
        self.hosts.values().map(|(_, free)| free.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::shapes::up_hosts;
    use crate::scheduler::test_support::cluster;

    #[test]
    fn best_fit_keeps_the_emptiest_host_for_big_shapes() {
        let state = cluster(&[("a", 4), ("b", 2)]);
        let free = FreeGpus::of(&state, &up_hosts(&state));
        let one = free.pick("SIM", Shape::single(1)).unwrap();
        assert_eq!(one, vec![HostGpus { host: "b".into(), gpus: vec![0] }]);
        assert!(free.pick("SIM", Shape::single(3)).is_some_and(|p| p[0].host == "a"));
        assert!(free.pick("SIM", Shape::single(5)).is_none());
        assert!(free.pick("OTHER", Shape::single(1)).is_none());
    }

    #[test]
    fn taken_gpus_are_no_longer_offered() {
        let state = cluster(&[("a", 4), ("b", 4)]);
        let mut free = FreeGpus::of(&state, &up_hosts(&state));
        let gang = free.pick("SIM", Shape { gpus_per_host: 4, hosts: 2 }).unwrap();
        assert!(free.all_free(&gang));
        free.take(&gang);
        assert_eq!(free.count(), 0);
        assert!(!free.all_free(&gang));
    }
}
