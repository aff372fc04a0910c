//! A small harness for multi-agent tests: real `saturn-agent` processes on 127.0.0.1
//! (through [`LocalCluster`]), an API client per agent, polling with deadlines, and the
//! invariant checks over the simulated job's own records.
//!
//! Every process a test starts is stopped when its [`Harness`] is dropped, and the
//! temporary directory is removed (kept, and its path printed, when the test failed).

pub mod chaos;
pub mod netns;
pub mod records;
pub mod torch;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use saturn_agent::cli::client::{encode_query, ApiClient};
use saturn_agent::local_cluster::{sibling_bin_dir, ClusterOptions, LocalCluster};
use saturn_agent::views::{JobView, JobsView, StatusView, SubmitView};

/// How to start a test cluster.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Agents to start.
    pub agents: usize,
    /// `--bootstrap-expect`.
    pub bootstrap_expect: usize,
    /// `--gpus` of each agent.
    pub gpus: String,
    /// Extra flags for every agent.
    pub extra_args: Vec<String>,
}

impl Setup {
    /// `agents` agents, all forming the cluster, with 4 simulated GPUs each, fast
    /// heartbeats and a short grace period so faults are handled quickly.
    pub fn new(agents: usize) -> Self {
        Setup {
            agents,
            bootstrap_expect: agents.min(3),
            gpus: "sim:4xSIM-24GB".into(),
            extra_args: ["--heartbeat-ms", "200", "--grace-period-s", "4", "--kill-grace-s", "5"]
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

/// A running test cluster.
pub struct Harness {
    /// The agents.
    pub cluster: LocalCluster,
    /// The simulated job's record file (every attempt segment of every job).
    pub records: PathBuf,
    /// The `saturn` binary (to run jobs with `saturn synth-job`).
    pub saturn: PathBuf,
    dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the agents of `setup`.
    pub fn start(setup: &Setup) -> Result<Self> {
        let mut harness = Self::prepare(setup, &[])?;
        for i in 0..setup.agents {
            harness.cluster.spawn(i)?;
        }
        Ok(harness)
    }

    /// Prepares the agents of `setup`, with `env` added to theirs, without starting any:
    /// start them with `cluster.spawn(i)` in the order the test needs.
    pub fn prepare(setup: &Setup, env: &[(String, String)]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("saturn-test-").tempdir()?;
        let records = dir.path().join("records.jsonl");
        let bin_dir = sibling_bin_dir()?;
        let options = ClusterOptions {
            bin_dir: bin_dir.clone(),
            base_dir: dir.path().to_path_buf(),
            names: (0..setup.agents).map(|i| format!("agent-{i}")).collect(),
            gpus: setup.gpus.clone(),
            bootstrap_expect: setup.bootstrap_expect,
            extra_args: setup.extra_args.clone(),
            env: [("SATURN_SYNTH_RECORD_FILE".to_string(), records.display().to_string())]
                .into_iter()
                .chain(env.iter().cloned())
                .collect(),
        };
        let cluster = LocalCluster::prepare(&options)?;
        Ok(Harness { cluster, records, saturn: bin_dir.join("saturn"), dir })
    }

    /// The temporary directory of this test.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// An API client for agent `i`.
    pub fn client(&self, i: usize) -> ApiClient {
        self.cluster.client(i).expect("an HTTP client can always be built")
    }

    /// `GET /v1/status` on agent `i`.
    pub async fn status(&self, i: usize) -> Result<StatusView> {
        self.client(i).get_json("/v1/status").await
    }

    /// `GET /v1/jobs` on agent `i`.
    pub async fn jobs(&self, i: usize) -> Result<Vec<JobView>> {
        Ok(self.client(i).get_json::<JobsView>("/v1/jobs").await?.jobs)
    }

    /// Submits a TOML job file through agent `i`.
    pub async fn submit(&self, i: usize, toml: &str) -> Result<SubmitView> {
        let path = format!("/v1/jobs?workdir={}&file=test.toml", encode_query(&self.dir().display().to_string()));
        self.client(i).post(&path, "application/toml", toml.to_string()).await
    }

    /// Polls `check` on agent `i`'s status until it holds.
    pub async fn wait_status(&self, i: usize, what: &str, timeout: Duration, check: impl Fn(&StatusView) -> bool) -> Result<StatusView> {
        eventually(what, timeout, || async {
            let status = self.status(i).await?;
            if check(&status) {
                Ok(Some(status))
            } else {
                Ok(None)
            }
        })
        .await
    }

    /// Waits until agent `i` reports `n` healthy agents and a leader.
    pub async fn wait_formed(&self, i: usize, n: usize, timeout: Duration) -> Result<StatusView> {
        self.wait_status(i, &format!("{n} healthy agents and a leader"), timeout, |s| {
            s.leader.is_some() && s.agents.iter().filter(|a| a.healthy && !a.gpus.is_empty()).count() >= n
        })
        .await
    }

    /// Waits until every job in `ids` has ended (as agent `i` reports).
    pub async fn wait_jobs_ended(&self, i: usize, ids: &[String], timeout: Duration) -> Result<Vec<JobView>> {
        eventually("all jobs ended", timeout, || async {
            let jobs: Vec<JobView> = self.jobs(i).await?.into_iter().filter(|j| ids.contains(&j.id)).collect();
            let ended = jobs.len() == ids.len() && jobs.iter().all(|j| matches!(j.state.as_str(), "completed" | "failed" | "cancelled" | "stopped"));
            Ok(ended.then_some(jobs))
        })
        .await
    }

    /// The last lines of every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.cluster.agents.len())
            .map(|i| format!("--- {} ---\n{}", self.cluster.agents[i].name, self.cluster.log_tail(i, 3000)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Polls `attempt` every 100 ms until it returns `Some`, or fails after `timeout` with
/// the last error seen. Errors (an agent restarting, an election) are retried.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match attempt().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sweep of the simulated job: `jobs` jobs (`lr` grid) of `steps` steps each, with the
/// defaults of [`SynthSweep::new`].
pub fn synth_sweep(saturn: &std::path::Path, name: &str, jobs: usize, steps: u64, extra: &str) -> String {
    SynthSweep { extra: extra.to_string(), ..SynthSweep::new(name, jobs, steps) }.toml(saturn)
}

/// A job file sweeping the simulated job over an `lr` grid; the one builder every suite
/// uses, each changing only what it tests.
#[derive(Clone, Debug)]
pub struct SynthSweep {
    /// Jobs are named `NAME-lrLR`.
    pub name: String,
    /// Jobs (learning rates 1e-4, 2e-4, ...).
    pub jobs: usize,
    /// Steps of each job.
    pub steps: u64,
    /// `--base-step-ms` of the simulated job.
    pub base_step_ms: u32,
    /// `techniques`, as a TOML array.
    pub techniques: String,
    /// `gpus = [min, max]`.
    pub gpus: (u32, u32),
    /// `profile_group`.
    pub profile_group: String,
    /// `--checkpoint-every` (the simulated job's default when `None`).
    pub checkpoint_every: Option<u64>,
    /// A `profile = ...` line (known step times: no trial runs), or nothing.
    pub profile: Option<String>,
    /// More arguments of the simulated job, as TOML array items starting with a comma.
    pub extra: String,
}

impl SynthSweep {
    /// 40 ms steps on one GPU, ddp and fsdp on 1–4 GPUs, profiled by trial runs.
    pub fn new(name: &str, jobs: usize, steps: u64) -> Self {
        SynthSweep {
            name: name.to_string(),
            jobs,
            steps,
            base_step_ms: 40,
            techniques: r#"["ddp", "fsdp"]"#.to_string(),
            gpus: (1, 4),
            profile_group: name.to_string(),
            checkpoint_every: None,
            profile: None,
            extra: String::new(),
        }
    }

    /// The job file, running the simulated job from `saturn`.
    pub fn toml(&self, saturn: &std::path::Path) -> String {
        let lrs: Vec<String> = (0..self.jobs).map(|i| format!("\"{}e-4\"", i + 1)).collect();
        let checkpoint =
            self.checkpoint_every.map(|n| format!(r#", "--checkpoint-every", "{n}""#)).unwrap_or_default();
        format!(
            r#"
[[sweep]]
name = "{name}-lr{{lr}}"
command = ["{saturn}", "synth-job", "--model-gb", "1", "--base-step-ms", "{base}", "--compute-fraction", "0.8"{checkpoint}, "--lr", "{{lr}}"{extra}]
grid = {{ lr = [{lrs}] }}
steps = {steps}
techniques = {techniques}
gpus = [{min}, {max}]
profile_group = "{group}"
max_restarts = 2
{profile}
"#,
            name = self.name,
            saturn = saturn.display(),
            base = self.base_step_ms,
            extra = self.extra,
            lrs = lrs.join(", "),
            steps = self.steps,
            techniques = self.techniques,
            min = self.gpus.0,
            max = self.gpus.1,
            group = self.profile_group,
            profile = self.profile.as_deref().unwrap_or(""),
        )
    }
}

impl Harness {
    /// Runs the `saturn` CLI against agent `i` with `--json` added and parses the one
    /// JSON document it prints (what a user scripting the CLI gets).
    pub async fn cli_json<T: serde::de::DeserializeOwned>(&self, i: usize, args: &[&str]) -> Result<T> {
        let url = self.cluster.agents[i].api_url();
        let run = tokio::process::Command::new(&self.saturn)
            .arg("--addr")
            .arg(&url)
            .arg("--token-file")
            .arg(&self.cluster.token_file)
            .args(args)
            .arg("--json")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .map_err(|_| anyhow::anyhow!("saturn {} did not answer in 30 s", args.join(" ")))??;
        if !output.status.success() {
            bail!("saturn {} failed ({}): {}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|err| anyhow::anyhow!("saturn {} printed no JSON document ({err}): {}", args.join(" "), String::from_utf8_lossy(&output.stdout)))
    }
}

/// The first of `n` consecutive TCP ports on 127.0.0.1 that are all free right now, for
/// scripts that take a port base and count up from it. Bases are drawn at random below
/// the usual ephemeral range (where `free_port` answers come from), so tests running in
/// parallel do not pick the same block.
pub fn free_port_block(n: u16) -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    for attempt in 0u64..500 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(attempt);
        let base = u16::try_from(LOW + hasher.finish() % (SPAN - u64::from(n)))?;
        // Holding every listener at once proves the whole block free at one moment.
        let held: Vec<_> = (base..base + n).map_while(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok()).collect();
        if held.len() == usize::from(n) {
            return Ok(base);
        }
    }
    bail!("no block of {n} free ports found between {LOW} and {}", LOW + SPAN)
}

/// Whether the environment says this is CI (`CI=true`, as CI services set it).
pub fn under_ci(ci: Option<&str>) -> bool {
    matches!(ci.map(str::trim), Some(v) if v.eq_ignore_ascii_case("true") || v == "1")
}

/// A test's prerequisite (a tool, root, a browser) is missing: under `CI=true` the test
/// fails, since CI must have everything (`.ci/run` installs it); elsewhere it prints why
/// it checked nothing. Call it and return.
pub fn missing_prerequisite(why: &str) {
    if under_ci(std::env::var("CI").ok().as_deref()) {
        panic!("CI=true, and this test cannot run: {why}");
    }
    eprintln!("SKIPPED (not under CI=true, where this fails): {why}");
}

/// `target/test-artifacts`: where tests leave files for a person to look at (screenshots).
pub fn artifacts_dir() -> Result<PathBuf> {
    let bin_dir = sibling_bin_dir()?;
    let target = bin_dir.parent().unwrap_or(&bin_dir);
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What one run of the `saturn` CLI did.
#[derive(Clone, Debug)]
pub struct CliRun {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Harness {
    /// Runs `saturn --addr <agent i> ARGS` as a user would (nothing added), in the test's
    /// directory, and fails when it has not exited after `timeout`. Like a user on the
    /// agent's host, it finds the token through the file the agent advertises in its
    /// runtime directory (the cluster's own, here, instead of `~/.saturn/run`).
    pub async fn cli(&self, i: usize, args: &[&str], timeout: Duration) -> Result<CliRun> {
        let run = tokio::process::Command::new(&self.saturn)
            .arg("--addr")
            .arg(self.cluster.agents[i].api_url())
            .args(args)
            .env("SATURN_RUNTIME_DIR", &self.cluster.runtime_dir)
            .env_remove("SATURN_TOKEN")
            .env_remove("SATURN_TOKEN_FILE")
            .current_dir(self.dir())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| anyhow::anyhow!("saturn {} had not exited after {timeout:?}", args.join(" ")))??;
        Ok(CliRun {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// The index of the agent that agent `i` reports as the leader.
    pub async fn leader_index(&self, i: usize) -> Result<usize> {
        let status = self.status(i).await?;
        let Some(leader) = status.leader else { bail!("agent {i} knows no leader") };
        match self.cluster.agents.iter().position(|a| a.name == leader) {
            Some(index) => Ok(index),
            None => bail!("the leader {leader} is not one of this test's agents"),
        }
    }

    /// Live processes of job `job` of this test, found in /proc by their environment:
    /// `SATURN_JOB_ID`, and this harness's record file, so that tests running side by
    /// side never mistake each other's `j-000001` for their own.
    pub fn job_pids(&self, job: &str) -> Vec<u32> {
        let id = format!("SATURN_JOB_ID={job}");
        let records = format!("SATURN_SYNTH_RECORD_FILE={}", self.records.display());
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // A process that exits meanwhile (or a zombie) has no readable environment.
                let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
                vars.contains(&id.as_bytes()) && vars.contains(&records.as_bytes())
            })
            .collect()
    }
}

/// Every record segment (ended, and started but never ended), checked for the two
/// exclusivity invariants: no (agent, GPU) used by two jobs at once, no job running two
/// attempts at once. Returns the segments for further checks.
pub fn exclusive_segments(path: &std::path::Path) -> Result<Vec<records::Record>> {
    let (ended, open) = records::segments(&records::read(path));
    let all: Vec<records::Record> = ended.into_iter().chain(open).collect();
    let overlaps = records::gpu_overlaps(&all);
    if !overlaps.is_empty() {
        bail!("{} pairs of jobs used one GPU at the same time, e.g. {:?}", overlaps.len(), overlaps[0]);
    }
    let concurrent = records::concurrent_attempts(&all);
    if !concurrent.is_empty() {
        bail!("{} pairs of attempts of one job ran at the same time, e.g. {:?}", concurrent.len(), concurrent[0]);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::under_ci;

    #[test]
    fn ci_is_recognised_so_missing_tools_fail_there() {
        assert!(under_ci(Some("true")) && under_ci(Some("TRUE")) && under_ci(Some("1")));
        assert!(!under_ci(None) && !under_ci(Some("")) && !under_ci(Some("false")));
    }
}
