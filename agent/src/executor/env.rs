//! The exact environment a job process gets (spec: "What a job process gets").
//!
//! Pure: [`attempt_env`] turns an [`AttemptSpec`] into variables; the process layer
//! decides what is inherited (see [`is_managed`]).

use std::collections::BTreeMap;

use super::spec::AttemptSpec;

/// Variables Saturn sets besides the `SATURN_*` ones. They are removed from the
/// inherited environment so that, say, a `WORLD_SIZE` in the agent's own environment
/// never leaks into a single-host job.
const MANAGED_NON_SATURN: [&str; 5] =
    ["CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"];

/// Whether `name` is a variable the agent owns: every `SATURN_*` variable (which also
/// keeps the CLI's `SATURN_TOKEN`/`SATURN_ADDR` out of jobs) and the torchrun/CUDA ones
/// in the table. Such variables are never inherited from the agent's environment.
pub fn is_managed(name: &str) -> bool {
    name.starts_with("SATURN_") || MANAGED_NON_SATURN.contains(&name)
}

/// The variables of the spec's table for this attempt, plus the user's `env`.
///
/// Saturn's variables win over a user's variable of the same name: the GPUs and the
/// step range must be what the state machine planned.
///
/// - `SATURN_PROFILE_STEPS` is present only in trial runs.
/// - `SATURN_GPU_MEMORY_MIB` (an addition to the table) is present when the agent knows
///   the memory of one planned GPU.
/// - `CUDA_VISIBLE_DEVICES` names whole GPUs by their NVML index, with
///   `CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA numbers them as NVML does (its default is
///   fastest first), and MIG instances by their `MIG-…` UUID (the only name CUDA
///   resolves for one). A mix is possible: CUDA uses the MIG UUIDs in that case.
/// - The gang variables are present whenever the spec has a gang (the daemon always
///   gives one: a single-host job is a gang of one host, `SATURN_NNODES=1`, rank 0,
///   `MASTER_ADDR=127.0.0.1`). `WORLD_SIZE` is the total number of GPUs of the gang
///   (all hosts), as torchrun defines it for one process per GPU; `SATURN_GPUS` stays
///   this host's count.
/// - `SATURN_RENDEZVOUS_TIMEOUT_S` is the one Saturn variable a job's own `env` may set
///   (to give a slow-starting gang longer); the daemon reads it from there into the
///   gang's timeout, so the value here is the one the agent enforces too.
pub fn attempt_env(spec: &AttemptSpec) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    let gpu_list = spec
        .gpus
        .iter()
        .map(|index| spec.cuda_ids.get(index).cloned().unwrap_or_else(|| index.to_string()))
        .collect::<Vec<_>>()
        .join(",");
    let whole_gpus = spec.gpus.iter().any(|index| !spec.cuda_ids.contains_key(index));
    let mut set = |name: &str, value: String| {
        env.insert(name.to_owned(), value);
    };
    set("SATURN_JOB_ID", spec.job_id.clone());
    set("SATURN_ATTEMPT", spec.attempt.to_string());
    set("SATURN_AGENT", spec.agent_name.clone());
    set("SATURN_TECHNIQUE", spec.technique.clone());
    set("SATURN_GPUS", spec.gpus.len().to_string());
    set("CUDA_VISIBLE_DEVICES", gpu_list);
    if whole_gpus {
        set("CUDA_DEVICE_ORDER", "PCI_BUS_ID".to_string());
    }
    set("SATURN_GPU_MODEL", spec.gpu_model.clone());
    set("SATURN_STEPS", spec.steps.to_string());
    set("SATURN_START_STEP", spec.start_step.to_string());
    set("SATURN_CHECKPOINT_DIR", spec.checkpoint_dir.display().to_string());
    if let Some(memory) = spec.gpu_memory_mib {
        set("SATURN_GPU_MEMORY_MIB", memory.to_string());
    }
    if let Some(profile_steps) = spec.profile_steps {
        set("SATURN_PROFILE_STEPS", profile_steps.to_string());
    }
    if let Some(gang) = spec.gang.as_ref() {
        set("SATURN_NNODES", gang.nnodes.to_string());
        set("SATURN_NODE_RANK", gang.node_rank.to_string());
        set("SATURN_NODE_ADDR", gang.node_addr.clone());
        set("SATURN_RENDEZVOUS_TIMEOUT_S", gang.rendezvous_timeout.as_secs().to_string());
        set("MASTER_ADDR", gang.master_addr.clone());
        set("MASTER_PORT", gang.master_port.to_string());
        set("WORLD_SIZE", gang.world_size.to_string());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::spec::Gang;
    use std::path::PathBuf;
    use std::time::Duration;

    fn gang(nnodes: u32, node_rank: u32, master_addr: &str, world_size: u32) -> Gang {
        Gang {
            nnodes,
            node_rank,
            master_addr: master_addr.into(),
            master_port: 29500,
            world_size,
            node_addr: "10.0.0.7".into(),
            rendezvous_timeout: Duration::from_secs(180),
            peers: vec![],
        }
    }

    fn spec() -> AttemptSpec {
        AttemptSpec {
            job_id: "j-000017".into(),
            attempt: 2,
            agent_name: "node-b".into(),
            technique: "fsdp".into(),
            gpus: vec![0, 1, 3],
            cuda_ids: BTreeMap::new(),
            gpu_model: "A100-80GB".into(),
            gpu_memory_mib: None,
            steps: 20000,
            start_step: 5120,
            checkpoint_dir: PathBuf::from("/data/ckpt/j-000017"),
            profile_steps: None,
            gang: None,
            env: BTreeMap::from([("HF_HOME".into(), "/data/hf".into())]),
            command: vec!["python3".into(), "train.py".into()],
            workdir: PathBuf::from("/home/lab"),
        }
    }

    fn pairs(env: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn without_a_gang_the_table_and_nothing_more() {
        let env = attempt_env(&spec());
        assert_eq!(
            pairs(&env),
            vec![
                ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
                ("CUDA_VISIBLE_DEVICES", "0,1,3"),
                ("HF_HOME", "/data/hf"),
                ("SATURN_AGENT", "node-b"),
                ("SATURN_ATTEMPT", "2"),
                ("SATURN_CHECKPOINT_DIR", "/data/ckpt/j-000017"),
                ("SATURN_GPUS", "3"),
                ("SATURN_GPU_MODEL", "A100-80GB"),
                ("SATURN_JOB_ID", "j-000017"),
                ("SATURN_START_STEP", "5120"),
                ("SATURN_STEPS", "20000"),
                ("SATURN_TECHNIQUE", "fsdp"),
            ]
        );
    }

    #[test]
    fn trial_run_gets_profile_steps() {
        let mut spec = spec();
        spec.profile_steps = Some(30);
        spec.gpu_memory_mib = Some(81920);
        let env = attempt_env(&spec);
        assert_eq!(env.get("SATURN_PROFILE_STEPS").map(String::as_str), Some("30"));
        assert_eq!(env.get("SATURN_GPU_MEMORY_MIB").map(String::as_str), Some("81920"));
    }

    #[test]
    fn multi_host_gang_gets_torchrun_variables_with_world_size_counting_all_gpus() {
        let mut spec = spec();
        spec.gang = Some(gang(2, 1, "10.0.0.5", 6));
        let env = attempt_env(&spec);
        for (name, value) in [
            ("SATURN_NNODES", "2"),
            ("SATURN_NODE_RANK", "1"),
            ("SATURN_NODE_ADDR", "10.0.0.7"),
            ("SATURN_RENDEZVOUS_TIMEOUT_S", "180"),
            ("MASTER_ADDR", "10.0.0.5"),
            ("MASTER_PORT", "29500"),
            ("WORLD_SIZE", "6"),
            ("SATURN_GPUS", "3"),
        ] {
            assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
        }
    }

    #[test]
    fn a_single_host_job_is_a_gang_of_one_on_loopback() {
        let mut spec = spec();
        let mut one = gang(1, 0, "127.0.0.1", 3);
        one.node_addr = "127.0.0.1".into();
        spec.gang = Some(one);
        let env = attempt_env(&spec);
        for (name, value) in [
            ("SATURN_NNODES", "1"),
            ("SATURN_NODE_RANK", "0"),
            ("SATURN_NODE_ADDR", "127.0.0.1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
            ("WORLD_SIZE", "3"),
        ] {
            assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
        }
        assert_eq!(spec.gang.as_ref().and_then(Gang::silence_limit), None, "one host has no peer to wait for");
    }

    #[test]
    fn only_a_multi_host_gang_is_watched_for_silence() {
        let two = gang(2, 0, "10.0.0.5", 2);
        assert_eq!(two.silence_limit(), Some(Duration::from_secs(180) + crate::executor::spec::RENDEZVOUS_MARGIN));
        let off = Gang { rendezvous_timeout: Duration::ZERO, ..two };
        assert_eq!(off.silence_limit(), None);
    }

    #[test]
    fn saturn_variables_override_the_users() {
        let mut spec = spec();
        spec.env.insert("CUDA_VISIBLE_DEVICES".into(), "7".into());
        assert_eq!(attempt_env(&spec)["CUDA_VISIBLE_DEVICES"], "0,1,3");
    }

    #[test]
    fn mig_instances_are_named_by_uuid_and_whole_gpus_in_pci_order() {
        // A MIG inventory as discovery numbers it: whole GPU 0, then two instances of
        // GPU 1 numbered after all whole GPUs (2, 3).
        let inventory = [
            crate::gpus::HostGpu { index: 0, uuid: "GPU-aaaa".into(), model: "A100".into(), memory_mib: 81920, simulated: false },
            crate::gpus::HostGpu { index: 2, uuid: "MIG-1111-2222".into(), model: "A100 1g.10gb".into(), memory_mib: 9856, simulated: false },
            crate::gpus::HostGpu { index: 3, uuid: "MIG-3333-4444".into(), model: "A100 1g.10gb".into(), memory_mib: 9856, simulated: false },
        ];
        let mut spec = spec();
        spec.cuda_ids = crate::gpus::cuda_ids(&inventory);
        spec.gpus = vec![2, 3];
        let env = attempt_env(&spec);
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "MIG-1111-2222,MIG-3333-4444");
        assert!(!env.contains_key("CUDA_DEVICE_ORDER"), "MIG UUIDs need no ordering");
        assert_eq!(env["SATURN_GPUS"], "2");
        spec.gpus = vec![0];
        let env = attempt_env(&spec);
        assert_eq!((env["CUDA_VISIBLE_DEVICES"].as_str(), env["CUDA_DEVICE_ORDER"].as_str()), ("0", "PCI_BUS_ID"));
    }

    #[test]
    fn managed_names() {
        assert!(is_managed("CUDA_DEVICE_ORDER"));
        assert!(is_managed("SATURN_TOKEN"));
        assert!(is_managed("WORLD_SIZE"));
        assert!(!is_managed("HF_HOME"));
    }
}
