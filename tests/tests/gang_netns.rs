//! Multi-host gangs of real PyTorch processes between agents in separate network
//! namespaces (see `saturn_tests::netns`), each agent started with the default
//! `--listen /ip4/0.0.0.0/tcp/7946`, as a user would, and one simulated GPU each, so a
//! 2-GPU job can only run as a 2-host gang:
//!
//! - the gang meets (gloo over the bridge, `torch.distributed` DDP) and trains to
//!   completion with no interface or address hints from the user: `MASTER_ADDR` and
//!   `SATURN_NODE_ADDR` are the agents' bridge addresses, never loopback or wildcard;
//! - a gang whose peer never comes up fails after the rendezvous timeout, with an error
//!   that says so and names the address it waited for, and frees both hosts' GPUs.
//!
//! Needs root, iproute2 and a Python with torch and saturn_train (`$SATURN_PYTHON`, else
//! `~/.cache/saturn-venv/bin/python`); without them a test does not run, and under
//! `CI=true` it fails.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use saturn_agent::views::JobView;
use saturn_tests::netns::{self, Listen, NetnsCluster};
use saturn_tests::torch::{self, attempt_log, banner_field};
use saturn_tests::{eventually, Setup};

/// Formation of the two agents.
const FORM: Duration = Duration::from_secs(60);
/// A submission the cluster should accept.
const SUBMIT: Duration = Duration::from_secs(20);
/// A tiny gang job, from submission to its end (two torch imports on a loaded 2-core machine).
const RUN: Duration = Duration::from_secs(240);
/// `--rendezvous-timeout-s` of the test whose peer never comes up.
const RENDEZVOUS_TIMEOUT_S: u64 = 8;

/// Python with torch, and agents in namespaces listening on the default address; or
/// `None` after printing why this machine cannot (a failure under `CI=true`).
fn start(test: &str, extra: &[&str]) -> Option<(NetnsCluster, std::path::PathBuf)> {
    if let Some(why) = netns::unavailable() {
        saturn_tests::missing_prerequisite(&format!("{test} needs root and iproute2 (`ip`): {why}"));
        return None;
    }
    let python = torch::python_or_skip(test)?;
    let mut setup = Setup::new(2);
    setup.gpus = "sim:1xSIM-24GB".into();
    setup.extra_args = ["--heartbeat-ms", "200", "--grace-period-s", "10", "--kill-grace-s", "5"]
        .iter()
        .chain(extra)
        .map(ToString::to_string)
        .collect();
    let cluster = NetnsCluster::start_with(&setup, Listen::Default).expect("agents start in their namespaces");
    Some((cluster, python))
}

/// A 2-GPU DDP job with a known step time (no trial runs): on two 1-GPU hosts, a gang.
fn gang_job(name: &str, command: &[String], steps: u64) -> String {
    let command: Vec<String> = command.iter().map(|arg| format!("{arg:?}")).collect();
    format!(
        r#"
[[job]]
name = "{name}"
command = [{command}]
steps = {steps}
techniques = ["ddp"]
gpus = [2, 2]
max_restarts = 0

[job.profile]
ddp = {{ 2 = 0.2 }}
"#,
        command = command.join(", ")
    )
}

/// The example GPT (tiny) through saturn_train, on CPU/gloo.
fn script_command(python: &Path) -> Vec<String> {
    let script = torch::gpt_script().display().to_string();
    [python.display().to_string(), script].into_iter().chain(["--size", "tiny", "--bs", "8", "--device", "cpu"].map(String::from)).collect()
}

async fn formed(cluster: &NetnsCluster) -> Result<()> {
    let status = cluster
        .wait_status(0, "2 healthy agents and a leader", FORM, |s| {
            s.leader.is_some() && s.agents.iter().filter(|a| a.healthy && !a.gpus.is_empty()).count() == 2
        })
        .await?;
    for agent in &status.agents {
        eprintln!("{} announces {:?}", agent.name, agent.addrs);
    }
    Ok(())
}

async fn submit_one(cluster: &NetnsCluster, toml: &str) -> Result<String> {
    let submitted = cluster.submit(0, toml, SUBMIT).await?;
    submitted.jobs.first().map(|job| job.id.clone()).context("the submission created no job")
}

async fn wait_ended(cluster: &NetnsCluster, id: &str) -> Result<JobView> {
    eventually(&format!("job {id} to end"), RUN, || async {
        let job = cluster.jobs(0).await?.into_iter().find(|j| j.id == id);
        Ok(job.filter(|j| matches!(j.state.as_str(), "completed" | "failed" | "cancelled")))
    })
    .await
}

async fn run(cluster: &NetnsCluster, scenario: impl std::future::Future<Output = Result<()>>) {
    if let Err(err) = scenario.await {
        panic!("{err:#}\n{}", cluster.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_host_gang_on_default_listen_addresses_trains_to_completion() {
    let Some((cluster, python)) = start("a_two_host_gang_on_default_listen_addresses_trains_to_completion", &[]) else {
        return;
    };
    run(&cluster, async {
        formed(&cluster).await?;
        let id = submit_one(&cluster, &gang_job("gang", &script_command(&python), 40)).await?;
        let job = wait_ended(&cluster, &id).await?;
        ensure!(job.state == "completed" && job.restarts == 0, "the gang did not complete first time: {job:?}");
        ensure!(job.technique.as_deref() == Some("ddp"), "technique {:?}", job.technique);

        // One log per host, for the one attempt: rank 0 on one agent, rank 1 on the other.
        let mut ranks = Vec::new();
        for agent in &cluster.agents {
            let log = attempt_log(&agent.data_dir, &id, job.attempt)
                .with_context(|| format!("{} has no log of {id} attempt {}", agent.name, job.attempt))?;
            let field = |key: &str| banner_field(&log, key).map(str::to_owned);
            eprintln!("{}: {}", agent.name, log.lines().next().unwrap_or_default());
            ensure!(log.contains("SATURN step=40"), "{} did not train to step 40:\n{log}", agent.name);
            ensure!(field("nnodes").as_deref() == Some("2") && field("world_size").as_deref() == Some("2"), "{log}");
            let own = agent.ip.to_string();
            ensure!(field("node_addr") == Some(own.clone()), "{}: SATURN_NODE_ADDR is not its bridge address {own}:\n{log}", agent.name);
            ensure!(field("ifname").as_deref() == Some("eth0"), "{}: gloo not on the bridge interface:\n{log}", agent.name);
            ranks.push((field("node_rank"), field("master"), own));
        }
        ranks.sort();
        let [(rank0, master0, addr0), (rank1, master1, _)] = ranks.as_slice() else { unreachable!("two agents") };
        ensure!(rank0.as_deref() == Some("0") && rank1.as_deref() == Some("1"), "node ranks {ranks:?}");
        let master = master0.clone().unwrap_or_default();
        ensure!(master.starts_with(&format!("{addr0}:")), "MASTER_ADDR is not rank 0's bridge address {addr0}: {master}");
        ensure!(master1.as_deref() == Some(master.as_str()), "the ranks were given different masters: {ranks:?}");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gang_whose_peer_never_comes_up_fails_after_the_rendezvous_timeout() {
    let timeout = RENDEZVOUS_TIMEOUT_S.to_string();
    let Some((cluster, python)) =
        start("a_gang_whose_peer_never_comes_up_fails_after_the_rendezvous_timeout", &["--rendezvous-timeout-s", &timeout])
    else {
        return;
    };
    run(&cluster, async {
        formed(&cluster).await?;
        // Rank 1's host never starts the trainer (a peer that never comes up); rank 0's
        // waits for it at MASTER_ADDR:MASTER_PORT.
        let mut command = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            r#"if [ "$SATURN_NODE_RANK" = 1 ]; then echo "rank 1 never starts"; exec sleep 600; fi; exec "$0" "$@""#.into(),
        ];
        command.extend(script_command(&python));
        let submitted = Instant::now();
        let id = submit_one(&cluster, &gang_job("lonely", &command, 40)).await?;
        let job = wait_ended(&cluster, &id).await?;
        let took = submitted.elapsed();
        let error = job.error.clone().unwrap_or_default();
        ensure!(job.state == "failed", "a gang without its peer must fail: {job:?}");
        ensure!(error.contains("rendezvous"), "the error does not say the gang did not rendezvous: {error}");
        ensure!(error.contains("10.213.0."), "the error names no address of the gang: {error}");
        ensure!(took >= Duration::from_secs(RENDEZVOUS_TIMEOUT_S), "failed after {took:?}, before the timeout");
        eprintln!("failed after {took:?}: {error}");

        // Both hosts' GPUs are free again and no process of the job is left anywhere.
        eventually("both GPUs free and no job process left", Duration::from_secs(30), || async {
            let status = cluster.status(0).await?;
            let busy: Vec<_> = status.agents.iter().flat_map(|a| &a.gpus).filter_map(|g| g.busy_job.clone()).collect();
            let left: Vec<u32> = (0..cluster.agents.len()).flat_map(|i| cluster.job_pids(i)).collect();
            Ok((busy.is_empty() && left.is_empty()).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}
