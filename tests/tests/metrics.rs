//! Scenario: a 3-agent mesh runs a sweep of the simulated job while an operator scrapes
//! every agent's `/metrics` and follows one job's log through an agent that does not run
//! it.
//!
//! - `/metrics` is Prometheus text (every line parses; every sample is documented and
//!   unique) and carries, per agent, GPUs total/busy, jobs by state, Raft term, role,
//!   commit index, leader changes, dispatches, preemptions, profiling seconds, planner
//!   solve time and predicted makespan, and per job steps done and step rate;
//! - every agent's numbers equal what `saturn status --json` and `saturn job status
//!   --json` print: while the sweep runs (busy GPUs, jobs by state, Raft; a positive
//!   step rate shows up) and once it is over (everything, per-job steps included);
//! - `saturn job logs ID -f` on another agent streams the job's output while it runs and
//!   ends, with status 0, when the job ends.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use prometheus_parse::{LineInfo, Scrape, Value};
use saturn_agent::views::JobView;
use saturn_tests::{eventually, synth_sweep, Harness, Setup};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader};

const JOBS: usize = 4;
const STEPS: u64 = 800;
const STATES: [&str; 8] = ["queued", "profiling", "scheduled", "running", "completed", "failed", "cancelled", "stopped"];
/// What every agent reports whether or not it leads, whether or not there is a plan.
const PER_AGENT: [&str; 14] = [
    "saturn_gpus_total",
    "saturn_gpus_busy",
    "saturn_agent_gpus_total",
    "saturn_agent_gpus_busy",
    "saturn_jobs",
    "saturn_raft_term",
    "saturn_raft_role",
    "saturn_raft_commit_index",
    "saturn_raft_leader_changes_total",
    "saturn_dispatches_total",
    "saturn_preemptions_total",
    "saturn_profiling_seconds",
    "saturn_planner_solve_seconds",
    "saturn_planner_predicted_makespan_seconds",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_the_cli_and_a_log_follows_across_hosts() {
    let harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = scenario(&harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn scenario(harness: &Harness) -> Result<()> {
    for i in 0..3 {
        harness.wait_formed(i, 3, Duration::from_secs(40)).await?;
    }
    for i in 0..3 {
        eventually(&format!("agent {i}'s metrics before any job"), Duration::from_secs(20), || async {
            let scrape = scrape(harness, i).await?;
            missing(&scrape, &PER_AGENT).map(|()| Some(()))
        })
        .await?;
    }
    let term_before = harness.status(0).await?.term;
    let submitted = harness.submit(0, &synth_sweep(&harness.saturn, "metrics", JOBS, STEPS, "")).await?;
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();

    // Follow the first job's log through an agent that does not run it.
    let followed = ids[0].clone();
    let (viewer, host) = eventually("the first job running", Duration::from_secs(40), || async {
        let jobs = harness.jobs(0).await?;
        let Some(job) = jobs.iter().find(|j| j.id == followed && j.state == "running") else { return Ok(None) };
        let Some(host) = job.placement.first().map(|p| p.host.clone()) else { return Ok(None) };
        let viewer = harness.cluster.agents.iter().position(|a| a.name != host).context("another agent")?;
        Ok(Some((viewer, host)))
    })
    .await?;
    let mut follower = tokio::process::Command::new(&harness.saturn)
        .args(["--addr", &harness.cluster.agents[viewer].api_url(), "job", "logs", &followed, "-f"])
        .arg("--token-file")
        .arg(&harness.cluster.token_file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = tokio::spawn({
        let (lines, stdout) = (lines.clone(), follower.stdout.take().context("piped stdout")?);
        async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        }
    });

    // While the sweep runs, the metrics are checked and, at the same time, the log.
    let metrics_while_running = async {
        eventually("busy GPUs and a positive step rate while the sweep runs", Duration::from_secs(30), || async {
            let scrape = scrape(harness, viewer).await?;
            let busy = value(&scrape, "saturn_gpus_busy", &[]).unwrap_or(0.0);
            let rate =
                ids.iter().filter_map(|id| value(&scrape, "saturn_job_step_rate", &[("job", id)])).fold(0.0, f64::max);
            Ok((busy > 0.0 && rate > 0.0).then_some(()))
        })
        .await?;
        leader_planned(harness, term_before).await?;
        eventually("the metrics to equal the CLI's mid-run", Duration::from_secs(20), || async {
            compare(harness, viewer, Moment::Running).await
        })
        .await
    };
    // Half the steps cannot come from a short trial run: this is the real attempt, live.
    let log_while_running = eventually("the followed log to pass half the steps", Duration::from_secs(40), || async {
        let seen = last_step(&lines);
        if seen < STEPS / 2 {
            return Ok(None);
        }
        let job: JobView = harness.client(viewer).get_json(&format!("/v1/jobs/{followed}")).await?;
        Ok(Some((seen, job.state)))
    });
    let (metrics_checked, log_checked) = tokio::join!(metrics_while_running, log_while_running);
    metrics_checked?;
    let (seen, state) = log_checked?;
    assert!(
        !matches!(state.as_str(), "completed" | "failed" | "cancelled" | "stopped"),
        "step {seen} of {followed} reached the follower only once the job was {state}: the log did not stream live from {host}"
    );

    let jobs = harness.wait_jobs_ended(0, &ids, Duration::from_secs(60)).await?;
    assert!(jobs.iter().all(|j| j.state == "completed"), "every job completes: {jobs:?}");

    let status = tokio::time::timeout(Duration::from_secs(20), follower.wait())
        .await
        .context("`saturn job logs -f` still running 20 s after its job ended")??;
    reader.await?;
    assert!(status.success(), "`saturn job logs -f` exited with {status}");
    assert_eq!(last_step(&lines), STEPS, "the followed log ends with the last step");

    for i in 0..3 {
        eventually(&format!("agent {i}'s metrics to equal the CLI's numbers"), Duration::from_secs(20), || async {
            compare(harness, i, Moment::Settled).await
        })
        .await?;
    }

    Ok(())
}

/// While the sweep runs, the leader's metrics show that it planned it and some agent's
/// that it profiled it. Polled: the last re-plan may have been of an empty instance
/// (every job still in its trial runs), predicting 0 s. When the leader changes during the
/// check, the check starts again on the new leader (which re-plans on taking over).
async fn leader_planned(harness: &Harness, _term_before: u64) -> Result<()> {
    for _round in 0..5 {
        let status = harness.status(0).await?;
        let Some(leader) = status.leader.clone() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let i = harness.cluster.agents.iter().position(|a| a.name == leader).context("the leader is ours")?;
        let checked = eventually(&format!("{leader}'s planning numbers and the profiling seconds"), Duration::from_secs(20), || async {
            let leader_scrape = scrape(harness, i).await?;
            for name in ["saturn_planner_solves_total", "saturn_plan_makespan_seconds", "saturn_planner_predicted_makespan_seconds"] {
                let v = value(&leader_scrape, name, &[]).with_context(|| format!("{name} on the leader"))?;
                if v <= 0.0 {
                    return Ok(None);
                }
            }
            // Trials ran under whichever agent led when the sweep was profiled.
            let mut profiled = 0.0f64;
            for j in 0..harness.cluster.agents.len() {
                if let Ok(other) = scrape(harness, j).await {
                    profiled = profiled.max(value(&other, "saturn_profiling_seconds", &[]).unwrap_or(0.0));
                }
            }
            Ok((profiled > 0.0).then_some(()))
        })
        .await;
        let term_after = harness.status(0).await?.term;
        match checked {
            Ok(()) if term_after == status.term => return Ok(()),
            Err(err) if term_after == status.term => return Err(err),
            _ => continue, // the leader changed meanwhile: check the new one
        }
    }
    bail!("the leader changed during each of 5 checks of the planning metrics")
}

/// A sample the metrics must have: name, labels it carries, value.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// When metrics are compared with the CLI.
#[derive(Clone, Copy, PartialEq)]
enum Moment {
    /// Jobs run: steps move between any two reads, so only what holds still (GPUs, jobs
    /// by state, Raft) is compared, and only while some GPU is busy.
    Running,
    /// Every job ended: everything is compared, per-job steps and rates included.
    Settled,
}

/// One comparison of agent `i`'s metrics with the CLI: `None` when the CLI's answers
/// changed while the metrics were read (retry), an error on a mismatch.
async fn compare(harness: &Harness, i: usize, moment: Moment) -> Result<Option<()>> {
    let name = harness.cluster.agents[i].name.clone();
    let status: Json = harness.cli_json(i, &["status"]).await?;
    let jobs: Json = harness.cli_json(i, &["job", "status"]).await?;
    let scrape = scrape(harness, i).await?;
    let (status_after, jobs_after): (Json, Json) =
        (harness.cli_json(i, &["status"]).await?, harness.cli_json(i, &["job", "status"]).await?);
    if cli_numbers(&status, &jobs, moment) != cli_numbers(&status_after, &jobs_after, moment) {
        return Ok(None);
    }
    missing(&scrape, &PER_AGENT)?;
    missing(&scrape, &["saturn_plan_makespan_seconds"])?;

    let agents = status["agents"].as_array().context("status lists agents")?;
    let gpus = |a: &Json| a["gpus"].as_array().cloned().unwrap_or_default();
    let healthy: Vec<&Json> = agents.iter().filter(|a| a["healthy"] == true).collect();
    let me = agents.iter().find(|a| a["name"] == name.as_str()).context("status lists this agent")?;
    let busy = agents.iter().flat_map(gpus).filter(|g| !g["busy_job"].is_null()).count() as f64;
    if moment == Moment::Running && busy == 0.0 {
        bail!("no GPU busy: the sweep is not running");
    }
    let mut expected: Vec<Expected> = vec![
        ("saturn_gpus_total", vec![], healthy.iter().map(|a| gpus(a).len()).sum::<usize>() as f64),
        ("saturn_gpus_busy", vec![], busy),
        ("saturn_agent_gpus_total", vec![], gpus(me).len() as f64),
        ("saturn_agent_gpus_busy", vec![], gpus(me).iter().filter(|g| !g["busy_job"].is_null()).count() as f64),
        ("saturn_agents_up", vec![], healthy.len() as f64),
        ("saturn_raft_term", vec![], status["term"].as_f64().context("status has a term")?),
        ("saturn_raft_is_leader", vec![], if status["leader"] == name.as_str() { 1.0 } else { 0.0 }),
        ("saturn_raft_role", vec![("role", me["role"].as_str().context("a role")?)], 1.0),
    ];
    let jobs = jobs["jobs"].as_array().context("job status lists jobs")?;
    for state in STATES {
        let count = jobs.iter().filter(|j| j["state"] == state).count() as f64;
        expected.push(("saturn_jobs", vec![("state", state)], count));
    }
    for job in jobs.iter().filter(|_| moment == Moment::Settled) {
        let id = job["id"].as_str().context("a job id")?;
        expected.push(("saturn_job_steps_done", vec![("job", id)], job["steps_done"].as_f64().context("steps_done")?));
        if job["state"] != "running" {
            expected.push(("saturn_job_step_rate", vec![("job", id)], 0.0));
        }
    }
    for (metric, labels, want) in expected {
        let got = value(&scrape, metric, &labels).with_context(|| format!("agent {i} has no {metric}{labels:?}"))?;
        if (got - want).abs() > 1e-9 {
            bail!("agent {i}: {metric}{labels:?} is {got}, the CLI says {want}");
        }
    }
    let job_series = scrape.samples.iter().filter(|s| s.metric == "saturn_job_steps_done").count();
    if job_series != jobs.len() {
        bail!("agent {i}: {job_series} saturn_job_steps_done series for {} jobs", jobs.len());
    }
    for (metric, at_least) in
        [("saturn_raft_commit_index", 1.0), ("saturn_raft_leader_changes_total", 1.0), ("saturn_dispatches_total", JOBS as f64)]
    {
        let got = value(&scrape, metric, &[]).context(metric)?;
        if got < at_least {
            bail!("agent {i}: {metric} is {got}, expected at least {at_least}");
        }
    }
    Ok(Some(()))
}

/// The CLI's numbers the metrics are compared with at `moment` (heartbeat noise such as
/// the applied index or GPU utilisation left out).
fn cli_numbers(status: &Json, jobs: &Json, moment: Moment) -> Json {
    let agents: Vec<Json> = status["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let busy: Vec<&Json> = a["gpus"].as_array().into_iter().flatten().map(|g| &g["busy_job"]).collect();
            serde_json::json!([a["name"], a["role"], a["healthy"], busy])
        })
        .collect();
    let jobs: Vec<Json> = jobs["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| match moment {
            Moment::Running => serde_json::json!([j["id"], j["state"]]),
            Moment::Settled => serde_json::json!([j["id"], j["state"], j["steps_done"]]),
        })
        .collect();
    serde_json::json!([status["leader"], status["term"], agents, jobs])
}

/// Agent `i`'s `/metrics`, checked line by line to be Prometheus text, then parsed.
async fn scrape(harness: &Harness, i: usize) -> Result<Scrape> {
    let text = harness.client(i).get_text("/metrics").await?;
    for (n, line) in text.lines().enumerate() {
        // OpenMetrics' end marker; a comment to a Prometheus text parser.
        if line == "# EOF" {
            continue;
        }
        if matches!(LineInfo::parse(line), LineInfo::Ignored) {
            bail!("agent {i} /metrics line {}: not Prometheus text: {line:?}", n + 1);
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
    let mut seen = HashSet::new();
    for sample in &scrape.samples {
        // A counter's HELP names its family, `x` for the sample `x_total` (OpenMetrics).
        let family = sample.metric.strip_suffix("_total").unwrap_or(&sample.metric);
        if !scrape.docs.contains_key(&sample.metric) && !scrape.docs.contains_key(family) {
            bail!("agent {i}: {} has no HELP line", sample.metric);
        }
        let labels: BTreeMap<&String, &String> = sample.labels.iter().collect();
        if !seen.insert(format!("{}{labels:?}", sample.metric)) {
            bail!("agent {i}: {} {labels:?} appears twice", sample.metric);
        }
    }
    Ok(scrape)
}

/// An error naming every metric of `names` that `scrape` lacks.
fn missing(scrape: &Scrape, names: &[&str]) -> Result<()> {
    let absent: Vec<&&str> = names.iter().filter(|n| !scrape.samples.iter().any(|s| s.metric == **n)).collect();
    if absent.is_empty() {
        Ok(())
    } else {
        bail!("/metrics lacks {absent:?}")
    }
}

/// The highest `SATURN step=N` among the log lines read so far.
fn last_step(lines: &Mutex<Vec<String>>) -> u64 {
    let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
    lines.iter().filter_map(|l| l.strip_prefix("SATURN step=")?.trim().parse().ok()).max().unwrap_or(0)
}

/// The value of the sample `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
    match sample.value {
        Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => Some(v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}
