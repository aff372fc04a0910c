//! Reading and driving an agent the way a user on its host would: the `saturn` CLI run
//! inside the agent's namespace against its loopback API, its JSON parsed into
//! `saturn_agent::views`.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use saturn_agent::views::{JobView, JobsView, StatusView, SubmitView};

use super::{NetnsCluster, API_PORT};
use crate::eventually;

/// How long one query may take before it counts as failed (a paused agent never answers).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What every agent reported at one moment when they all agreed.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// The leader every agent named.
    pub leader: String,
    /// Names of the voters, sorted, as every agent sees them.
    pub voters: Vec<String>,
    /// (id, name) of every job, in id order, the same on every agent.
    pub jobs: Vec<(String, String)>,
}

/// A CLI command that gave no answer in time (find it in the `anyhow::Error` of
/// [`NetnsCluster::cli`] with `downcast_ref`): the agent hangs, is paused, or waits for
/// something it is cut off from.
#[derive(Debug)]
pub struct NoAnswer {
    /// What was run, and where.
    pub what: String,
    /// How long it was given.
    pub waited: Duration,
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} gave no answer within {:?}", self.what, self.waited)
    }
}

impl std::error::Error for NoAnswer {}

impl NetnsCluster {
    /// Runs `saturn --addr http://127.0.0.1:7070 --json ARGS` inside agent `i`'s
    /// namespace (in the test directory) and returns its stdout; fails with its stderr
    /// on a non-zero exit, or with [`NoAnswer`] after `timeout`.
    pub async fn cli(&self, i: usize, args: &[&str], timeout: Duration) -> Result<String> {
        let agent = &self.agents[i];
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &agent.netns])
            .arg(&self.saturn)
            .args(["--addr", &format!("http://127.0.0.1:{API_PORT}"), "--json"])
            .arg("--token-file")
            .arg(self.token_file(i))
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let what = format!("`saturn {}` on {}", args.join(" "), agent.name);
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Ok(output) => output.with_context(|| format!("cannot run {what}"))?,
            Err(_) => {
                return Err(NoAnswer {
                    what,
                    waited: timeout,
                }
                .into())
            }
        };
        if !output.status.success() {
            bail!(
                "{what} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `saturn status --json` on agent `i`.
    pub async fn status(&self, i: usize) -> Result<StatusView> {
        let out = self.cli(i, &["status"], QUERY_TIMEOUT).await?;
        serde_json::from_str(&out)
            .with_context(|| format!("status of {} unreadable: {out}", self.agents[i].name))
    }

    /// `saturn job status --json` on agent `i`: every job, in id order.
    pub async fn jobs(&self, i: usize) -> Result<Vec<JobView>> {
        let out = self.cli(i, &["job", "status"], QUERY_TIMEOUT).await?;
        let jobs: JobsView = serde_json::from_str(&out)
            .with_context(|| format!("job list of {} unreadable: {out}", self.agents[i].name))?;
        Ok(jobs.jobs)
    }

    /// Submits `toml` through agent `i` (`saturn job run --json FILE`), waiting at most
    /// `timeout` for the answer.
    pub async fn submit(&self, i: usize, toml: &str, timeout: Duration) -> Result<SubmitView> {
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let file = self.dir().join(format!(
            "submit-{}.toml",
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, toml).with_context(|| format!("cannot write {}", file.display()))?;
        let path = file.display().to_string();
        let out = self.cli(i, &["job", "run", &path], timeout).await?;
        serde_json::from_str(&out).with_context(|| format!("submission answer unreadable: {out}"))
    }

    /// Polls agent `i`'s status until `check` holds.
    pub async fn wait_status(
        &self,
        i: usize,
        what: &str,
        timeout: Duration,
        check: impl Fn(&StatusView) -> bool,
    ) -> Result<StatusView> {
        let what = format!("{}: {what}", self.agents[i].name);
        eventually(&what, timeout, || async {
            let status = self.status(i).await?;
            Ok(check(&status).then_some(status))
        })
        .await
    }

    /// Polls every agent until all name the same leader, see the same voters and list
    /// the same jobs, and `holds` is true of what they agree on.
    pub async fn agreement(
        &self,
        what: &str,
        timeout: Duration,
        holds: impl Fn(&Agreement) -> bool,
    ) -> Result<Agreement> {
        let what = format!("one leader, voter set and job list on every agent, {what}");
        eventually(&what, timeout, || async {
            let mut views = Vec::new();
            for i in 0..self.agents.len() {
                let status = self.status(i).await?;
                let mut voters: Vec<String> = status
                    .agents
                    .into_iter()
                    .filter(|a| a.role == "voter")
                    .map(|a| a.name)
                    .collect();
                voters.sort();
                let jobs: Vec<(String, String)> = self
                    .jobs(i)
                    .await?
                    .into_iter()
                    .map(|j| (j.id, j.name))
                    .collect();
                views.push((status.leader, voters, jobs));
            }
            let first = &views[0];
            match &first.0 {
                Some(leader) if views.iter().all(|v| v == first) => {
                    let agreed = Agreement {
                        leader: leader.clone(),
                        voters: first.1.clone(),
                        jobs: first.2.clone(),
                    };
                    Ok(holds(&agreed).then_some(agreed))
                }
                // An error, so that a timeout reports what the agents said last.
                _ => {
                    let said: Vec<_> = views
                        .iter()
                        .map(|(l, v, j)| format!("leader {l:?}, voters {v:?}, {} jobs", j.len()))
                        .collect();
                    bail!("the agents disagree: {said:?}")
                }
            }
        })
        .await
    }
}
