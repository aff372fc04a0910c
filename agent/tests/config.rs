//! Starting an agent: flags, a config file, `--dev`, and the mistakes an operator makes,
//! each refused with one line that says what to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use saturn_agent::config::{resolve, AgentArgs, AgentConfig, ConfigError, HostFacts};
use saturn_agent::gpus::GpuSpec;

fn host() -> HostFacts {
    HostFacts {
        hostname: Some("gpu-host-7".into()),
        dev_data_dir: PathBuf::from("/tmp/saturn-dev-test"),
    }
}

fn args(flags: &[&str]) -> AgentArgs {
    AgentArgs::try_parse_from(std::iter::once("saturn-agent").chain(flags.iter().copied()))
        .expect("flags parse")
}

fn config(flags: &[&str], file: Option<&str>) -> Result<AgentConfig, ConfigError> {
    resolve(
        &args(flags),
        file.map(|text| (Path::new("/etc/saturn/agent.toml"), text)),
        &host(),
    )
}

#[test]
fn with_nothing_given_the_mesh_on_every_address_needs_a_cluster_key() {
    let refused = config(&[], None).expect_err("0.0.0.0 without a key");
    assert!(matches!(refused, ConfigError::MeshNeedsKey { .. }), "{refused}");
    let message = refused.to_string();
    assert!(message.contains("saturn-agent --gen-cluster-key") && message.contains("--insecure-open-mesh"), "{message}");
    let from_file = config(&[], Some("insecure_open_mesh = true")).expect("opted out in the file");
    assert!(from_file.insecure_open_mesh);
    assert!(config(&["--insecure-open-mesh"], None).is_ok());
    assert!(config(&["--listen", "/ip6/::1/tcp/7946"], None).is_ok(), "loopback needs no key");
    let named = config(&["--listen", "/dns/gpu-box/tcp/7946"], None).expect_err("a name could be anything");
    assert!(matches!(named, ConfigError::MeshNeedsKey { .. }));
}

#[test]
fn with_only_a_cluster_key_the_spec_defaults_apply() {
    let config = config(&["--cluster-key-file", "/etc/saturn/cluster.key"], None).expect("defaults are valid");
    assert_eq!(config.api_token_file, PathBuf::from("./saturn-data/api-token"));
    assert!(config.api_token_generated, "generated at first start");
    assert_eq!(config.name, "gpu-host-7");
    assert_eq!(config.data_dir, PathBuf::from("./saturn-data"));
    assert_eq!(
        config
            .listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["/ip4/0.0.0.0/tcp/7946"]
    );
    assert!(config.join.is_empty() && config.advertise.is_empty());
    assert_eq!(config.bootstrap_expect, Some(1));
    assert_eq!(config.api.to_string(), "127.0.0.1:7070");
    assert_eq!(config.gpus, GpuSpec::Auto);
    assert!(config.mdns && !config.dev && !config.data_dir_is_temporary);
    assert_eq!(config.heartbeat, Duration::from_millis(500));
    assert_eq!(config.grace_period, Duration::from_secs(10));
    assert_eq!(config.kill_grace, Duration::from_secs(30));
    assert_eq!(config.log_level, "info");
}

#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let file = r#"
name = "from-file"
data_dir = "/var/lib/saturn"
listen = ["/ip4/0.0.0.0/tcp/8000", "/ip6/::/tcp/8000"]
join = ["/ip4/10.0.0.2/tcp/7946"]
bootstrap_expect = 3
gpus = "sim:2xA100-80GB"
mdns = false
heartbeat_ms = 250
"#;
    let config = config(
        &[
            "--name",
            "from-flag",
            "--listen",
            "/ip4/127.0.0.1/tcp/9000",
            "--bootstrap-expect",
            "5",
        ],
        Some(file),
    )
    .expect("valid");
    assert_eq!(config.name, "from-flag");
    assert_eq!(
        config.listen.len(),
        1,
        "a repeatable flag replaces the file's list"
    );
    assert_eq!(config.bootstrap_expect, Some(5));
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/saturn"));
    assert_eq!(config.join.len(), 1);
    assert_eq!(config.gpus.to_string(), "sim:2xA100-80GB");
    assert!(!config.mdns);
    assert_eq!(config.heartbeat, Duration::from_millis(250));
    assert_eq!(
        config.config_file.as_deref(),
        Some(Path::new("/etc/saturn/agent.toml"))
    );
}

#[test]
fn an_agent_given_join_never_forms_a_cluster_unless_told_to() {
    let joiner = config(&["--join", "/ip4/10.0.0.2/tcp/7946", "--insecure-open-mesh"], None).expect("valid");
    assert_eq!(joiner.bootstrap_expect, None, "--join alone must never form a cluster");
    let explicit =
        config(&["--join", "/ip4/10.0.0.2/tcp/7946", "--bootstrap-expect", "3", "--insecure-open-mesh"], None).expect("valid");
    assert_eq!(explicit.bootstrap_expect, Some(3), "an explicit --bootstrap-expect still forms with its peers");
    let from_file = config(&[], Some("name = \"a\"\njoin = [\"/ip4/10.0.0.2/tcp/7946\"]\ninsecure_open_mesh = true\n")).expect("valid");
    assert_eq!(from_file.bootstrap_expect, None, "join in the file counts as --join");
    let dev = config(&["--dev", "--join", "/ip4/127.0.0.1/tcp/7946"], None).expect("valid");
    assert_eq!(dev.bootstrap_expect, Some(1), "--dev forms its own one-agent cluster");
}

#[test]
fn dev_is_one_agent_with_simulated_gpus_in_a_temporary_directory() {
    let config = config(&["--dev"], None).expect("valid");
    assert!(config.dev && config.data_dir_is_temporary);
    assert_eq!(config.data_dir, PathBuf::from("/tmp/saturn-dev-test"));
    assert_eq!(config.gpus.to_string(), "sim:4xSIM-24GB");
    assert_eq!(config.bootstrap_expect, Some(1));
    assert!(
        !config.mdns,
        "a dev agent must not merge with others on the LAN"
    );
    assert_eq!(config.listen.iter().map(ToString::to_string).collect::<Vec<_>>(), ["/ip4/127.0.0.1/tcp/7946"]);
    for beyond in [&["--dev", "--listen", "/ip4/0.0.0.0/tcp/1"][..], &["--dev", "--api", "0.0.0.0:7070"]] {
        let refused = self::config(beyond, None).expect_err("dev is loopback only");
        assert!(matches!(refused, ConfigError::DevNotLoopback { .. }), "{refused}");
    }

    let explicit = self::config(
        &["--dev", "--data-dir", "/data/mine", "--gpus", "none"],
        None,
    )
    .expect("valid");
    assert_eq!(explicit.data_dir, PathBuf::from("/data/mine"));
    assert!(!explicit.data_dir_is_temporary);
    assert_eq!(explicit.gpus, GpuSpec::None);
}

#[test]
fn the_api_always_has_a_token_file_beyond_loopback_too() {
    let open = config(&["--insecure-open-mesh", "--api", "0.0.0.0:7070"], None).expect("a token guards it");
    assert_eq!(open.api_token_file, PathBuf::from("./saturn-data/api-token"));
    let given = config(&["--insecure-open-mesh", "--api-token-file", "/etc/saturn/token"], None).expect("valid");
    assert_eq!((given.api_token_file, given.api_token_generated), (PathBuf::from("/etc/saturn/token"), false));
    assert!(config(&["--insecure-open-mesh", "--api", "[::1]:7070"], None).is_ok());
    assert_eq!(
        config(&["--insecure-open-mesh", "--api", "localhost:8080"], None)
            .expect("loopback")
            .api
            .to_string(),
        "127.0.0.1:8080"
    );
}

#[test]
fn bad_values_are_refused_naming_where_they_came_from() {
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["--listen", "0.0.0.0:7946"],
            None,
            "--listen \"0.0.0.0:7946\": not a multiaddr",
        ),
        (
            &["--join", "/ip4/1.2.3.4/tcp"],
            None,
            "--join \"/ip4/1.2.3.4/tcp\": not a multiaddr",
        ),
        (
            &["--gpus", "sim:0xA100"],
            None,
            "--gpus \"sim:0xA100\": \"0xA100\": the count must be at least 1",
        ),
        (
            &["--name", "../evil"],
            None,
            "--name \"../evil\": an agent name contains '/'",
        ),
        (&["--api", "7070"], None, "--api \"7070\": expected IP:PORT"),
        (
            &["--heartbeat-ms", "5"],
            None,
            "--heartbeat-ms \"5\": must be between 10 and 60000",
        ),
        (
            &["--grace-period-s", "1", "--heartbeat-ms", "800"],
            None,
            "must cover at least two heartbeats",
        ),
        (
            &["--log-level", "info,=="],
            None,
            "--log-level \"info,==\": not a log filter",
        ),
        (
            &[],
            Some("bootstrap_expect = 0"),
            "bootstrap_expect in /etc/saturn/agent.toml \"0\": at least 1 agent",
        ),
        (
            &[],
            Some("listen = []"),
            "listen in /etc/saturn/agent.toml \"[]\": at least one address is needed",
        ),
        (
            &[],
            Some("bootstrap_expect = \"3\""),
            "config file /etc/saturn/agent.toml line 1: invalid type",
        ),
        (
            &[],
            Some("mdns = true\nno_mdns = true"),
            "mdns and no_mdns contradict",
        ),
    ];
    for (flags, file, expected) in cases {
        let err = config(flags, *file).expect_err(expected).to_string();
        assert!(
            err.contains(expected),
            "{flags:?} {file:?}:\n  got      {err}\n  expected {expected}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn an_unknown_config_key_is_an_error_naming_key_and_file() {
    let err = config(&[], Some("name = \"a\"\n\nbootstrap_expected = 3\n"))
        .expect_err("typo")
        .to_string();
    assert!(err.contains("/etc/saturn/agent.toml line 3"), "{err}");
    assert!(err.contains("unknown field `bootstrap_expected`"), "{err}");
}

#[test]
fn every_flag_of_the_spec_is_accepted() {
    let parsed = args(&[
        "--config",
        "a.toml",
        "--name",
        "n",
        "--data-dir",
        "d",
        "--listen",
        "/ip4/0.0.0.0/tcp/1",
        "--listen",
        "/ip4/0.0.0.0/tcp/2",
        "--join",
        "/ip4/10.0.0.1/tcp/7946",
        "--bootstrap-expect",
        "3",
        "--api",
        "127.0.0.1:1",
        "--gpus",
        "none",
        "--cluster-key-file",
        "k",
        "--api-token-file",
        "t",
        "--dev",
        "--no-mdns",
        "--advertise",
        "/ip4/1.2.3.4/tcp/7946",
        "--grace-period-s",
        "20",
        "--heartbeat-ms",
        "100",
        "--log-level",
        "debug",
        "--replan-interval-s",
        "5",
        "--kill-grace-s",
        "3",
    ]);
    assert_eq!(parsed.listen.len(), 2);
    assert_eq!(parsed.bootstrap_expect, Some(3));
    assert!(parsed.dev && parsed.no_mdns);
}

/// Files on disk: the secret files and the `--dev` directory.
mod load {
    use super::*;

    /// Mode 0600, as the agent demands of secret files.
    fn private(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }

    #[test]
    fn an_unreadable_token_file_is_named() {
        let missing = std::env::temp_dir().join("saturn-config-test-no-such-token");
        let flags = args(&[
            "--name",
            "a",
            "--insecure-open-mesh",
            "--api-token-file",
            missing.to_str().expect("utf-8 temp dir"),
        ]);
        let err = AgentConfig::load(&flags)
            .expect_err("missing file")
            .to_string();
        assert!(err.starts_with("cannot read --api-token-file "), "{err}");
        assert!(err.contains("saturn-config-test-no-such-token"), "{err}");
    }

    #[test]
    fn secrets_are_read_trimmed_and_never_printed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token-0123456789\n").expect("write token");
        let key = dir.path().join("swarm.key");
        let hex = "0123456789abcdef".repeat(4);
        std::fs::write(&key, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n"))
            .expect("write key");
        private(&token);
        private(&key);
        let flags = args(&[
            "--name",
            "a",
            "--api",
            "0.0.0.0:0",
            "--api-token-file",
            token.to_str().expect("utf-8"),
            "--cluster-key-file",
            key.to_str().expect("utf-8"),
        ]);
        let config = AgentConfig::load(&flags).expect("valid");
        assert_eq!(
            config.api_token.as_ref().map(|t| t.expose()),
            Some("s3cret-token-0123456789")
        );
        assert!(config.cluster_key.is_some());
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "Debug must not show the token"
        );
    }

    #[test]
    fn a_malformed_cluster_key_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("swarm.key");
        std::fs::write(&key, "hunter2\n").expect("write key");
        private(&key);
        let flags = args(&[
            "--name",
            "a",
            "--cluster-key-file",
            key.to_str().expect("utf-8"),
        ]);
        let err = AgentConfig::load(&flags).expect_err("bad key").to_string();
        assert!(
            err.starts_with("--cluster-key-file ") && err.contains("not a libp2p swarm.key"),
            "{err}"
        );
    }

    #[test]
    fn dev_creates_a_fresh_data_directory() {
        let config = AgentConfig::load(&args(&["--dev", "--name", "dev"])).expect("valid");
        assert!(config.data_dir.is_dir());
        assert!(config.data_dir.starts_with(std::env::temp_dir()));
        std::fs::remove_dir_all(&config.data_dir).expect("clean up");
    }
}
