//! Real network partitions for multi-agent tests: every agent runs in a network
//! namespace of its own, wired to a private bridge, so a test can cut, one-way drop and
//! heal links between real `saturn-agent` processes.
//!
//! The topology exists only inside namespaces this harness creates (nothing is added
//! to the host's own network):
//!
//! ```text
//!   hub namespace:   bridge br0 ── v0 ──┐        ── v1 ──┐        ── v2 ──┐
//!   agent namespaces:          eth0 10.213.0.1   eth0 10.213.0.2   eth0 10.213.0.3
//!                    each: mesh on eth0:7946, API on its own 127.0.0.1:7070
//! ```
//!
//! Agent namespaces have no default route, so no packet can leave the topology.
//! Faults live in [`Topology`] (`cluster.links`), all undone by
//! [`heal_all`](Topology::heal_all):
//! - [`isolate`](Topology::isolate): the agent's link goes down at the hub; nothing
//!   passes either way, silently (a pulled cable).
//! - [`drop_from`](Topology::drop_from): a one-way drop, made with a policy-routing
//!   `blackhole` rule in the receiver's namespace matching the sender's address; the
//!   sender sees only silence. [`cut`](Topology::cut) is both directions. (`tc ...
//!   action drop` would do the same, but needs `sch_prio` and `act_gact`, which minimal
//!   CI kernels lack; `ip rule` needs only iproute2 and policy routing.)
//!
//! Process faults are on the cluster: [`pause`](NetnsCluster::pause) /
//! [`resume`](NetnsCluster::resume) (SIGSTOP/SIGCONT), [`kill`](NetnsCluster::kill)
//! (`kill -9`), [`restart`](NetnsCluster::restart). The test reads an agent the way a
//! user on that host would, through the `saturn` CLI run inside the agent's namespace
//! (see [`cli`](NetnsCluster::cli)).
//!
//! Names are `saturn-pt-<pid>-<n>-…` (pid of the test process, `n` counts clusters in
//! it), so tests running in parallel never collide. Everything — agents, the job
//! processes they started (they stay in the agent's namespace), namespaces, veths, the
//! bridge — is removed on drop, also when the test panics; namespaces left by a test
//! process that no longer runs are removed at start. Needs root and `ip` (iproute2);
//! [`unavailable`] says why a test should skip.

mod cli;
mod topology;

pub use cli::{Agreement, NoAnswer};
pub use topology::Topology;

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

use crate::Setup;
use topology::{address, ip, pids_in, remove_stale, PREFIX};

/// Mesh port inside every agent namespace.
const MESH_PORT: u16 = 7946;
/// API port on the loopback of every agent namespace.
const API_PORT: u16 = 7070;

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// Why namespace tests cannot run here (not root, no `ip`), or `None` when they can.
pub fn unavailable() -> Option<String> {
    if let Err(err) = ip(&["-V"]) {
        return Some(format!("`ip` (iproute2) is not usable: {err:#}"));
    }
    // Numbered like clusters, so tests probing at the same time never share a name.
    let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
    let probe = format!("{PREFIX}{}-{n}-probe", std::process::id());
    let _ = ip(&["netns", "del", &probe]);
    if let Err(err) = ip(&["netns", "add", &probe]) {
        return Some(format!(
            "cannot create a network namespace (root needed): {err:#}"
        ));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
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
    /// The agent's process id while it runs (`ip netns exec` execs, so this is the agent).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Agents in namespaces on a private bridge; all of it removed on drop.
pub struct NetnsCluster {
    /// The agents, in start order.
    pub agents: Vec<NsAgent>,
    /// The network between them, and its faults.
    pub links: Topology,
    /// The simulated job's record file (shared by every namespace: same filesystem).
    pub records: PathBuf,
    /// The `saturn` binary (the CLI, and `saturn synth-job` in job files).
    pub saturn: PathBuf,
    agent_bin: PathBuf,
    dir: Option<tempfile::TempDir>,
}

/// What the agents in a [`NetnsCluster`] listen on for the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `--listen /ip4/<its bridge address>/tcp/7946`.
    OwnAddress,
    /// No `--listen`: the default `/ip4/0.0.0.0/tcp/7946`, as a user starts an agent.
    Default,
}

impl NetnsCluster {
    /// Builds the topology and starts one agent per namespace, as `setup` says, each
    /// listening on its own bridge address. Every agent joins the first; the first
    /// joins the second.
    pub fn start(setup: &Setup) -> Result<Self> {
        Self::start_with(setup, Listen::OwnAddress)
    }

    /// [`start`](Self::start), with the agents listening as `listen` says.
    pub fn start_with(setup: &Setup, listen: Listen) -> Result<Self> {
        let prefix = format!(
            "{PREFIX}{}-{}-",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        remove_stale(&prefix);
        let bin_dir = sibling_bin_dir()?;
        let agent_bin = bin_dir.join("saturn-agent");
        if !agent_bin.exists() {
            bail!(
                "{} not found: build it first (cargo build -p saturn-agent --bins)",
                agent_bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("saturn-partition-")
            .tempdir()?;
        let links = Topology::create(&prefix, setup.agents)?;
        // The mesh listens on the bridge, not loopback: the agents need a cluster key.
        let key_file = dir.path().join("cluster.key");
        saturn_agent::mesh::write_cluster_key(&key_file, &saturn_agent::mesh::generate_cluster_key())?;
        let mut cluster = NetnsCluster {
            agents: Vec::new(),
            records: dir.path().join("records.jsonl"),
            saturn: bin_dir.join("saturn"),
            agent_bin,
            dir: Some(dir),
            links,
        };
        for i in 0..setup.agents {
            let name = format!("agent-{i}");
            let data_dir = cluster.dir().join(&name);
            let mut args: Vec<String> = vec![
                "--name".into(),
                name.clone(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--api".into(),
                format!("127.0.0.1:{API_PORT}"),
                "--gpus".into(),
                setup.gpus.clone(),
                "--bootstrap-expect".into(),
                setup.bootstrap_expect.to_string(),
                "--no-mdns".into(),
                "--cluster-key-file".into(),
                key_file.display().to_string(),
            ];
            if listen == Listen::OwnAddress {
                args.extend(["--listen".into(), format!("/ip4/{}/tcp/{MESH_PORT}", address(i))]);
            }
            if setup.agents > 1 {
                args.extend([
                    "--join".into(),
                    format!("/ip4/{}/tcp/{MESH_PORT}", address(usize::from(i == 0))),
                ]);
            }
            args.extend(setup.extra_args.iter().cloned());
            let log_path = cluster.dir().join(format!("{name}.log"));
            let netns = cluster.links.netns(i).to_string();
            cluster.agents.push(NsAgent {
                name,
                netns,
                ip: address(i),
                data_dir,
                log_path,
                args,
                child: None,
            });
        }
        for i in 0..cluster.agents.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let records = self.records.display().to_string();
        let agent = &mut self.agents[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&agent.log_path)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &agent.netns])
            .arg(&self.agent_bin)
            .args(&agent.args)
            .env("SATURN_SYNTH_RECORD_FILE", records)
            // Every namespace's API is on port 7070: keep their token pointers apart.
            .env("SATURN_RUNTIME_DIR", agent.data_dir.join("run"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} in {}", agent.name, agent.netns))?;
        agent.child = Some(child);
        Ok(())
    }

    /// Agent `i`'s API token file (generated at its first start in its data dir).
    pub fn token_file(&self, i: usize) -> PathBuf {
        self.agents[i].data_dir.join("api-token")
    }

    /// The test's temporary directory (data dirs, logs, records, job files).
    pub fn dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    /// The index of the agent called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.name == name)
    }

    /// SIGSTOP agent `i` (a long GC pause, a frozen VM); its jobs keep running.
    pub fn pause(&self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// SIGCONT agent `i`.
    pub fn resume(&self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGCONT)
    }

    fn signal(&self, i: usize, signal: Signal) -> Result<()> {
        let pid = self.agents[i].pid().context("agent is not running")?;
        kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("sending {signal} to {}", self.agents[i].name))
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
        pids_in(&self.agents[i].netns)
            .into_iter()
            .filter(|p| Some(*p) != agent)
            .collect()
    }

    /// The whole log of agent `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.agents[i].log_path).unwrap_or_default()
    }

    /// The last lines of every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |text: String| {
            let start = text.len().saturating_sub(3000);
            let start = (start..text.len())
                .find(|s| text.is_char_boundary(*s))
                .unwrap_or(text.len());
            text[start..].to_string()
        };
        let each = (0..self.agents.len())
            .map(|i| format!("--- {} ---\n{}", self.agents[i].name, tail(self.log(i))));
        each.collect::<Vec<_>>().join("\n")
    }

    /// Stops every agent: SIGCONT (a paused one could not exit), SIGTERM, SIGKILL after
    /// a few seconds.
    fn stop_agents(&mut self) {
        for pid in self.agents.iter().filter_map(NsAgent::pid) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for agent in &mut self.agents {
            let Some(mut child) = agent.child.take() else {
                continue;
            };
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        self.stop_agents();
        // Job processes go before the directory they write in; the namespaces go when
        // `links` is dropped, right after this.
        self.links.kill_everything();
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                eprintln!(
                    "partition test failed; agent logs and records kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}
