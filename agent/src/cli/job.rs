//! `saturn job run|status|cancel|logs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::client::{encode_query, ApiClient};
use super::{table, Connection};
use crate::views::{JobView, JobsView, SubmitView};

/// `saturn job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a TOML job/sweep file; prints the job ids once they are committed.
    Run(RunArgs),
    /// All jobs, or one in detail.
    Status {
        /// A job id (e.g. j-000017); all jobs when absent.
        id: Option<String>,
    },
    /// Cancel a job: its processes are stopped, it ends `cancelled`.
    Cancel {
        /// The job id.
        id: String,
    },
    /// stdout+stderr of the job's processes, fetched from the host that ran it.
    Logs {
        /// The job id.
        id: String,
        /// Keep following new output until the job ends.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

/// Arguments of `saturn job run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML, `[[job]]` and `[[sweep]]` tables).
    pub file: PathBuf,
    /// Follow progress until every submitted job has ended.
    #[arg(long)]
    pub wait: bool,
}

/// Runs one `saturn job` subcommand.
pub async fn run(conn: &Connection, command: &JobCommand) -> Result<i32> {
    let client = conn.client()?;
    match command {
        JobCommand::Run(args) => submit(conn, &client, args).await,
        JobCommand::Status { id: Some(id) } => {
            let job: JobView = client.get_json(&format!("/v1/jobs/{}", encode_query(id))).await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", render_job(&job));
            }
            Ok(0)
        }
        JobCommand::Status { id: None } => {
            let jobs: JobsView = client.get_json("/v1/jobs").await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print!("{}", render_jobs(&jobs.jobs));
                print!("{}", super::leaderboard::render_leaderboards(&jobs.sweeps));
            }
            Ok(0)
        }
        JobCommand::Cancel { id } => {
            let job: JobView = client.delete(&format!("/v1/jobs/{}", encode_query(id))).await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                println!("{}: {}", job.id, job.state);
            }
            Ok(0)
        }
        JobCommand::Logs { id, follow } => logs(&client, id, *follow).await,
    }
}

async fn submit(conn: &Connection, client: &ApiClient, args: &RunArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read job file {}", args.file.display()))?;
    let workdir = std::env::current_dir().context("cannot determine the current directory")?;
    let file_name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = format!(
        "/v1/jobs?workdir={}&file={}",
        encode_query(&workdir.to_string_lossy()),
        encode_query(&file_name)
    );
    let submitted: SubmitView = client.post(&path, "application/toml", text).await?;
    if conn.json && !args.wait {
        println!("{}", serde_json::to_string_pretty(&submitted)?);
        return Ok(0);
    }
    if !conn.json {
        for job in &submitted.jobs {
            println!("{}  {}", job.id, job.name);
        }
    }
    if !args.wait {
        return Ok(0);
    }
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    let finished = wait_for(client, &ids, !conn.json).await?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&JobsView { jobs: finished.clone(), ..Default::default() })?);
    } else {
        print!("\n{}", render_jobs(&finished));
    }
    // A job its sweep stopped early ended as planned, not in failure.
    let all_completed = finished.iter().all(|j| j.state == "completed" || j.state == "stopped");
    Ok(if all_completed { 0 } else { 1 })
}

/// Whether a job state is final.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "cancelled" | "stopped")
}

/// Polls until every job in `ids` is in a final state, drawing one progress bar per job.
pub async fn wait_for(client: &ApiClient, ids: &[String], show: bool) -> Result<Vec<JobView>> {
    let multi = MultiProgress::new();
    if !show {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:<28} [{bar:30}] {pos:>7}/{len:<7} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        let jobs = match client.get_json::<JobsView>("/v1/jobs").await {
            Ok(jobs) => {
                unreachable_since = None;
                jobs
            }
            // The agent may be restarting or electing; keep waiting for a while.
            Err(err) => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(120) {
                    return Err(err.context("lost contact with the agent for 2 minutes"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mine: Vec<JobView> = jobs.jobs.into_iter().filter(|j| ids.contains(&j.id)).collect();
        for job in &mine {
            let bar = bars.entry(job.id.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(job.steps.max(1)));
                bar.set_style(style.clone());
                bar.set_prefix(truncate(&format!("{} {}", job.id, job.name), 28));
                bar
            });
            bar.set_position(job.steps_done.min(job.steps));
            bar.set_message(progress_message(job));
            if is_terminal(&job.state) && !bar.is_finished() {
                bar.finish();
            }
        }
        if mine.len() == ids.len() && mine.iter().all(|j| is_terminal(&j.state)) {
            return Ok(mine);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn progress_message(job: &JobView) -> String {
    let mut msg = job.state.clone();
    if let Some(technique) = &job.technique {
        let gpus: usize = job.placement.iter().map(|p| p.gpus.len()).sum();
        if job.state == "running" {
            msg.push_str(&format!(" {technique} x{gpus}"));
        }
    }
    if let Some(eta) = job.eta_s {
        msg.push_str(&format!(" eta {}", table::human_duration(eta)));
    }
    if let Some(error) = &job.error {
        msg.push_str(&format!(" ({})", truncate(error, 60)));
    }
    msg
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn placement_text(job: &JobView) -> String {
    job.placement
        .iter()
        .map(|p| format!("{}:{}", p.host, p.gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The jobs table of `saturn job status`.
pub fn render_jobs(jobs: &[JobView]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let percent = if job.steps > 0 { 100.0 * job.steps_done as f64 / job.steps as f64 } else { 0.0 };
            vec![
                job.id.clone(),
                truncate(&job.name, 32),
                job.state.clone(),
                format!("{:.0}%", percent),
                job.technique.clone().unwrap_or_else(|| "-".into()),
                placement_text(job),
                job.training_attempts.to_string(),
                job.trials.to_string(),
                job.eta_s.map(table::human_duration).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::render(&["ID", "NAME", "STATE", "DONE", "TECHNIQUE", "GPUS", "ATTEMPTS", "TRIALS", "ETA"], &rows)
}

/// The detail view of `saturn job status ID`.
pub fn render_job(job: &JobView) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{name:<12} {value}\n"));
    field("id", job.id.clone());
    field("name", job.name.clone());
    field("state", job.state.clone());
    field("progress", format!("{}/{} steps", job.steps_done, job.steps));
    field("technique", job.technique.clone().unwrap_or_else(|| "-".into()));
    field("placement", placement_text(job));
    field("attempts", format!("{} training ({} restarts), {} trial runs", job.training_attempts, job.restarts, job.trials));
    field("submitted", job.submitted_at.clone().unwrap_or_else(|| "-".into()));
    field("started", job.started_at.clone().unwrap_or_else(|| "-".into()));
    field("finished", job.finished_at.clone().unwrap_or_else(|| "-".into()));
    if let Some(code) = job.exit_code {
        field("exit code", code.to_string());
    }
    if let Some(error) = &job.error {
        field("error", error.clone());
    }
    for (name, value) in &job.metrics {
        field(&format!("metric {name}"), format!("{value}"));
    }
    if let Some(ckpt) = &job.checkpoint {
        field("checkpoint", format!("step {} ({} bytes, sha256 {})", ckpt.step, ckpt.size, ckpt.digest.get(..12).unwrap_or(&ckpt.digest)));
        field("copies", format!("{} of {} wanted: {}", ckpt.copies.len(), ckpt.copies_wanted, ckpt.copies.join(", ")));
        field("replicated", format!("{} bytes", ckpt.bytes_replicated));
    }
    for event in &job.events {
        field("event", format!("{} {}", event.at, event.text));
    }
    out
}

async fn logs(client: &ApiClient, id: &str, follow: bool) -> Result<i32> {
    let path = format!("/v1/jobs/{}/logs?follow={follow}", encode_query(id));
    let response = client.get_stream(&path).await?;
    let mut body = response.bytes_stream();
    use std::io::Write;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the log stream broke off")?;
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_and_training_attempts_are_shown_apart() {
        // Ran once after four trial runs: SATURN_ATTEMPT was 5, but it is not four failures.
        let job = JobView {
            id: "j-000001".into(),
            name: "once".into(),
            state: "completed".into(),
            attempt: 5,
            trials: 4,
            training_attempts: 1,
            placement: vec![crate::views::PlacementView { host: "a".into(), gpus: vec![0] }],
            ..JobView::default()
        };
        let table = render_jobs(std::slice::from_ref(&job));
        let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
        let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        let at = |name: &str| header.iter().position(|h| *h == name).map(|i| row.get(i).copied());
        assert_eq!(at("ATTEMPTS"), Some(Some("1")), "{table}");
        assert_eq!(at("TRIALS"), Some(Some("4")), "{table}");
        assert!(render_job(&job).contains("1 training (0 restarts), 4 trial runs"), "{}", render_job(&job));
    }
}
