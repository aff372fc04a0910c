//! Which GPUs the cluster offers, per GPU model, and the shapes a job can take on them.
//!
//! The planner models a host as identical GPUs. A host that mixes models is offered as one
//! group per model, each a planner host of its own named `HOST/MODEL` (a single-model host
//! keeps its name), so every GPU can be planned while no gang spans two speeds.
//! [`HostView`] keeps the agent's name and the real GPU indices so planner indices (`0..n`)
//! translate back to the agent and its `CUDA_VISIBLE_DEVICES`.

use std::collections::BTreeMap;

use saturn_consensus::{AgentRecord, ClusterState};

/// An up host's GPUs of one model, as the scheduler uses them: a planner host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostView {
    /// Agent name.
    pub name: String,
    /// The planner's name for this group: the agent name, or `AGENT/MODEL` when the agent
    /// has GPUs of several models.
    pub group: String,
    /// The GPU model offered.
    pub model: String,
    /// Real GPU indices of that model, ascending; planner GPU `i` is `gpus[i]`.
    pub gpus: Vec<u32>,
}

/// How a job uses GPUs: `hosts` distinct hosts with `gpus_per_host` GPUs each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape {
    /// GPUs on each host.
    pub gpus_per_host: u32,
    /// Hosts in the gang.
    pub hosts: u32,
}

impl Shape {
    /// Total GPUs.
    pub fn total(self) -> u32 {
        self.gpus_per_host * self.hosts
    }

    /// One host, `gpus` GPUs.
    pub fn single(gpus: u32) -> Shape {
        Shape { gpus_per_host: gpus, hosts: 1 }
    }
}

/// The GPU groups of the up hosts: by agent name, then model.
pub fn up_hosts(state: &ClusterState) -> Vec<HostView> {
    state.agents().values().filter(|a| a.up).flat_map(host_views).collect()
}

/// One view per GPU model of the agent (none without GPUs).
fn host_views(agent: &AgentRecord) -> Vec<HostView> {
    let mut by_model: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for gpu in &agent.gpus {
        by_model.entry(gpu.model.as_str()).or_default().push(gpu.index);
    }
    let name = &agent.node.name;
    let mixed = by_model.len() > 1;
    by_model
        .into_iter()
        .map(|(model, mut gpus)| {
            gpus.sort_unstable();
            gpus.dedup();
            let group = if mixed { format!("{name}/{model}") } else { name.clone() };
            HostView { name: name.clone(), group, model: model.to_string(), gpus }
        })
        .collect()
}

/// Per GPU model, the GPU counts of its hosts, largest first.
pub fn host_sizes_by_model(hosts: &[HostView]) -> BTreeMap<String, Vec<u32>> {
    let mut sizes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for host in hosts {
        sizes.entry(host.model.clone()).or_default().push(host.gpus.len() as u32);
    }
    for list in sizes.values_mut() {
        list.sort_unstable_by(|a, b| b.cmp(a));
    }
    sizes
}

/// Every shape with a total GPU count in `min..=max` that hosts of these sizes can hold:
/// one host with `n` GPUs, or a gang of `h >= 2` hosts each giving all GPUs of the
/// `h`-th largest host (partial-host gangs are left out: they only add communication to
/// what a single host or a full-host gang does). Sorted by total, then hosts.
pub fn shapes_in_range(sizes: &[u32], min: u32, max: u32) -> Vec<Shape> {
    let Some(&largest) = sizes.first() else { return Vec::new() };
    let mut shapes: Vec<Shape> = (min.max(1)..=max.min(largest)).map(Shape::single).collect();
    for hosts in 2..=sizes.len() as u32 {
        let per_host = sizes[hosts as usize - 1];
        let shape = Shape { gpus_per_host: per_host, hosts };
        if per_host > 0 && (min..=max).contains(&shape.total()) {
            shapes.push(shape);
        }
    }
    shapes.sort_by_key(|s| (s.total(), s.hosts, s.gpus_per_host));
    shapes.dedup();
    shapes
}

/// The shapes worth measuring among `shapes`: the smallest count, powers of two, the
/// largest single host, and gangs of 2, 4, 8... hosts. The rest is filled by fitting.
pub fn ladder(shapes: &[Shape]) -> Vec<Shape> {
    let min_total = shapes.iter().map(|s| s.total()).min();
    let max_single = shapes.iter().filter(|s| s.hosts == 1).map(|s| s.total()).max();
    shapes
        .iter()
        .copied()
        .filter(|s| {
            if s.hosts > 1 {
                s.hosts.is_power_of_two()
            } else {
                Some(s.total()) == min_total || s.total().is_power_of_two() || Some(s.total()) == max_single
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use saturn_consensus::{AgentNode, Command, GpuInfo};

    use super::*;

    #[test]
    fn three_four_gpu_hosts_offer_one_to_four_gpus_and_full_host_gangs() {
        let shapes = shapes_in_range(&[4, 4, 4], 1, 12);
        let totals: Vec<(u32, u32)> = shapes.iter().map(|s| (s.gpus_per_host, s.hosts)).collect();
        assert_eq!(totals, vec![(1, 1), (2, 1), (3, 1), (4, 1), (4, 2), (4, 3)]);
        let rungs: Vec<u32> = ladder(&shapes).iter().map(|s| s.total()).collect();
        assert_eq!(rungs, vec![1, 2, 4, 8], "3 GPUs and 3-host gangs are fitted, not measured");
    }

    #[test]
    fn the_range_limits_shapes_and_the_ladder_starts_at_the_minimum() {
        let shapes = shapes_in_range(&[8, 8], 3, 8);
        assert_eq!(shapes.first(), Some(&Shape::single(3)));
        assert!(shapes.iter().all(|s| s.hosts == 1), "a 16-GPU gang exceeds gpus_max");
        let rungs: Vec<u32> = ladder(&shapes).iter().map(|s| s.total()).collect();
        assert_eq!(rungs, vec![3, 4, 8]);
    }

    #[test]
    fn a_mixed_host_offers_every_model_as_its_own_group_with_real_indices() {
        let mut state = ClusterState::default();
        let gpu = |index, model: &str| GpuInfo { index, model: model.into(), memory_mib: 1 };
        let node = AgentNode { name: "h".into(), peer_id: "p".into(), addrs: vec![] };
        let gpus = vec![gpu(0, "V100"), gpu(1, "A100"), gpu(2, "A100"), gpu(3, "V100"), gpu(5, "A100")];
        state.apply(&Command::AgentUp { node, gpus, at_ms: 0 });
        let view = |group: &str, model: &str, gpus: Vec<u32>| HostView {
            name: "h".into(),
            group: group.into(),
            model: model.into(),
            gpus,
        };
        let hosts = up_hosts(&state);
        assert_eq!(hosts, vec![view("h/A100", "A100", vec![1, 2, 5]), view("h/V100", "V100", vec![0, 3])]);
        let sizes = host_sizes_by_model(&hosts);
        assert_eq!((sizes["A100"].clone(), sizes["V100"].clone()), (vec![3], vec![2]));
    }
}
