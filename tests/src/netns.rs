//! Real network partitions for multi-agent tests: every agent runs in a network
//! namespace of its own, wired to a private bridge, so a test can cut, one-way drop and
//! heal links between real `saturn-agent` processes.
//!
//! The topology exists only inside namespaces this harness creates (nothing is added
//! to the host's own network):
//!
//! ```text
//!   hub namespace: bridge br0 ── v0 ─┐  ── v1 ─┐  ── v2 ─┐      (hub-side veth ends)
//!   agent namespaces:          eth0 10.213.0.1   eth0 10.213.0.2   eth0 10.213.0.3
//!                              lo 127.0.0.1:7070 (API)   mesh on eth0:7946
//! ```
//!
//! Agent namespaces have no default route, so no packet can leave the topology.
//! Faults, all undone by [`NetnsCluster::heal_all`]:
//! - [`isolate`](NetnsCluster::isolate): the agent's link goes down at the hub; nothing
//!   passes either way, silently (like a pulled cable).
//! - [`drop_from`](NetnsCluster::drop_from): a one-way drop, made with a policy-routing
//!   `blackhole` rule in the receiver's namespace matching the sender's address; the
//!   sender sees nothing but silence. [`cut`](NetnsCluster::cut) is both directions.
//!   (`tc ... action drop` would do the same, but needs `sch_prio`/`act_gact`, which
//!   minimal CI kernels lack; `ip rule` needs only iproute2 and policy routing.)
//! - [`pause`](NetnsCluster::pause)/[`resume`](NetnsCluster::resume) (SIGSTOP/SIGCONT),
//!   [`kill`](NetnsCluster::kill) (`kill -9`), [`restart`](NetnsCluster::restart).
//!
//! The test reads an agent the way a user on that host would: it runs the `saturn` CLI
//! inside the agent's namespace (`ip netns exec NS saturn --addr http://127.0.0.1:7070
//! status --json`) and parses the JSON into `saturn_agent::views`.
//!
//! Names are `saturn-pt-<pid>-<n>-…` (pid of the test process, `n` counts clusters in
//! it), so tests running in parallel never collide. Everything — agents, the job
//! processes they started (they live in the agent's namespace), namespaces, veths and
//! the bridge — is removed on drop, also when the test panics; namespaces left by an
//! earlier test process that no longer runs are removed at start. Needs root and `ip`
//! (iproute2); [`unavailable`] says why a test should skip.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use saturn_agent::local_cluster::sibling_bin_dir;
use saturn_agent::views::{JobView, JobsView, StatusView, SubmitView};

use crate::{eventually, Setup};

/// Prefix of every namespace this harness creates.
const PREFIX: &str = "saturn-pt-";
/// The private subnet of every topology (each has its own bridge, so they may repeat).
const SUBNET: [u8; 3] = [10, 213, 0];
/// Mesh port inside every agent namespace.
const MESH_PORT: u16 = 7946;
/// API port on the loopback of every agent namespace.
const API_PORT: u16 = 7070;
/// How long one CLI query may take before it counts as failed (a paused agent never answers).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// A CLI command that gave no answer in time (the error inside the `anyhow::Error`
/// of [`NetnsCluster::cli`], found with `downcast_ref`): the agent hangs, or is paused
/// or cut off from what it waits for.
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

/// Why namespace tests cannot run here (not root, no `ip`), or `None` when they can.
pub fn unavailable() -> Option<String> {
    if let Err(err) = ip(&["-V"]) {
        return Some(format!("`ip` (iproute2) is not usable: {err:#}"));
    }
    let probe = format!("{PREFIX}{}-probe", std::process::id());
    let _ = ip(&["netns", "del", &probe]);
    if let Err(err) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace (root needed): {err:#}"));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

/// Runs `ip ARGS`, failing with the command line and its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip").args(args).output().with_context(|| format!("cannot run `ip {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Pids of every process in namespace `ns`.
fn pids_in(ns: &str) -> Vec<u32> {
    ip(&["netns", "pids", ns]).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Kills every process in `ns` (agents and their jobs) and deletes it.
fn destroy_namespace(ns: &str) {
    for pid in pids_in(ns) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids_in(ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Removes namespaces named like ours whose test process is gone, and any with exactly
/// our names (a dead run that had our pid).
fn remove_stale(ours: &str) {
    let listing = ip(&["netns", "list"]).unwrap_or_default();
    for ns in listing.lines().filter_map(|line| line.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(PREFIX) else { continue };
        let owner_alive = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !owner_alive || ns.starts_with(ours) {
            destroy_namespace(ns);
        }
    }
}

/// One agent in its namespace.
#[derive(Debug)]
pub struct NsAgent {
    /// `--name`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the bridge (mesh on port 7946).
    pub ip: Ipv4Addr,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Its stdout and stderr.
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NsAgent {
    /// The agent process id while it runs (`ip netns exec` execs, so this is the agent).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Agents in namespaces on a private bridge; all of it removed on drop.
pub struct NetnsCluster {
    /// The agents, in start order.
    pub agents: Vec<NsAgent>,
    /// The simulated job's record file (shared by every namespace: same filesystem).
    pub records: PathBuf,
    /// The `saturn` binary (the CLI, and `saturn synth-job` in job files).
    pub saturn: PathBuf,
    prefix: String,
    hub: String,
    agent_bin: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl NetnsCluster {
    /// Builds the topology and starts one agent per namespace, as [`Setup`] says.
    pub fn start(setup: &Setup) -> Result<Self> {
        let ours = format!("{PREFIX}{}-{}-", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
        remove_stale(&ours);
        let dir = tempfile::Builder::new().prefix("saturn-partition-").tempdir()?;
        let bin_dir = sibling_bin_dir()?;
        let agent_bin = bin_dir.join("saturn-agent");
        if !agent_bin.exists() {
            bail!("{} not found: build it first (cargo build -p saturn-agent --bins)", agent_bin.display());
        }
        let mut cluster = NetnsCluster {
            agents: Vec::new(),
            records: dir.path().join("records.jsonl"),
            saturn: bin_dir.join("saturn"),
            hub: format!("{ours}hub"),
            prefix: ours,
            agent_bin,
            dir: Some(dir),
        };
        // From here on, a failure drops `cluster`, which removes what was made so far.
        cluster.build_hub()?;
        for i in 0..setup.agents {
            cluster.add_agent(i, setup)?;
        }
        for i in 0..cluster.agents.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn build_hub(&self) -> Result<()> {
        ip(&["netns", "add", &self.hub])?;
        ip(&["-n", &self.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &self.hub, "link", "set", "br0", "up"])?;
        Ok(())
    }

    fn add_agent(&mut self, i: usize, setup: &Setup) -> Result<()> {
        let name = format!("agent-{i}");
        let netns = format!("{}a{i}", self.prefix);
        let addr = address(i);
        ip(&["netns", "add", &netns])?;
        // The pair is made inside the namespaces: the host's own namespace never sees it.
        let veth = format!("v{i}");
        ip(&["-n", &self.hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        ip(&["-n", &self.hub, "link", "set", &veth, "master", "br0", "up"])?;
        ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        // Rules are consulted in order and the `local` table (delivery to this host) sits
        // at preference 0; move it behind room for the drop rules of `drop_from`.
        ip(&["-n", &netns, "rule", "add", "pref", "100", "lookup", "local"])?;
        ip(&["-n", &netns, "rule", "del", "pref", "0"])?;

        let base = self.dir().join(&name);
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.clone(),
            "--data-dir".into(),
            base.display().to_string(),
            "--listen".into(),
            format!("/ip4/{addr}/tcp/{MESH_PORT}"),
            "--api".into(),
            format!("127.0.0.1:{API_PORT}"),
            "--gpus".into(),
            setup.gpus.clone(),
            "--bootstrap-expect".into(),
            setup.bootstrap_expect.to_string(),
            "--no-mdns".into(),
        ];
        // Everyone joins the first agent; the first joins the second.
        let join = if i == 0 { 1 } else { 0 };
        if setup.agents > 1 {
            args.extend(["--join".into(), format!("/ip4/{}/tcp/{MESH_PORT}", address(join))]);
        }
        args.extend(setup.extra_args.iter().cloned());
        self.agents.push(NsAgent {
            log_path: self.dir().join(format!("{name}.log")),
            name,
            netns,
            ip: addr,
            data_dir: base,
            args,
            child: None,
        });
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let records = self.records.display().to_string();
        let agent = &mut self.agents[i];
        let log = File::options().create(true).append(true).open(&agent.log_path)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &agent.netns])
            .arg(&self.agent_bin)
            .args(&agent.args)
            .env("SATURN_SYNTH_RECORD_FILE", records)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} in {}", agent.name, agent.netns))?;
        agent.child = Some(child);
        Ok(())
    }

    /// The test's temporary directory (data dirs, logs, records, job files).
    pub fn dir(&self) -> PathBuf {
        self.dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default()
    }

    /// The index of the agent called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.name == name)
    }

    // ---- faults -------------------------------------------------------------------

    /// Cuts agent `i` off from everyone, both ways (its link goes down at the hub).
    pub fn isolate(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])?;
        Ok(())
    }

    /// Undoes [`isolate`](Self::isolate) of agent `i` (one-way drops stay).
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])?;
        Ok(())
    }

    /// From now on packets from agent `from` to agent `to` are dropped (silently, at `to`).
    pub fn drop_from(&self, from: usize, to: usize) -> Result<()> {
        let source = format!("{}/32", self.agents[from].ip);
        ip(&["-n", &self.agents[to].netns, "rule", "add", "pref", "10", "from", &source, "blackhole"])?;
        Ok(())
    }

    /// Lets packets from `from` to `to` through again.
    pub fn undrop(&self, from: usize, to: usize) -> Result<()> {
        let source = format!("{}/32", self.agents[from].ip);
        ip(&["-n", &self.agents[to].netns, "rule", "del", "pref", "10", "from", &source, "blackhole"])?;
        Ok(())
    }

    /// Cuts the link between `i` and `j` both ways; others still reach both.
    pub fn cut(&self, i: usize, j: usize) -> Result<()> {
        self.drop_from(i, j)?;
        self.drop_from(j, i)
    }

    /// Removes every fault: links up, drop rules gone.
    pub fn heal_all(&self) -> Result<()> {
        for (i, agent) in self.agents.iter().enumerate() {
            self.heal(i)?;
            // Delete the drop rules one by one until none is left (`ip rule del pref 10`
            // removes one per call and fails when there is none).
            while ip(&["-n", &agent.netns, "rule", "del", "pref", "10"]).is_ok() {}
        }
        Ok(())
    }

    /// SIGSTOP agent `i` (a long GC pause, a frozen VM).
    pub fn pause(&self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// SIGCONT agent `i`.
    pub fn resume(&self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGCONT)
    }

    fn signal(&self, i: usize, signal: Signal) -> Result<()> {
        let pid = self.agents[i].pid().context("agent is not running")?;
        kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to {}", self.agents[i].name))
    }

    /// `kill -9` of agent `i` (its job processes stay, as after a real crash).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.agents[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Restarts agent `i` with the same arguments (same data dir, address, identity).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// Every process in agent `i`'s namespace except the agent: its job processes.
    pub fn job_pids(&self, i: usize) -> Vec<u32> {
        let agent = self.agents[i].pid();
        pids_in(&self.agents[i].netns).into_iter().filter(|p| Some(*p) != agent).collect()
    }

    // ---- reading agents through the CLI -------------------------------------------

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
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let what = format!("`saturn {}` on {}", args.join(" "), agent.name);
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Ok(output) => output.with_context(|| format!("cannot run {what}"))?,
            Err(_) => return Err(NoAnswer { what, waited: timeout }.into()),
        };
        if !output.status.success() {
            bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `saturn status --json` on agent `i`.
    pub async fn status(&self, i: usize) -> Result<StatusView> {
        let out = self.cli(i, &["status"], QUERY_TIMEOUT).await?;
        serde_json::from_str(&out).with_context(|| format!("status of {} is not a status document: {out}", self.agents[i].name))
    }

    /// `saturn job status --json` on agent `i`: every job, in id order.
    pub async fn jobs(&self, i: usize) -> Result<Vec<JobView>> {
        let out = self.cli(i, &["job", "status"], QUERY_TIMEOUT).await?;
        let jobs: JobsView = serde_json::from_str(&out).with_context(|| format!("job list of {} unreadable: {out}", self.agents[i].name))?;
        Ok(jobs.jobs)
    }

    /// Submits `toml` through agent `i` with `saturn job run --json FILE`, waiting at
    /// most `timeout` for the answer.
    pub async fn submit(&self, i: usize, toml: &str, timeout: Duration) -> Result<SubmitView> {
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let file = self.dir().join(format!("submit-{}.toml", FILES.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&file, toml).with_context(|| format!("cannot write {}", file.display()))?;
        let path = file.display().to_string();
        let out = self.cli(i, &["job", "run", &path], timeout).await?;
        serde_json::from_str(&out).with_context(|| format!("submission answer unreadable: {out}"))
    }

    /// Polls agent `i`'s status until `check` holds.
    pub async fn wait_status(&self, i: usize, what: &str, timeout: Duration, check: impl Fn(&StatusView) -> bool) -> Result<StatusView> {
        let what = format!("{}: {what}", self.agents[i].name);
        eventually(&what, timeout, || async {
            let status = self.status(i).await?;
            Ok(check(&status).then_some(status))
        })
        .await
    }

    /// The whole log of agent `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.agents[i].log_path).unwrap_or_default()
    }

    /// The last lines of every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |text: String| {
            let start = text.len().saturating_sub(3000);
            let start = (start..text.len()).find(|s| text.is_char_boundary(*s)).unwrap_or(text.len());
            text[start..].to_string()
        };
        (0..self.agents.len()).map(|i| format!("--- {} ---\n{}", self.agents[i].name, tail(self.log(i)))).collect::<Vec<_>>().join("\n")
    }

    /// Stops every agent: SIGCONT (a paused one could not exit), SIGTERM, SIGKILL after
    /// a few seconds.
    fn stop_agents(&mut self) {
        for agent in &self.agents {
            if let Some(pid) = agent.pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for agent in &mut self.agents {
            let Some(mut child) = agent.child.take() else { continue };
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Agent `i`'s address on the bridge.
fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8 + 1)
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        self.stop_agents();
        // Job processes the agents left behind die with their namespace.
        for agent in &self.agents {
            destroy_namespace(&agent.netns);
        }
        destroy_namespace(&self.hub);
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                eprintln!("partition test failed; agent logs and records kept in {}", dir.keep().display());
            }
        }
    }
}
