//! A mesh of real `saturn-agent` processes on 127.0.0.1, for `saturn demo`, the
//! end-to-end tests and benchmarks. Each agent gets its own data dir, mesh port and API
//! port; every process is stopped when the [`LocalCluster`] is dropped. They share one
//! API token (`BASE/api-token`, 0600), which [`LocalCluster::client`] sends.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One agent of a [`LocalCluster`].
#[derive(Debug)]
pub struct LocalAgent {
    /// `--name`.
    pub name: String,
    /// Mesh TCP port on 127.0.0.1.
    pub mesh_port: u16,
    /// API port on 127.0.0.1.
    pub api_port: u16,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Where its stdout/stderr go.
    pub log_path: PathBuf,
    /// Its full argument list (to restart it identically).
    pub args: Vec<String>,
    child: Option<Child>,
}

impl LocalAgent {
    /// `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// `/ip4/127.0.0.1/tcp/PORT`.
    pub fn mesh_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.mesh_port)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// How to start a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Directory holding `saturn-agent`.
    pub bin_dir: PathBuf,
    /// Directory for data dirs and logs.
    pub base_dir: PathBuf,
    /// Agent names.
    pub names: Vec<String>,
    /// `--gpus` of every agent.
    pub gpus: String,
    /// `--bootstrap-expect` of the first this-many agents; the others get only `--join`
    /// and are added as learners.
    pub bootstrap_expect: usize,
    /// Extra flags for every agent.
    pub extra_args: Vec<String>,
    /// Extra environment for every agent.
    pub env: Vec<(String, String)>,
}

/// Real agent processes on loopback; stopped on drop.
#[derive(Debug)]
pub struct LocalCluster {
    /// The agents, in start order.
    pub agents: Vec<LocalAgent>,
    /// The API token of every agent.
    pub token: String,
    /// The file holding it (`--api-token-file`).
    pub token_file: PathBuf,
    /// The agents' `SATURN_RUNTIME_DIR`, where each advertises its token file to the CLI.
    pub runtime_dir: PathBuf,
    bin: PathBuf,
    env: Vec<(String, String)>,
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The directory of the running executable (where cargo puts `saturn-agent` too).
pub fn sibling_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let dir = exe.parent().context("the executable has no directory")?;
    // Test binaries live in target/<profile>/deps and examples in
    // target/<profile>/examples; the agent binary is one level up from either.
    if dir.ends_with("deps") || dir.ends_with("examples") {
        if let Some(up) = dir.parent() {
            return Ok(up.to_path_buf());
        }
    }
    Ok(dir.to_path_buf())
}

impl LocalCluster {
    /// Starts every agent (the first `bootstrap_expect` with `--bootstrap-expect`, all
    /// joining the first).
    pub fn start(options: &ClusterOptions) -> Result<Self> {
        let mut cluster = Self::prepare(options)?;
        for i in 0..cluster.agents.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Like [`start`](Self::start), but starts no agent: the caller starts each with
    /// [`spawn`](Self::spawn), in the order it wants.
    pub fn prepare(options: &ClusterOptions) -> Result<Self> {
        let bin = options.bin_dir.join("saturn-agent");
        if !bin.exists() {
            bail!("{} not found: build it first (cargo build --release)", bin.display());
        }
        std::fs::create_dir_all(&options.base_dir)
            .with_context(|| format!("cannot create {}", options.base_dir.display()))?;
        let token_file = options.base_dir.join("api-token");
        let token = write_token(&token_file)?;
        let mut env = options.env.clone();
        // Token pointers for the CLI go to this cluster's own directory, not the user's.
        let runtime_dir = options.base_dir.join("run");
        env.push(("SATURN_RUNTIME_DIR".into(), runtime_dir.display().to_string()));
        let mut cluster =
            LocalCluster { agents: Vec::new(), token, token_file: token_file.clone(), runtime_dir, bin, env };
        let mut first_mesh: Option<String> = None;
        // Each port is free when asked for, but nothing stops the kernel from handing the
        // same one out twice in a row: an agent would then fail to start ("cannot listen").
        let mut taken = std::collections::BTreeSet::new();
        let mut unique_port = || -> Result<u16> {
            loop {
                let port = free_port()?;
                if taken.insert(port) {
                    return Ok(port);
                }
            }
        };
        for name in &options.names {
            let mesh_port = unique_port()?;
            let api_port = unique_port()?;
            let data_dir = options.base_dir.join(name);
            let mut args = vec![
                "--name".to_string(),
                name.clone(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen".into(),
                format!("/ip4/127.0.0.1/tcp/{mesh_port}"),
                "--api".into(),
                format!("127.0.0.1:{api_port}"),
                "--gpus".into(),
                options.gpus.clone(),
                "--no-mdns".into(),
                "--api-token-file".into(),
                token_file.display().to_string(),
            ];
            // The first agents form the cluster; the others only join it (an agent given
            // --join alone never forms one).
            if cluster.agents.len() < options.bootstrap_expect {
                args.extend(["--bootstrap-expect".to_string(), options.bootstrap_expect.to_string()]);
            }
            if let Some(join) = &first_mesh {
                args.push("--join".into());
                args.push(join.clone());
            }
            args.extend(options.extra_args.iter().cloned());
            let agent = LocalAgent {
                name: name.clone(),
                mesh_port,
                api_port,
                log_path: options.base_dir.join(format!("{name}.log")),
                data_dir,
                args,
                child: None,
            };
            first_mesh.get_or_insert_with(|| agent.mesh_addr());
            cluster.agents.push(agent);
        }
        // The first agent joins the second, so that whichever starts first finds the other.
        if cluster.agents.len() > 1 {
            let second = cluster.agents[1].mesh_addr();
            cluster.agents[0].args.extend(["--join".to_string(), second]);
        }
        Ok(cluster)
    }

    /// Starts agent `i` (again, after it exited or was killed).
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let agent = &mut self.agents[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&agent.log_path)
            .with_context(|| format!("cannot open {}", agent.log_path.display()))?;
        let mut command = Command::new(&self.bin);
        command.args(&agent.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| format!("cannot start {}", self.bin.display()))?;
        agent.child = Some(child);
        Ok(())
    }

    /// Agent `i`'s exit status once it has exited on its own (`None` while it runs or
    /// when it was never started).
    pub fn exit_status(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.agents[i].child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// An API client for agent `i`, with the cluster's token.
    pub fn client(&self, i: usize) -> Result<crate::cli::client::ApiClient> {
        crate::cli::client::ApiClient::new(&self.agents[i].api_url(), Some(self.token.clone()))
    }

    /// Sends `signal` to agent `i` (SIGKILL: a crash; SIGSTOP/SIGCONT: a pause).
    pub fn signal(&mut self, i: usize, signal: Signal) -> Result<()> {
        let pid = self.agents[i].pid().context("agent is not running")?;
        kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("sending {signal} to {}", self.agents[i].name))
    }

    /// `kill -9` of agent `i`, waiting until it is gone.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.agents[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Restarts agent `i` with the same arguments (same data dir, ports, identity).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// SIGTERM agent `i` and wait (up to `timeout`) for it to exit; SIGKILL after.
    pub fn stop(&mut self, i: usize, timeout: Duration) {
        let Some(mut child) = self.agents[i].child.take() else { return };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last `bytes` of agent `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize, bytes: usize) -> String {
        tail_of(&self.agents[i].log_path, bytes)
    }
}

/// The cluster's token at `path`: made there as an agent makes its own (owner only) or,
/// for a cluster restarted on the same directory, the one already there.
fn write_token(path: &Path) -> Result<String> {
    let token = crate::config::secrets::read_or_generate_token(path, true)?;
    Ok(token.expose().to_string())
}

fn tail_of(path: &Path, bytes: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(bytes);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for agent in &self.agents {
            if let Some(pid) = agent.pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for i in 0..self.agents.len() {
            self.stop(i, Duration::from_secs(10));
        }
    }
}
