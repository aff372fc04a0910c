//! Scenarios: an agent with another cluster key can neither join nor read; the API off
//! loopback needs the bearer token; bad job files and bodies are refused with a message
//! and store nothing; garbage on the mesh port does not hurt an agent.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use saturn_agent::local_cluster::{free_port, sibling_bin_dir};
use saturn_tests::{eventually, Harness, Setup};

fn key_file(dir: &std::path::Path, name: &str, byte: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).expect("write key");
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
    let stranger_api = saturn_agent::cli::client::ApiClient::new(&format!("http://127.0.0.1:{api}"), None).expect("client");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_off_loopback_needs_the_token_and_refuses_to_start_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = sibling_bin_dir().expect("bin dir").join("saturn-agent");
    let api = free_port().expect("port");
    let base_args = |name: &str| {
        vec![
            "--name".to_string(),
            name.to_string(),
            "--data-dir".into(),
            dir.path().join(name).display().to_string(),
            "--listen".into(),
            format!("/ip4/127.0.0.1/tcp/{}", free_port().expect("port")),
            "--api".into(),
            format!("0.0.0.0:{api}"),
            "--no-mdns".into(),
            "--gpus".into(),
            "none".into(),
        ]
    };
    let refused = Command::new(&agent).args(base_args("open")).output().expect("runs");
    assert_eq!(refused.status.code(), Some(1), "an open API off loopback must be refused");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("api-token-file"), "the refusal names the fix: {message}");
    assert_eq!(message.trim().lines().count(), 1, "one-line fatal error: {message}");

    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").expect("write token");
    let mut args = base_args("guarded");
    args.extend(["--api-token-file".to_string(), token.display().to_string()]);
    let mut child = Command::new(&agent).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starts");
    let url = format!("http://127.0.0.1:{api}/v1/status");
    let http = reqwest::Client::new();
    let unauthorized = eventually("the API answers", Duration::from_secs(20), || async {
        Ok(http.get(&url).send().await.ok().map(|r| r.status().as_u16()))
    })
    .await;
    let authorized = http.get(&url).bearer_auth("s3cret-token").send().await.map(|r| r.status().as_u16());
    let wrong = http.get(&url).bearer_auth("nope").send().await.map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(unauthorized.expect("answered"), 401);
    assert_eq!(wrong.expect("answered"), 401);
    assert_eq!(authorized.expect("answered"), 200);
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
