//! Random instances covering everything the format allows: several GPU models, hosts
//! without a model, gang options, release times and running jobs (with switch cost).

#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saturn_planner::{Host, Instance, Job, JobOption, PlacementEntry, Running};

const TECHNIQUES: [&str; 3] = ["ddp", "fsdp", "pipeline"];

/// A random valid instance; the same seed gives the same instance.
pub fn random_instance(seed: u64) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let models = ["A100", "V100", "T4"];
    let model_count = rng.gen_range(1..=3);
    let hosts: Vec<Host> = (0..rng.gen_range(1..=5))
        .map(|i| Host {
            name: format!("h{i}"),
            gpus: [1, 2, 4, 8][rng.gen_range(0..4)],
            gpu_model: rng.gen_bool(0.85).then(|| models[rng.gen_range(0..model_count)].to_string()),
        })
        .collect();
    // GPUs held by running jobs, so running placements never overlap.
    let mut busy: Vec<Vec<bool>> = hosts.iter().map(|h| vec![false; h.gpus as usize]).collect();
    let jobs = (0..rng.gen_range(0..=12))
        .map(|j| {
            let options: Vec<JobOption> = (0..rng.gen_range(1..=4)).map(|_| random_option(&mut rng, &hosts)).collect();
            let steps = rng.gen_range(1..5_000);
            let running = if rng.gen_bool(0.3) { try_running(&mut rng, &hosts, &options, &mut busy) } else { None };
            let release_s = if running.is_none() && rng.gen_bool(0.3) { rng.gen_range(0.0..3_000.0) } else { 0.0 };
            Job { id: format!("job-{j}"), steps, options, running, release_s }
        })
        .collect();
    Instance { hosts, jobs, switch_cost_s: if rng.gen_bool(0.5) { rng.gen_range(0.0..600.0) } else { 0.0 } }
}

/// An option that fits: built around a random host, sometimes as a gang.
fn random_option(rng: &mut ChaCha8Rng, hosts: &[Host]) -> JobOption {
    let anchor = &hosts[rng.gen_range(0..hosts.len())];
    let gpu_model = if rng.gen_bool(0.7) { anchor.gpu_model.clone() } else { None };
    let gpus_per_host = rng.gen_range(1..=anchor.gpus);
    let fitting = hosts
        .iter()
        .filter(|h| h.gpus >= gpus_per_host && (gpu_model.is_none() || h.gpu_model == gpu_model))
        .count() as u32;
    JobOption {
        technique: TECHNIQUES[rng.gen_range(0..3)].to_string(),
        gpu_model,
        gpus_per_host,
        hosts: rng.gen_range(1..=fitting.min(3)),
        step_time_s: rng.gen_range(0.01..2.0),
    }
}

/// A placement for one of the options on GPUs nobody else runs on, if there is one.
fn try_running(rng: &mut ChaCha8Rng, hosts: &[Host], options: &[JobOption], busy: &mut [Vec<bool>]) -> Option<Running> {
    let option = &options[rng.gen_range(0..options.len())];
    let mut placement = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        if placement.len() == option.hosts as usize {
            break;
        }
        let model_ok = option.gpu_model.is_none() || option.gpu_model == host.gpu_model;
        let free: Vec<u32> = (0..host.gpus).filter(|&g| !busy[h][g as usize]).collect();
        if model_ok && free.len() >= option.gpus_per_host as usize {
            let gpus: Vec<u32> = free[..option.gpus_per_host as usize].to_vec();
            placement.push((h, PlacementEntry { host: host.name.clone(), gpus }));
        }
    }
    if placement.len() < option.hosts as usize {
        return None;
    }
    for (h, entry) in &placement {
        for &g in &entry.gpus {
            busy[*h][g as usize] = true;
        }
    }
    Some(Running { technique: option.technique.clone(), placement: placement.into_iter().map(|p| p.1).collect() })
}
