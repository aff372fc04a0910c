//! Checkpoint copies between hosts without processes: every host is a real store in a
//! temporary directory served by the real [`CheckpointServer`], the mesh is an
//! in-memory [`Peers`] that can kill a holder after some chunks, and the replicated
//! state is the fake agent's (proposals applied at once). Scenarios: a resume fetches the
//! newest copy, skips a damaged one, continues a transfer cut by a dying holder from
//! another, falls back when no holder is up, hands back when every fetch fails; a
//! replica is pulled, recorded, and old steps are deleted everywhere.

mod api_fake;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use api_fake::{spec, FakeAgent};
use async_trait::async_trait;
use saturn_agent::cluster::Cluster;
use saturn_agent::checkpoint::restore::{prepare, Prepared};
use saturn_agent::checkpoint::serve::CheckpointServer;
use saturn_agent::checkpoint::wire::{CheckpointRequest, CheckpointResponse};
use saturn_agent::checkpoint::{replicate, CheckpointSettings, Checkpoints, Peers, Store};
use saturn_consensus::{AgentNode, AttemptEvent, Command, DispatchKind, GpuInfo, HostGpus, JobId};

/// The in-memory mesh: each host's server; a host in `dead` answers nothing, and a host
/// in `dies_after` dies once it has served that many chunks.
#[derive(Default)]
struct MemPeers {
    servers: Mutex<BTreeMap<String, CheckpointServer>>,
    dead: Mutex<BTreeSet<String>>,
    dies_after: Mutex<BTreeMap<String, u64>>,
    chunks: AtomicU64,
}

#[async_trait]
impl Peers for MemPeers {
    async fn ask(&self, host: &str, request: CheckpointRequest) -> Result<CheckpointResponse, String> {
        if self.dead.lock().unwrap().contains(host) {
            return Err(format!("cannot reach {host}: connection refused"));
        }
        if matches!(request, CheckpointRequest::Chunk { .. }) {
            self.chunks.fetch_add(1, Ordering::Relaxed);
            let mut dies = self.dies_after.lock().unwrap();
            if let Some(left) = dies.get_mut(host) {
                if *left == 0 {
                    self.dead.lock().unwrap().insert(host.to_string());
                    return Err(format!("{host}: connection reset"));
                }
                *left -= 1;
            }
        }
        let server = self.servers.lock().unwrap().get(host).cloned().ok_or("unknown host")?;
        Ok(tokio::task::spawn_blocking(move || server.answer(request)).await.unwrap())
    }
}

/// Hosts a, b, c (each with a store and a checkpoint directory) over one fake state in
/// which job 1 runs on a with replicas wanted on 1 more host.
struct World {
    dir: tempfile::TempDir,
    agent: Arc<FakeAgent>,
    peers: Arc<MemPeers>,
    hosts: BTreeMap<String, Checkpoints>,
    job: JobId,
}

impl World {
    fn new(replicas: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let agent = Arc::new(FakeAgent::default());
        let peers = Arc::new(MemPeers::default());
        let mut hosts = BTreeMap::new();
        for name in ["a", "b", "c"] {
            let node = AgentNode { name: name.into(), peer_id: format!("p-{name}"), addrs: vec![] };
            let gpus = vec![GpuInfo { index: 0, model: "SIM-24GB".into(), memory_mib: 24576 }];
            apply(&agent, Command::AgentUp { node, gpus, at_ms: 1 });
            let settings = CheckpointSettings { replicas, max_bytes: 1 << 30, rate_bytes_per_s: 0 };
            let ckpt = Checkpoints::new(name.into(), Store::new(dir.path().join(name).join("store")), settings, peers.clone());
            let server = CheckpointServer { ckpt: ckpt.clone(), services: agent.clone() };
            peers.servers.lock().unwrap().insert(name.into(), server);
            hosts.insert(name.to_string(), ckpt);
        }
        apply(&agent, Command::SubmitJobs { specs: vec![spec("model")], at_ms: 2 });
        let job = JobId::from_seq(1);
        let placement = vec![HostGpus { host: "a".into(), gpus: vec![0] }];
        apply(&agent, Command::Dispatch { job: job.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms: 3 });
        World { dir, agent, peers, hosts, job }
    }

    fn live_dir(&self, host: &str) -> PathBuf {
        self.dir.path().join(host).join("live")
    }

    /// The job on `a` writes a 3 MiB checkpoint for `step` and the executor takes it.
    async fn checkpoint(&self, step: u64) -> String {
        let live = self.live_dir("a");
        std::fs::create_dir_all(live.join("shards")).unwrap();
        std::fs::write(live.join("shards/model.bin"), model_bytes(step)).unwrap();
        std::fs::write(live.join("step.txt"), step.to_string()).unwrap();
        let event = saturn_agent::checkpoint::take::take(&self.hosts["a"], &self.job.0, step, live).await;
        let AttemptEvent::CheckpointStored { digest, .. } = &event else { panic!("refused: {event:?}") };
        let digest = digest.clone();
        apply(&self.agent, Command::JobEvent { job: self.job.clone(), attempt: 1, event, at_ms: 10 + step });
        digest
    }

    async fn replicate_round(&self) {
        for ckpt in self.hosts.values() {
            replicate::round(ckpt, self.agent.as_ref()).await;
        }
    }

    fn holders(&self, step: u64) -> Vec<String> {
        let state = self.agent.state();
        let record = state.job(&self.job).unwrap();
        record.checkpoints.get(&step).map(|c| c.holders.iter().cloned().collect()).unwrap_or_default()
    }

    /// `a` is lost: its attempt ends and the job waits for a new one.
    fn lose(&self, host: &str) {
        apply(&self.agent, Command::AgentDown { name: host.into(), at_ms: 100 });
        self.peers.dead.lock().unwrap().insert(host.into());
    }

    fn notes(&self) -> Vec<String> {
        self.agent.state().job(&self.job).unwrap().notes.iter().map(|n| n.text.clone()).collect()
    }
}

fn apply(agent: &FakeAgent, command: Command) {
    let _ = futures::executor::block_on(agent.cluster.propose(command));
}

fn model_bytes(step: u64) -> Vec<u8> {
    (0..3 * 1024 * 1024u64).map(|i| (i.wrapping_mul(31).wrapping_add(step) % 251) as u8).collect()
}

fn assert_restored(live: &Path, step: u64) {
    assert_eq!(std::fs::read(live.join("shards/model.bin")).unwrap(), model_bytes(step), "the model of step {step}");
    assert_eq!(std::fs::read_to_string(live.join("step.txt")).unwrap(), step.to_string());
}

#[tokio::test]
async fn a_replica_is_pulled_verified_recorded_and_old_steps_go_everywhere() {
    let world = World::new(1);
    world.checkpoint(10).await;
    world.replicate_round().await;
    let holders = world.holders(10);
    assert_eq!(holders.len(), 2, "the writer's copy and one replica: {holders:?}");
    assert!(holders.contains(&"a".to_string()));
    assert_eq!(world.agent.state().job(&world.job).unwrap().bytes_replicated, 3 * 1024 * 1024 + 2);
    for step in [20, 30] {
        world.checkpoint(step).await;
        world.replicate_round().await;
    }
    let steps: Vec<u64> = world.agent.state().job(&world.job).unwrap().checkpoints.keys().copied().collect();
    assert_eq!(steps, [20, 30], "the last two steps are kept once the newest is replicated");
    // Copies younger than a minute are kept by the sweep (their record may be in flight);
    // what the state keeps is what every host's sweep keeps.
    let keep_b = saturn_agent::checkpoint::plan::keep_set(&world.agent.state(), "b", false);
    assert!(keep_b.iter().all(|(_, step)| *step >= 20), "{keep_b:?}");
}

#[tokio::test]
async fn a_resume_elsewhere_fetches_the_newest_copy_and_announces_exactly_it() {
    let world = World::new(1);
    world.checkpoint(10).await;
    world.replicate_round().await;
    let replica = world.holders(10).into_iter().find(|h| h != "a").unwrap();
    let other = ["b", "c"].into_iter().find(|h| *h != replica).unwrap();
    world.lose("a");
    let live = world.live_dir(other);
    let prepared = prepare(&world.hosts[other], world.agent.as_ref(), &world.job, &live).await;
    assert_eq!(prepared, Prepared::Ready { step: 10, note: None });
    assert_restored(&live, 10);
    assert!(world.holders(10).contains(&other.to_string()), "the fetched copy is recorded too");
}

#[tokio::test]
async fn a_damaged_copy_is_detected_and_another_holder_used() {
    let world = World::new(2);
    world.checkpoint(10).await;
    world.replicate_round().await;
    assert_eq!(world.holders(10).len(), 3);
    // Flip one byte of b's copy on disk.
    let copy = Store::data_of(&world.hosts["b"].store.step_dir(&world.job.0, 10)).join("shards/model.bin");
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[1_000_000] ^= 0x40;
    std::fs::write(&copy, bytes).unwrap();
    world.lose("c");
    // b resumes the job: its own copy fails verification, a's is fetched.
    let live = world.live_dir("b");
    let prepared = prepare(&world.hosts["b"], world.agent.as_ref(), &world.job, &live).await;
    assert_eq!(prepared, Prepared::Ready { step: 10, note: None });
    assert_restored(&live, 10);
    assert!(world.notes().iter().any(|n| n.contains("on b") && n.contains("verification")), "{:?}", world.notes());
}

#[tokio::test]
async fn a_holder_dying_mid_transfer_is_replaced_and_the_transfer_continues() {
    let world = World::new(2);
    world.checkpoint(10).await;
    world.replicate_round().await;
    world.lose("a");
    // b lost its own copy (its record is stale), so it must fetch; c will die mid-way.
    std::fs::remove_dir_all(world.hosts["b"].store.step_dir(&world.job.0, 10)).unwrap();
    world.peers.dies_after.lock().unwrap().insert("c".into(), 1);
    world.peers.chunks.store(0, Ordering::Relaxed);
    let live = world.live_dir("b");
    // b's own record is stale (its copy is gone): it drops it and fetches from c, which
    // dies after one chunk; nobody else holds step 10, so the attempt is handed back.
    let prepared = prepare(&world.hosts["b"], world.agent.as_ref(), &world.job, &live).await;
    assert!(matches!(&prepared, Prepared::HandBack(why) if why.contains("connection reset")), "{prepared:?}");
    // c comes back; the next try continues the partial copy instead of starting over.
    world.peers.dead.lock().unwrap().remove("c");
    world.peers.dies_after.lock().unwrap().clear();
    let before = world.peers.chunks.load(Ordering::Relaxed);
    let prepared = prepare(&world.hosts["b"], world.agent.as_ref(), &world.job, &live).await;
    assert_eq!(prepared, Prepared::Ready { step: 10, note: None });
    assert_restored(&live, 10);
    let asked = world.peers.chunks.load(Ordering::Relaxed) - before;
    assert_eq!(asked, 3, "4 chunks in all (3 MiB and 2 bytes): the one received before c died is not asked again");
}

#[tokio::test]
async fn without_a_reachable_copy_the_job_starts_from_step_zero_and_says_why() {
    let world = World::new(0);
    world.checkpoint(10).await;
    world.replicate_round().await;
    assert_eq!(world.holders(10), ["a"], "no replicas with --checkpoint-replicas 0");
    world.lose("a");
    let live = world.live_dir("b");
    let prepared = prepare(&world.hosts["b"], world.agent.as_ref(), &world.job, &live).await;
    let Prepared::Ready { step: 0, note: Some(note) } = prepared else { panic!("{prepared:?}") };
    assert!(note.contains("step 10 is held only by a (down)"), "{note}");
    assert_eq!(std::fs::read_dir(&live).unwrap().count(), 0, "a fresh start gets an empty directory");
}

#[tokio::test]
async fn the_newest_reachable_step_is_used_when_the_newest_is_not() {
    let world = World::new(1);
    world.checkpoint(10).await;
    world.replicate_round().await;
    // Step 20 is written but a is lost before anyone replicates it.
    world.checkpoint(20).await;
    world.lose("a");
    let holder = world.holders(10).into_iter().find(|h| h != "a").unwrap();
    let live = world.live_dir(&holder);
    let prepared = prepare(&world.hosts[&holder], world.agent.as_ref(), &world.job, &live).await;
    let Prepared::Ready { step: 10, note: Some(note) } = prepared else { panic!("{prepared:?}") };
    assert!(note.contains("instead of 20"), "{note}");
    assert_restored(&live, 10);
}

#[tokio::test]
async fn bad_checkpoint_directories_are_refused_with_a_reason() {
    let world = World::new(1);
    let live = world.live_dir("a");
    let event = saturn_agent::checkpoint::take::take(&world.hosts["a"], &world.job.0, 5, live.clone()).await;
    assert!(matches!(&event, AttemptEvent::CheckpointRefused { reason, .. } if reason.contains("missing or empty")), "{event:?}");
    std::fs::create_dir_all(&live).unwrap();
    let outside = world.dir.path().join("outside.txt");
    std::fs::write(&outside, b"not the job's").unwrap();
    std::os::unix::fs::symlink(&outside, live.join("escape")).unwrap();
    let event = saturn_agent::checkpoint::take::take(&world.hosts["a"], &world.job.0, 5, live).await;
    assert!(matches!(&event, AttemptEvent::CheckpointRefused { reason, .. } if reason.contains("points out of the directory")), "{event:?}");
    apply(&world.agent, Command::JobEvent { job: world.job.clone(), attempt: 1, event, at_ms: 50 });
    let state = world.agent.state();
    let record = state.job(&world.job).unwrap();
    assert_eq!(record.last_checkpoint, 0, "a refused checkpoint is not the job's");
    assert!(record.notes.iter().any(|n| n.text.contains("checkpoint step 5 refused")));
}
