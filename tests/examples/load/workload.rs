//! The load: batches of long simulated jobs with user-given profiles (so no trial runs
//! are needed and every job is `scheduled` at once), submitted as sweeps through one
//! agent by a few concurrent submitters.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use saturn_agent::cli::client::{encode_query, ApiClient};
use saturn_agent::views::SubmitView;

use super::probe::Latencies;

/// Times a batch is sent again after an error before the benchmark gives up.
const MAX_RETRIES: usize = 10;

/// One batch of `jobs` jobs as a sweep file. Steps take minutes of simulated time, so
/// the jobs that get GPUs keep running for the whole measurement and the rest wait.
pub fn batch_file(saturn: &Path, batch: usize, jobs: usize) -> String {
    let points: Vec<String> = (0..jobs).map(|i| i.to_string()).collect();
    format!(
        r#"[[sweep]]
name = "load-b{batch:04}-{{i}}"
command = ["{saturn}", "synth-job", "--model-gb", "1", "--base-step-ms", "60000", "--compute-fraction", "0.9", "--jitter", "0"]
grid = {{ i = [{points}] }}
steps = 100000
techniques = ["ddp", "fsdp"]
gpus = [1, 8]
profile_group = "load"
max_restarts = 1
profile = {{ ddp = {{ 1 = 60.0, 2 = 31.0, 4 = 16.5, 8 = 9.0 }}, fsdp = {{ 1 = 62.0, 4 = 16.0, 8 = 8.5 }} }}
"#,
        saturn = saturn.display(),
        points = points.join(", "),
    )
}

/// What submitting all batches measured.
pub struct Submission {
    /// Latency of each `POST /v1/jobs` (one batch) until it answered 201.
    pub per_batch: Latencies,
    /// Jobs acknowledged.
    pub jobs: usize,
    /// Batches sent again after an error (a leader change mid-commit).
    pub retries: usize,
    /// From the first POST to the last answer.
    pub elapsed: Duration,
}

/// Submits `total` jobs in batches of `batch` through `client` with `submitters`
/// concurrent submitters; every batch must be acknowledged.
pub async fn submit_all(client: &ApiClient, saturn: &Path, workdir: &Path, total: usize, batch: usize, submitters: usize) -> Result<Submission> {
    let batches = total.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let path = format!("/v1/jobs?workdir={}&file=load.toml", encode_query(&workdir.display().to_string()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..submitters.max(1) {
        let (client, next, path, saturn) = (client.clone(), next.clone(), path.clone(), saturn.to_path_buf());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut jobs, mut retries) = (Latencies::default(), 0, 0);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= batches {
                    return Ok::<_, anyhow::Error>((latencies, jobs, retries));
                }
                let size = batch.min(total - index * batch);
                let file = batch_file(&saturn, index, size);
                let mut tries = 0;
                let answer: SubmitView = loop {
                    let sent = Instant::now();
                    match client.post(&path, "application/toml", file.clone()).await {
                        Ok(answer) => {
                            latencies.add(sent.elapsed());
                            break answer;
                        }
                        // A leader change under load answers 503 (outcome unknown): retry,
                        // as a user would, and count it; a duplicate only adds jobs.
                        Err(err) if tries < MAX_RETRIES => {
                            tries += 1;
                            eprintln!("batch {index}: {err:#}; retrying");
                        }
                        Err(err) => return Err(err.context(format!("batch {index}, after {tries} retries"))),
                    }
                };
                retries += tries;
                if answer.jobs.len() != size {
                    bail!("batch {index}: {} of {size} jobs acknowledged", answer.jobs.len());
                }
                jobs += size;
            }
        }));
    }
    let (mut per_batch, mut jobs, mut retries) = (Latencies::default(), 0, 0);
    for task in tasks {
        let (latencies, submitted, retried) = task.await.context("a submitter panicked")??;
        per_batch.merge(latencies);
        jobs += submitted;
        retries += retried;
    }
    Ok(Submission { per_batch, jobs, retries, elapsed: started.elapsed() })
}
