//! Free GPUs per host, and picking a placement for a shape among them.

use std::collections::BTreeMap;

use saturn_consensus::{ClusterState, HostGpus, Placement};

use super::shapes::{HostView, Shape};

/// The free GPUs of every up host's GPU groups (one per model), by group.
#[derive(Clone, Debug, Default)]
pub struct FreeGpus {
    /// Group name → (agent name, model, free GPUs).
    hosts: BTreeMap<String, (String, String, Vec<u32>)>,
}

impl FreeGpus {
    /// GPUs of `hosts` that no live attempt holds in `state`.
    pub fn of(state: &ClusterState, hosts: &[HostView]) -> FreeGpus {
        let hosts = hosts
            .iter()
            .map(|h| {
                let free = h.gpus.iter().copied().filter(|g| state.gpu_holder(&h.name, *g).is_none()).collect();
                (h.group.clone(), (h.name.clone(), h.model.clone(), free))
            })
            .collect();
        FreeGpus { hosts }
    }

    /// The free GPUs of agent `host`, over all its groups.
    fn of_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a u32> + 'a {
        self.hosts.values().filter(move |(name, _, _)| name == host).flat_map(|(_, _, free)| free)
    }

    /// Marks GPUs of agent `host` as taken where `taken` says so.
    fn retain(&mut self, host: &str, taken: impl Fn(&u32) -> bool) {
        for (_, _, free) in self.hosts.values_mut().filter(|(name, _, _)| name == host) {
            free.retain(|g| !taken(g));
        }
    }

    /// A placement of `shape` on free GPUs of `model`, or `None` if it does not fit now.
    /// Best fit: hosts with the fewest free GPUs that still suffice go first, so large
    /// holes stay open for large shapes.
    pub fn pick(&self, model: &str, shape: Shape) -> Option<Placement> {
        // Groups of one model are on distinct agents, so a gang gets distinct hosts.
        let mut candidates: Vec<(&String, &Vec<u32>)> = self
            .hosts
            .values()
            .filter(|(_, m, free)| m == model && free.len() >= shape.gpus_per_host as usize)
            .map(|(name, _, free)| (name, free))
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
        placement.iter().all(|hg| hg.gpus.iter().all(|g| self.of_host(&hg.host).any(|f| f == g)))
    }

    /// Marks the GPUs of `placement` as taken.
    pub fn take(&mut self, placement: &Placement) {
        for hg in placement {
            self.retain(&hg.host, |g| hg.gpus.contains(g));
        }
    }

    /// Marks these `(host, gpu)` slots as taken.
    pub fn take_slots(&mut self, slots: &[saturn_consensus::GpuSlot]) {
        for (host, gpu) in slots {
            self.retain(host, |g| g == gpu);
        }
    }

    /// Free GPUs in total.
    pub fn count(&self) -> usize {
        self.hosts.values().map(|(_, _, free)| free.len()).sum()
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
