//! Scenarios: an agent with another cluster key can neither join nor read; a mesh beyond
//! loopback needs a key (or the explicit opt-out) and `--dev` stays on loopback; secret
//! files others can read, and short tokens, are refused; the API needs the token generated
//! at first start, on loopback too, and the local CLI finds it; the dashboard shell loads
//! without it and its login sets a strict cookie; bad job files and bodies are refused
//! with a message and store nothing; garbage on the mesh port does not hurt an agent.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use saturn_agent::local_cluster::{free_port, sibling_bin_dir};
use saturn_tests::{eventually, Harness, Setup};

fn key_file(dir: &std::path::Path, name: &str, byte: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).expect("write key");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_without_the_cluster_key_cannot_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = key_file(dir.path(), "ours.key", 0xab);
    let theirs = key_file(dir.path(), "theirs.key", 0xcd);
    let mut setup = Setup::new(3);
    setup.extra_args.extend(["--cluster-key-file".to_string(), ours.display().to_string()]);
    let harness = Harness::start(&setup).expect("agents start");
    let formed = harness
        .wait_status(0, "3 members", Duration::from_secs(40), |s| s.leader.is_some() && s.agents.len() == 3)
        .await;
    if let Err(err) = formed {
        panic!("{err:#}\n{}", harness.logs());
    }
    harness.submit(0, &saturn_tests::synth_sweep(&harness.saturn, "secret", 1, 100, "")).await.expect("submit");

    // The stranger joins through a member's address with the wrong key.
    let api = free_port().expect("port");
    let mesh = free_port().expect("port");
    let mut stranger = Command::new(sibling_bin_dir().expect("bin dir").join("saturn-agent"))
        .args(["--name", "stranger", "--data-dir"])
        .arg(dir.path().join("stranger"))
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{mesh}"), "--api", &format!("127.0.0.1:{api}")])
        .args(["--join", &harness.cluster.agents[0].mesh_addr(), "--no-mdns", "--gpus", "sim:1xSIM-24GB"])
        .args(["--bootstrap-expect", "3", "--heartbeat-ms", "200"])
        .arg("--cluster-key-file")
        .arg(&theirs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stranger starts");
    // Its own token, generated in its data dir at first start.
    let stranger_token = dir.path().join("stranger").join("api-token");
    let token = eventually("the stranger's token", Duration::from_secs(20), || async {
        Ok(std::fs::read_to_string(&stranger_token).ok().map(|t| t.trim().to_string()))
    })
    .await
    .expect("stranger token");
    let stranger_api =
        saturn_agent::cli::client::ApiClient::new(&format!("http://127.0.0.1:{api}"), Some(token)).expect("client");
    // Give it every chance to connect: several heartbeat and rejoin rounds.
    let seen = eventually("the stranger's API answers", Duration::from_secs(20), || async {
        Ok(stranger_api.get_json::<saturn_agent::views::StatusView>("/v1/status").await.ok())
    })
    .await
    .expect("stranger API");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status: saturn_agent::views::StatusView = stranger_api.get_json("/v1/status").await.expect("status");
    let jobs: saturn_agent::views::JobsView = stranger_api.get_json("/v1/jobs").await.expect("jobs");
    let members = harness.status(0).await.expect("status");
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(seen.leader.is_none() && status.leader.is_none(), "the stranger must not see a leader: {status:?}");
    assert!(jobs.jobs.is_empty(), "the stranger must not read any job");
    assert!(!members.agents.iter().any(|a| a.name == "stranger"), "the stranger must not be a member");
}

/// `saturn-agent ARGS` run to its exit (for refusals): status, stderr.
fn refused(args: &[String]) -> (Option<i32>, String) {
    let agent = sibling_bin_dir().expect("bin dir").join("saturn-agent");
    let out = Command::new(agent).args(args).output().expect("saturn-agent runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// An agent with no GPUs and no mDNS, its API and mesh on free loopback ports.
fn agent_args(dir: &Path, name: &str, api: u16) -> Vec<String> {
    vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        dir.join(name).display().to_string(),
        "--listen".into(),
        format!("/ip4/127.0.0.1/tcp/{}", free_port().expect("port")),
        "--api".into(),
        format!("127.0.0.1:{api}"),
        "--no-mdns".into(),
        "--gpus".into(),
        "none".into(),
    ]
}

/// Replaces the value after `flag` in `args`.
fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match args.iter().position(|a| a == flag) {
        Some(at) => args[at + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
    args
}

struct Agent(std::process::Child);

impl Drop for Agent {
    /// SIGTERM (a `--dev` agent removes its temporary data dir), SIGKILL after 10 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String], cwd: &Path, env: &[(&str, &Path)]) -> Agent {
    let mut command = Command::new(sibling_bin_dir().expect("bin dir").join("saturn-agent"));
    command.args(args).current_dir(cwd).stdout(Stdio::null()).stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    Agent(command.spawn().expect("saturn-agent starts"))
}

/// The HTTP status of `GET url` with an optional bearer token, once the API answers.
async fn status_code(url: &str, token: Option<&str>) -> u16 {
    let http = reqwest::Client::new();
    eventually(&format!("{url} answers"), Duration::from_secs(20), || async {
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Ok(request.send().await.ok().map(|r| r.status().as_u16()))
    })
    .await
    .expect("the API answers")
}

#[test]
fn a_mesh_beyond_loopback_needs_a_cluster_key_unless_insecure_open_mesh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = with(agent_args(dir.path(), "open", free_port().expect("port")), "--listen", "/ip4/0.0.0.0/tcp/0");
    let (code, message) = refused(&open);
    assert_eq!(code, Some(1), "refused: {message}");
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(message.contains("saturn-agent --gen-cluster-key"), "says how to make a key: {message}");

    // --dev moves the default mesh to loopback and refuses an address beyond it.
    let (code, message) = refused(&["--dev".into(), "--listen".into(), "/ip4/0.0.0.0/tcp/0".into()]);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("--dev listens on loopback only"), "{message}");
    let (code, message) = refused(&["--dev".into(), "--api".into(), "0.0.0.0:0".into()]);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("--dev listens on loopback only"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_out_and_dev_start_and_dev_listens_on_loopback_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port().expect("port");
    let mesh = free_port().expect("port");
    let open = with(agent_args(dir.path(), "open", api), "--listen", &format!("/ip4/0.0.0.0/tcp/{mesh}"));
    let mut opted_out = open.clone();
    opted_out.push("--insecure-open-mesh".into());
    let _open = spawn(&opted_out, dir.path(), &[]);
    assert_eq!(status_code(&format!("http://127.0.0.1:{api}/v1/status"), None).await, 401, "the opt-out starts");
    drop(_open);

    // --dev: a temporary data dir, so its token is found through the pointer it advertises.
    let run = dir.path().join("run");
    let dev_api = free_port().expect("port");
    let dev_mesh = free_port().expect("port");
    let dev_args = ["--dev".into(), "--api".into(), format!("127.0.0.1:{dev_api}"), "--listen".into(), format!("/ip4/127.0.0.1/tcp/{dev_mesh}")];
    let _dev = spawn(&dev_args, dir.path(), &[("SATURN_RUNTIME_DIR", &run)]);
    let token = eventually("the dev agent's token pointer", Duration::from_secs(20), || async {
        let path = saturn_agent::api::token_advert::lookup(&run, dev_api);
        Ok(path.and_then(|p| std::fs::read_to_string(p).ok()).map(|t| t.trim().to_string()))
    })
    .await
    .expect("pointer");
    let client = saturn_agent::cli::client::ApiClient::new(&format!("http://127.0.0.1:{dev_api}"), Some(token)).expect("client");
    let status = eventually("the dev agent lists itself", Duration::from_secs(30), || async {
        let status: saturn_agent::views::StatusView = client.get_json("/v1/status").await?;
        Ok((!status.agents.is_empty()).then_some(status))
    })
    .await
    .expect("dev status");
    let addrs = &status.agents[0].addrs;
    assert!(!addrs.is_empty() && addrs.iter().all(|a| a.starts_with("/ip4/127.")), "dev mesh on loopback only: {addrs:?}");
}

#[test]
fn key_and_token_files_others_can_read_and_short_tokens_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_file(dir.path(), "cluster.key", 0xab);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let args = with(agent_args(dir.path(), "a", free_port().expect("port")), "--cluster-key-file", &key.display().to_string());
    let (code, message) = refused(&args);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("--cluster-key-file") && message.contains("chmod 600"), "{message}");

    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let args = with(agent_args(dir.path(), "b", free_port().expect("port")), "--api-token-file", &token.display().to_string());
    let (code, message) = refused(&args);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("--api-token-file") && message.contains("chmod 600"), "{message}");

    std::fs::write(&token, "s3cret-token\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, message) = refused(&args);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("at least 16"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_generated_token_on_loopback_too_and_the_local_cli_finds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let api = free_port().expect("port");
    // No --data-dir: the default ./saturn-data, in the directory the agent starts from.
    let mut args = agent_args(dir.path(), "local", api);
    args.drain(2..4);
    let _agent = spawn(&args, dir.path(), &[("SATURN_RUNTIME_DIR", &run)]);
    let url = format!("http://127.0.0.1:{api}");
    assert_eq!(status_code(&format!("{url}/v1/status"), None).await, 401, "no token, no answer, on loopback too");
    assert_eq!(status_code(&format!("{url}/v1/jobs"), Some("0123456789abcdef-wrong")).await, 401);

    let token_file = dir.path().join("saturn-data").join("api-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_file).expect("generated").permissions());
    assert_eq!(mode & 0o777, 0o600, "generated readable by the agent's user only");
    let token = std::fs::read_to_string(&token_file).expect("token").trim().to_string();
    assert!(token.len() >= 32, "a long random token: {} bytes", token.len());
    assert_eq!(status_code(&format!("{url}/v1/status"), Some(&token)).await, 200);
    assert_eq!(status_code(&format!("{url}/metrics"), None).await, 401, "Prometheus needs it too");

    // The CLI of the agent's user: through the pointer, from anywhere.
    let saturn = sibling_bin_dir().expect("bin dir").join("saturn");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let cli = |runtime: &Path, cwd: &Path| {
        Command::new(&saturn)
            .args(["--addr", &url, "status", "--json"])
            .env("SATURN_RUNTIME_DIR", runtime)
            .env_remove("SATURN_TOKEN")
            .env_remove("SATURN_TOKEN_FILE")
            .current_dir(cwd)
            .output()
            .expect("saturn runs")
    };
    let found = cli(&run, elsewhere.path());
    assert!(found.status.success(), "the pointer leads to the token: {}", String::from_utf8_lossy(&found.stderr));
    // Without the pointer, ./saturn-data/api-token of the directory it runs in.
    let nowhere = dir.path().join("no-run");
    let in_place = cli(&nowhere, dir.path());
    assert!(in_place.status.success(), "./saturn-data/api-token: {}", String::from_utf8_lossy(&in_place.stderr));
    // Neither: refused, with a message that says what to do.
    let lost = cli(&nowhere, elsewhere.path());
    let message = String::from_utf8_lossy(&lost.stderr);
    assert!(!lost.status.success() && message.contains("--token-file"), "{message}");

    // The dashboard's page shell and scripts load without the token, with no data in them.
    let http = reqwest::Client::new();
    let page = http.get(format!("{url}/")).send().await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.expect("html").contains("id=\"auth\""), "the shell holds the token prompt");
    let script = http.get(format!("{url}/assets/app.js")).send().await.expect("script");
    assert_eq!(script.status().as_u16(), 200);
    // The login checks the token before it sets the HttpOnly, SameSite=Strict cookie.
    let wrong = http.post(format!("{url}/v1/login")).json(&serde_json::json!({"token": "not-the-token-at-all"})).send().await.expect("login");
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = http.post(format!("{url}/v1/login")).json(&serde_json::json!({"token": token})).send().await.expect("login");
    assert_eq!(right.status().as_u16(), 204);
    let cookie = right.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value");
    let with_cookie = http.get(format!("{url}/v1/jobs")).header("cookie", pair).send().await.expect("jobs");
    assert_eq!(with_cookie.status().as_u16(), 200, "the cookie authorises data requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_files_are_refused_whole_and_garbage_on_the_mesh_is_harmless() {
    let harness = Harness::start(&Setup::new(1)).expect("agent starts");
    harness
        .wait_status(0, "a leader", Duration::from_secs(30), |s| s.leader.is_some())
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", harness.logs()));
    let bad_toml = "[[job]]\nname = \"ok\"\ncommand = [\"true\"]\nsteps = 10\n\n[[job]]\nname = \"bad\"\ncommand = [\"true\"]\nsteps = 10\ngpus = [0, 8]\n";
    let err = harness.submit(0, bad_toml).await.expect_err("refused");
    let message = format!("{err:#}");
    assert!(message.contains("line 10") && message.contains("gpus"), "names line and field: {message}");
    assert!(message.contains("422"), "a 4xx: {message}");
    let client = harness.client(0);
    let bad_json = client
        .post::<serde_json::Value>("/v1/jobs", "application/json", "{\"job\": [{\"name\": 5}]}".into())
        .await
        .expect_err("refused");
    assert!(format!("{bad_json:#}").contains("name"), "names the field: {bad_json:#}");
    assert!(harness.jobs(0).await.expect("jobs").is_empty(), "nothing of a bad file is stored");

    // Garbage, then a forged huge length prefix, on the mesh port.
    for payload in [vec![0x13u8; 4096], vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]] {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", harness.cluster.agents[0].mesh_port)) {
            let _ = stream.write_all(&payload);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let good = "[[job]]\nname = \"fine\"\ncommand = [\"true\"]\nsteps = 1\n";
    let submitted = harness.submit(0, good).await.expect("the agent still works");
    assert_eq!(submitted.jobs.len(), 1);
}
