//! Submission latency and throughput through a follower (forwarded to the leader).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use saturn_agent::cli::client::{encode_query, ApiClient};
use saturn_agent::views::SubmitView;
use saturn_tests::Harness;
use tokio::task::JoinSet;

use crate::cluster::steady;
use crate::report::{ms, Stats, Table};

/// A job file of one small job; it never runs (the bench agents have no GPUs).
fn one_job(tag: &str) -> String {
    format!(
        "[[job]]\nname = \"bench-{tag}\"\ncommand = [\"true\"]\nsteps = 1\ntechniques = [\"ddp\"]\ngpus = [1, 1]\n\
         [job.profile]\nddp = {{ 1 = 0.01 }}\n"
    )
}

/// The `POST /v1/jobs` path with the harness directory as the jobs' workdir.
pub fn submit_path(harness: &Harness) -> String {
    format!("/v1/jobs?workdir={}&file=bench.toml", encode_query(&harness.dir().display().to_string()))
}

/// Submits one job; succeeds once it is committed (acknowledged with its id).
pub async fn submit_once(client: &ApiClient, path: &str, tag: &str) -> Result<SubmitView> {
    let submitted: SubmitView = client.post(path, "application/toml", one_job(tag)).await?;
    if submitted.jobs.len() != 1 {
        bail!("one job submitted, {} acknowledged", submitted.jobs.len());
    }
    Ok(submitted)
}

/// `submits` submissions through a follower for each client count in `clients`.
pub async fn measure(harness: &Harness, submits: usize, clients: &[usize]) -> Result<Table> {
    let leader = steady(harness).await?;
    let follower = (leader + 1) % harness.cluster.agents.len();
    let path = submit_path(harness);
    let client = harness.client(follower);
    for k in 0..10 {
        submit_once(&client, &path, &format!("warmup-{k}")).await?;
    }
    let title = format!("Submissions through a follower ({submits} per row, one job each; target p99 < 50 ms)");
    let mut table = Table::new(&title, &["clients", "p50 ms", "p90 ms", "p99 ms", "max ms", "submissions/s"]);
    for &clients in clients {
        let clients = clients.max(1);
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        for c in 0..clients {
            let (client, path) = (client.clone(), path.clone());
            let count = submits / clients + usize::from(c < submits % clients);
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                for k in 0..count {
                    let sent = Instant::now();
                    submit_once(&client, &path, &format!("c{clients}-{c}-{k}")).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done.context("a client task panicked")??);
        }
        let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
        let s = Stats::of(latencies);
        table.row(vec![clients.to_string(), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), format!("{rate:.0}")]);
    }
    Ok(table)
}
