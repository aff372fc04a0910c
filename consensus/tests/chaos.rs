//! Randomized faults against a real 3-member cluster: random commands proposed through
//! random members while members crash and restart, links are cut and messages dropped.
//! Throughout, every replica's state keeps the safety rules; at the end all replicas are
//! identical. Seeded: a failing seed is printed and can be replayed with
//! `SATURN_CHAOS_SEED=<seed>`; `SATURN_CHAOS_RUNS=<n>` runs more seeds.

mod fixtures;
mod harness;

use std::time::Duration;

use fixtures::check_invariants;
use fixtures::random::{command, prelude, stamped};
use harness::{init_tracing, Cluster};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saturn_consensus::NodeId;

const STEPS: usize = 40;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

async fn run(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut commands = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[seed as u8; 32]));
    let mut cluster = Cluster::start_with(3, seed, |config| config.propose_timeout = Duration::from_millis(500)).await;
    cluster.initialize_all().await;
    let ids = cluster.ids.clone();
    let leader = cluster.wait_leader(&ids).await;
    for command in prelude() {
        cluster.node(leader).propose(command).await.expect("prelude commits");
    }
    cluster.router.set_drop_probability(0.02);

    let mut down: Option<NodeId> = None;
    let mut cut = false;
    let (mut committed, mut failed) = (0, 0);
    for step in 0..STEPS {
        match rng.gen_range(0..10) {
            0 if down.is_none() && !cut => {
                let victim = ids[rng.gen_range(0..ids.len())];
                cluster.kill(victim);
                down = Some(victim);
            }
            1 => {
                if let Some(id) = down.take() {
                    cluster.restart(id).await;
                }
            }
            2 if down.is_none() && !cut => {
                let (a, b) = (ids[rng.gen_range(0..3)], ids[rng.gen_range(0..3)]);
                if rng.gen_bool(0.5) { cluster.router.cut(a, b) } else { cluster.router.cut_one_way(a, b) }
                cut = true;
            }
            3 => {
                cluster.router.heal_all();
                cluster.router.set_drop_probability(0.02);
                cut = false;
            }
            _ => {
                let live: Vec<NodeId> = cluster.nodes.keys().copied().collect();
                let via = live[rng.gen_range(0..live.len())];
                let command = command().new_tree(&mut commands).expect("a random command").current();
                match cluster.node(via).propose(stamped(command, 100 + step as u64)).await {
                    Ok(_) => committed += 1,
                    Err(_) => failed += 1,
                }
            }
        }
        for node in cluster.nodes.values() {
            if let Err(violation) = check_invariants(&node.state()) {
                panic!("seed {seed}, step {step}, node {}: {violation}", node.id());
            }
        }
    }

    cluster.router.heal_all();
    if let Some(id) = down {
        cluster.restart(id).await;
    }
    cluster.wait_leader(&ids).await;
    let states = cluster.converge().await;
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]), "seed {seed}: replicas differ");
    assert_eq!(cluster.router.codec_failures(), 0);
    eprintln!("seed {seed}: {committed} committed, {failed} failed");
    assert!(committed > STEPS / 3, "seed {seed}: only {committed} of the proposals committed ({failed} failed)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_keep_replicas_safe_and_identical() {
    init_tracing();
    let seeds: Vec<u64> = match env_u64("SATURN_CHAOS_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("SATURN_CHAOS_RUNS").unwrap_or(6)).collect(),
    };
    for seed in seeds {
        let started = std::time::Instant::now();
        run(seed).await;
        eprintln!("chaos seed {seed}: {:?}", started.elapsed());
    }
}
