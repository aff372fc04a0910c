//! Scenarios: the deploy scripts, run the way an operator runs them, with the binaries
//! this workspace built.
//!
//! - `deploy/local-cluster.sh 3` brings up a mesh that `saturn status` reports on every
//!   agent's port; `local-cluster.sh status` lists the agents; `local-cluster.sh stop`
//!   ends every one of them.
//! - `deploy/slurm/saturn.sbatch`, under a fake `srun`/`scontrol` that starts each
//!   "node" as a local process, starts real agents with the command lines it builds
//!   (per-allocation mesh key and API token included), runs a job file to completion
//!   and stops the agents.
//! - `deploy/systemd/agent.toml`, the file the systemd unit starts the agent with, is
//!   accepted (flags override it), and the unit's stop (SIGTERM) ends it with status 0.
//! - `deploy/test/selftest.sh` (stub binaries: every flag, port and exit path of both
//!   scripts) passes.
//!
//! Ports are free blocks picked per test, so these run beside other tests.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use saturn_agent::cli::client::ApiClient;
use saturn_agent::local_cluster::sibling_bin_dir;
use saturn_agent::views::StatusView;
use saturn_tests::{eventually, free_port_block};

const JOB_FILE: &str = r#"
[[job]]
name = "deploy-test"
command = ["sh", "-c", "echo SATURN step=5"]
steps = 5
techniques = ["ddp"]
gpus = [1, 1]

[job.profile]
ddp = { 1 = 0.01 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_sh_brings_up_a_mesh_that_saturn_status_reports_and_stops_it() {
    let bin = sibling_bin_dir().expect("binary dir");
    let dir = tempfile::Builder::new().prefix("saturn-deploy-local-").tempdir().expect("temp dir");
    let base = dir.path().join("local");
    // One block: three mesh ports, then three API ports.
    let ports = free_port_block(6).expect("free ports");
    let (mesh, api) = (ports, ports + 3);
    let env = [
        ("SATURN_BIN_DIR", bin.display().to_string()),
        ("SATURN_MESH_PORT", mesh.to_string()),
        ("SATURN_API_PORT", api.to_string()),
    ];
    let local_cluster = |args: Vec<String>| script(repo().join("deploy/local-cluster.sh"), args, &env, dir.path());
    // The script's agents leave its process group (setsid): stop them through it.
    let _stop = Finally(Some(|| {
        let _ = std::process::Command::new(repo().join("deploy/local-cluster.sh"))
            .args(["stop", "--dir", &base.display().to_string()])
            .envs(env.clone())
            .output();
    }));

    let started =
        local_cluster(vec!["3".into(), "--dir".into(), base.display().to_string(), "--timeout".into(), "50".into()])
            .run(Duration::from_secs(58))
            .await
            .expect("local-cluster.sh 3 succeeds");
    assert!(stdout(&started).contains("Saturn: 3 agents up"), "{}", stdout(&started));

    let saturn = bin.join("saturn");
    for port in api..api + 3 {
        let url = format!("http://127.0.0.1:{port}");
        let status: StatusView =
            eventually(&format!("saturn status on port {port}"), Duration::from_secs(20), || async {
                let out =
                    tokio::process::Command::new(&saturn).args(["--addr", &url, "status", "--json"]).arg("--token-file").arg(base.join("api-token")).output().await?;
                let status: StatusView = serde_json::from_slice(&out.stdout).with_context(|| stdout(&out))?;
                // Members are listed as soon as they join; their GPUs once the leader
                // has recorded them (AgentUp), a moment later.
                let ready = status.agents.iter().filter(|a| a.healthy && a.gpus.len() == 4).count() == 3;
                Ok((ready && status.leader.is_some()).then_some(status))
            })
            .await
            .expect("every agent reports the mesh");
        let names: Vec<&str> = status.agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["node-a", "node-b", "node-c"], "agents as named by the script");
        assert!(status.agents.iter().all(|a| a.gpus.len() == 4), "4 simulated GPUs each: {status:?}");
    }
    let listed = local_cluster(vec!["status".into(), "--dir".into(), base.display().to_string()])
        .run(Duration::from_secs(30))
        .await
        .expect("local-cluster.sh status succeeds");
    assert_eq!(stdout(&listed).matches(" running").count(), 3, "{}", stdout(&listed));

    let pids = std::fs::read_to_string(base.join("agents.pids")).expect("the script records its agents");
    let pids: Vec<u32> = pids.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert_eq!(pids.len(), 3, "three agents recorded");
    let stopped = local_cluster(vec!["stop".into(), "--dir".into(), base.display().to_string()])
        .run(Duration::from_secs(58))
        .await
        .expect("local-cluster.sh stop succeeds");
    let alive: Vec<u32> = pids.into_iter().filter(|pid| is_agent(*pid)).collect();
    assert!(alive.is_empty(), "agents {alive:?} still run after stop:\n{}", stdout(&stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturn_sbatch_runs_a_job_file_on_real_agents_under_a_fake_srun() {
    let bin = sibling_bin_dir().expect("binary dir");
    let dir = tempfile::Builder::new().prefix("saturn-deploy-sbatch-").tempdir().expect("temp dir");
    std::fs::write(dir.path().join("jobs.toml"), JOB_FILE).expect("job file");
    let ports = free_port_block(6).expect("free ports");
    let scratch = dir.path().join("scratch");
    let path =
        format!("{}:{}", repo().join("deploy/test/fake-slurm").display(), std::env::var("PATH").unwrap_or_default());
    let env = [
        ("PATH", path),
        ("SLURM_JOB_NUM_NODES", "3".into()),
        ("SLURM_JOB_NODELIST", "node[0-2]".into()),
        ("SLURM_JOB_ID", "4242".into()),
        ("SLURM_SUBMIT_DIR", dir.path().display().to_string()),
        ("SATURN_LOCAL_TEST", "1".into()),
        ("SATURN_SCRATCH", scratch.display().to_string()),
        ("SATURN_GPUS", "sim:1xSIM-24GB".into()),
        ("SATURN_BIN_DIR", bin.display().to_string()),
        ("SATURN_MESH_PORT", ports.to_string()),
        ("SATURN_API_PORT", (ports + 3).to_string()),
        ("SATURN_READY_TIMEOUT_S", "40".into()),
        ("SATURN_STOP_TIMEOUT_S", "15".into()),
    ];
    let args = vec![repo().join("deploy/slurm/saturn.sbatch").display().to_string(), "jobs.toml".into()];
    let out = script(PathBuf::from("bash"), args, &env, dir.path())
        .run(Duration::from_secs(58))
        .await
        .expect("saturn.sbatch succeeds");
    let (stdout, stderr) = (stdout(&out), String::from_utf8_lossy(&out.stderr).into_owned());

    assert!(stderr.contains("mesh ready: 3 agents"), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.contains("deploy-test") && l.contains("completed")),
        "the job completes:\n{stdout}\n{stderr}"
    );
    for node in ["node0", "node1", "node2"] {
        assert!(stderr.contains(&format!("saturn-node: {node} ")), "{node} started: {stderr}");
        let secrets = scratch.join("saturn-4242").join(node).join("secrets");
        for file in ["cluster.key", "api.token"] {
            let mode = std::fs::metadata(secrets.join(file))
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
            assert_eq!(mode.ok(), Some(0o600), "{node}'s {file} exists, readable by the user only");
        }
    }
    let left = agents_under(&scratch);
    for pid in &left {
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "agents {left:?} outlive the batch script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_selftest_passes_with_stub_binaries() {
    let dir = tempfile::Builder::new().prefix("saturn-deploy-selftest-").tempdir().expect("temp dir");
    // Stub agents bind nothing; distinct bases still keep the flags they are checked on apart.
    let ports = free_port_block(16).expect("free ports");
    let env = [
        ("TMPDIR", dir.path().display().to_string()),
        ("SATURN_SELFTEST_MESH_PORT", ports.to_string()),
        ("SATURN_SELFTEST_API_PORT", (ports + 4).to_string()),
        ("SATURN_SELFTEST_SLURM_MESH_PORT", (ports + 8).to_string()),
        ("SATURN_SELFTEST_SLURM_API_PORT", (ports + 12).to_string()),
    ];
    let out = script(repo().join("deploy/test/selftest.sh"), vec![], &env, dir.path())
        .run(Duration::from_secs(58))
        .await
        .expect("selftest.sh passes");
    let report = stdout(&out);
    assert!(report.contains("all checks passed") && !report.contains("FAIL"), "{report}");
    assert!(report.lines().filter(|l| l.starts_with("ok ")).count() >= 25, "every check ran:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_config_starts_an_agent_that_stops_cleanly_on_sigterm() {
    let bin = sibling_bin_dir().expect("binary dir");
    let dir = tempfile::Builder::new().prefix("saturn-deploy-systemd-").tempdir().expect("temp dir");
    let ports = free_port_block(2).expect("free ports");
    // The shipped file as systemd's ExecStart reads it; flags move it to test ports and a
    // temporary data dir, as an operator's drop-in would.
    // The shipped file names /etc/saturn/cluster.key; the drop-in points at a test key.
    let key = dir.path().join("cluster.key");
    saturn_agent::mesh::write_cluster_key(&key, &saturn_agent::mesh::generate_cluster_key()).expect("key");
    let mut agent = tokio::process::Command::new(bin.join("saturn-agent"))
        .arg("--config")
        .arg(repo().join("deploy/systemd/agent.toml"))
        .arg("--cluster-key-file")
        .arg(&key)
        .args(["--name", "systemd-test", "--bootstrap-expect", "1", "--no-mdns", "--gpus", "sim:2xSIM-24GB"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{ports}"), "--api", &format!("127.0.0.1:{}", ports + 1)])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("saturn-agent starts");
    // No api_token_file in the shipped file: the agent makes DATA_DIR/api-token at first start.
    let token_file = dir.path().join("data").join("api-token");
    // Leading comes first; the agent's own record (with its GPUs) is committed just after.
    let up = eventually("the agent to lead its one-agent mesh and list its GPUs", Duration::from_secs(30), || async {
        let Ok(token) = std::fs::read_to_string(&token_file) else { return Ok(None) };
        let client = ApiClient::new(&format!("http://127.0.0.1:{}", ports + 1), Some(token.trim().to_string()))?;
        let status: StatusView = client.get_json("/v1/status").await?;
        let listed = status.agents.first().is_some_and(|a| !a.gpus.is_empty());
        Ok((status.leader.as_deref() == Some("systemd-test") && listed).then_some(status))
    })
    .await;
    let pid = agent.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw).expect("a running agent");
    // systemd's stop: SIGTERM to the main process, then wait.
    nix::sys::signal::kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), agent.wait()).await;
    let stderr = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    let status = up.unwrap_or_else(|err| panic!("{err:#}\n{stderr}"));
    assert_eq!(status.agents[0].gpus.len(), 2, "flags override the file's gpus = \"auto\"");
    let exit = exit.expect("the agent stops within 30 s of SIGTERM").expect("exit status");
    assert_eq!(exit.code(), Some(0), "a clean stop exits 0:\n{stderr}");
}

/// The workspace root (the deploy scripts are found from it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A script run in its own process group, so everything it started can be ended with it.
struct Script {
    command: tokio::process::Command,
}

fn script(program: PathBuf, args: Vec<String>, env: &[(&str, String)], dir: &Path) -> Script {
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).current_dir(dir).process_group(0);
    Script { command }
}

impl Script {
    /// Runs to the end; fails on a non-zero exit, or after `limit` (then the whole
    /// process group is killed).
    async fn run(mut self, limit: Duration) -> Result<Output> {
        let child = self.command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
        let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        // Ends the whole group if this does not return normally (a timeout, or the
        // caller's future dropped); on a normal return the caller checks what is left.
        let mut kill = Finally(Some(move || {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
        }));
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(out) => out?,
            Err(_) => bail!("still running after {limit:?}"),
        };
        kill.0 = None;
        if !out.status.success() {
            bail!("exited with {}:\n{}\n{}", out.status, stdout(&out), String::from_utf8_lossy(&out.stderr));
        }
        Ok(out)
    }
}

/// Runs a closure when dropped (cleanup that must happen on a failed assertion too);
/// `None` disarms it.
struct Finally<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Finally<F> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.0.take() {
            cleanup()
        }
    }
}

/// Whether `pid` is a live `saturn-agent` (not a zombie, not a reused pid).
fn is_agent(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("saturn-agent"))
}

/// Live `saturn-agent` processes whose command line names a path under `dir`.
fn agents_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("saturn-agent") && cmdline.contains(&needle)
        })
        .collect()
}
