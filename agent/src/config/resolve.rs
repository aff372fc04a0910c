//! Flags + config file + host facts → [`AgentConfig`], with no I/O, so every rule is a
//! unit test: flags beat the file, the file beats `--dev`'s presets, which beat defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;

use super::file::FileConfig;
use super::{defaults, AgentArgs, AgentConfig, ConfigError};
use crate::gpus::GpuSpec;
use crate::jobfile::check_name;

/// What `resolve` needs to know about the host, gathered by `AgentConfig::load`.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The host name, the default agent name; `None` if it could not be found.
    pub hostname: Option<String>,
    /// Where `--dev` puts its data directory (unique per run).
    pub dev_data_dir: PathBuf,
}

/// Names where a value came from, for error messages.
struct Origin<'a> {
    flag: &'static str,
    file: Option<&'a Path>,
    from_flag: bool,
}

impl Origin<'_> {
    fn describe(&self) -> String {
        match (self.from_flag, self.file) {
            (false, Some(file)) => format!(
                "{} in {}",
                &self.flag[2..].replace('-', "_"),
                file.display()
            ),
            _ => self.flag.to_string(),
        }
    }

    fn invalid(&self, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.describe(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Picks the flag if given, else the file's value; remembers which for messages.
fn pick<'a, T>(
    flag: &'static str,
    file: Option<&'a Path>,
    from_args: Option<T>,
    from_file: Option<T>,
) -> (Option<T>, Origin<'a>) {
    let from_flag = from_args.is_some();
    (
        from_args.or(from_file),
        Origin {
            flag,
            file,
            from_flag,
        },
    )
}

/// Repeatable flags override the file's list only when given at least once.
fn pick_list<'a>(
    flag: &'static str,
    file: Option<&'a Path>,
    from_args: &[String],
    from_file: Option<Vec<String>>,
) -> (Option<Vec<String>>, Origin<'a>) {
    let from_args = (!from_args.is_empty()).then(|| from_args.to_vec());
    pick(flag, file, from_args, from_file)
}

/// Merges and checks everything that needs no file system; secrets stay unread (their
/// paths are kept) and the `--dev` directory is not created yet.
pub fn resolve(
    args: &AgentArgs,
    file: Option<(&Path, &str)>,
    host: &HostFacts,
) -> Result<AgentConfig, ConfigError> {
    let (path, parsed) = match file {
        Some((path, text)) => (Some(path), super::file::parse(path, text)?),
        None => (None, FileConfig::default()),
    };
    let dev = args.dev || parsed.dev.unwrap_or(false);

    let (name, origin) = pick("--name", path, args.name.clone(), parsed.name);
    let name = match name.or_else(|| host.hostname.clone()) {
        Some(name) => {
            check_name(&name)
                .map_err(|why| origin.invalid(&name, format!("an agent name {why}")))?;
            name
        }
        None => return Err(ConfigError::NoHostname),
    };

    let explicit_data_dir = args.data_dir.clone().or(parsed.data_dir);
    let data_dir_is_temporary = dev && explicit_data_dir.is_none();
    let data_dir = match explicit_data_dir {
        Some(dir) => dir,
        None if dev => host.dev_data_dir.clone(),
        None => PathBuf::from(defaults::DATA_DIR),
    };

    let (listen, origin) = pick_list("--listen", path, &args.listen, parsed.listen);
    let default_listen = if dev { defaults::DEV_LISTEN } else { defaults::LISTEN };
    let listen = multiaddrs(
        listen.unwrap_or_else(|| vec![default_listen.to_string()]),
        &origin,
    )?;
    if listen.is_empty() {
        return Err(origin.invalid(
            "[]",
            format!("at least one address is needed, e.g. {}", defaults::LISTEN),
        ));
    }
    let (join, origin) = pick_list("--join", path, &args.join, parsed.join);
    let join = multiaddrs(join.unwrap_or_default(), &origin)?;
    let (advertise, origin) = pick_list("--advertise", path, &args.advertise, parsed.advertise);
    let advertise = multiaddrs(advertise.unwrap_or_default(), &origin)?;

    let (bootstrap_expect, origin) = pick(
        "--bootstrap-expect",
        path,
        args.bootstrap_expect,
        parsed.bootstrap_expect,
    );
    if bootstrap_expect == Some(0) {
        return Err(origin.invalid("0", "at least 1 agent (itself) forms a cluster"));
    }
    // Only an explicit --bootstrap-expect (or --dev) forms a cluster. An agent given
    // --join joins one and never forms its own: an implicit "1" made every joiner that
    // started before it heard a member a one-agent cluster of its own (a fork).
    let bootstrap_expect = match bootstrap_expect {
        Some(n) => Some(n),
        None if dev || join.is_empty() => Some(1),
        None => None,
    };

    let (api, origin) = pick("--api", path, args.api.clone(), parsed.api);
    let api = api_addr(api.as_deref().unwrap_or(defaults::API), &origin)?;

    let (gpus, origin) = pick("--gpus", path, args.gpus.clone(), parsed.gpus);
    let gpus = match gpus {
        Some(text) => text
            .parse::<GpuSpec>()
            .map_err(|err| origin.invalid(&text, err.reason))?,
        None if dev => defaults::dev_gpus(),
        None => GpuSpec::Auto,
    };

    let given_token_file = args.api_token_file.clone().or(parsed.api_token_file);
    let api_token_generated = given_token_file.is_none();
    let api_token_file =
        given_token_file.unwrap_or_else(|| data_dir.join(defaults::API_TOKEN_FILE));


    // A dev agent is alone by definition: unless told otherwise it must not merge with a
    // colleague's dev agent on the LAN.
    let mdns = match (args.no_mdns, parsed.mdns, parsed.no_mdns) {
        (true, _, _) => false,
        (false, Some(mdns), _) => mdns,
        (false, None, Some(no_mdns)) => !no_mdns,
        (false, None, None) => !dev,
    };

    let timing = |flag: &'static str,
                  given: Option<u64>,
                  in_file: Option<u64>,
                  default: u64,
                  range: (u64, u64)| {
        let (value, origin) = pick(flag, path, given, in_file);
        let value = value.unwrap_or(default);
        if value < range.0 || value > range.1 {
            return Err(origin.invalid(
                value.to_string(),
                format!("must be between {} and {}", range.0, range.1),
            ));
        }
        Ok(value)
    };
    let heartbeat_ms = timing(
        "--heartbeat-ms",
        args.heartbeat_ms,
        parsed.heartbeat_ms,
        defaults::HEARTBEAT_MS,
        (10, 60_000),
    )?;
    let grace_period_s = timing(
        "--grace-period-s",
        args.grace_period_s,
        parsed.grace_period_s,
        defaults::GRACE_PERIOD_S,
        (1, 86_400),
    )?;
    let replan_interval_s = timing(
        "--replan-interval-s",
        args.replan_interval_s,
        parsed.replan_interval_s,
        defaults::REPLAN_INTERVAL_S,
        (1, 86_400),
    )?;
    let kill_grace_s = timing(
        "--kill-grace-s",
        args.kill_grace_s,
        parsed.kill_grace_s,
        defaults::KILL_GRACE_S,
        (0, 3_600),
    )?;
    let rendezvous_timeout_s = timing(
        "--rendezvous-timeout-s",
        args.rendezvous_timeout_s,
        parsed.rendezvous_timeout_s,
        defaults::RENDEZVOUS_TIMEOUT_S,
        (1, 86_400),
    )?;
    // Loss is detected from missed heartbeats; a grace period of under two of them would
    // declare healthy hosts lost after a single late packet.
    if grace_period_s * 1000 < 2 * heartbeat_ms {
        let origin = Origin {
            flag: "--grace-period-s",
            file: path,
            from_flag: args.grace_period_s.is_some(),
        };
        return Err(origin.invalid(
            grace_period_s.to_string(),
            format!("must cover at least two heartbeats ({heartbeat_ms} ms each)"),
        ));
    }

    let (log_level, origin) = pick(
        "--log-level",
        path,
        args.log_level.clone(),
        parsed.log_level,
    );
    let log_level = log_level.unwrap_or_else(|| defaults::LOG_LEVEL.to_string());
    tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|err| {
        origin.invalid(
            &log_level,
            format!("not a log filter ({err}); try info, debug or saturn_agent=debug,info"),
        )
    })?;

    let (solver, origin) = pick("--solver", path, args.solver.clone(), parsed.solver);
    let solver = solver.unwrap_or_else(|| "local-search".to_string());
    if solver.parse::<saturn_planner::Solver>().is_err() {
        return Err(origin.invalid(&solver, "not a solver; use local-search, max-heuristic, optimus-greedy or random".to_string()));
    }

    // Checked last, so a value that is wrong in itself is reported first.
    let cluster_key_file = args.cluster_key_file.clone().or(parsed.cluster_key_file);
    let insecure_open_mesh = args.insecure_open_mesh || parsed.insecure_open_mesh.unwrap_or(false);
    let open = listen.iter().find(|addr| !is_loopback(addr));
    if let Some(addr) = open {
        if dev {
            return Err(ConfigError::DevNotLoopback { what: format!("--listen {addr}") });
        }
        if cluster_key_file.is_none() && !insecure_open_mesh {
            return Err(ConfigError::MeshNeedsKey { listen: addr.to_string() });
        }
    }
    if dev && !api.ip().is_loopback() {
        return Err(ConfigError::DevNotLoopback { what: format!("--api {api}") });
    }

    Ok(AgentConfig {
        name,
        data_dir,
        data_dir_is_temporary,
        listen,
        join,
        advertise,
        bootstrap_expect,
        api,
        gpus,
        cluster_key_file,
        cluster_key: None,
        api_token_file,
        api_token_generated,
        api_token: None,
        insecure_open_mesh,
        dev,
        mdns,
        grace_period: Duration::from_secs(grace_period_s),
        heartbeat: Duration::from_millis(heartbeat_ms),
        log_level,
        replan_interval: Duration::from_secs(replan_interval_s),
        kill_grace: Duration::from_secs(kill_grace_s),
        rendezvous_timeout: Duration::from_secs(rendezvous_timeout_s),
        config_file: path.map(Path::to_path_buf),
        solver,
        introspection: !(args.no_introspection || parsed.no_introspection.unwrap_or(false)),
        early_stop_replan: !(args.no_early_stop_replan || parsed.no_early_stop_replan.unwrap_or(false)),
        checkpoint_root: args.checkpoint_root.clone().or(parsed.checkpoint_root),
        checkpoint: crate::checkpoint::CheckpointSettings {
            replicas: args.checkpoint_replicas.or(parsed.checkpoint_replicas).unwrap_or(1),
            max_bytes: args
                .checkpoint_max_mib
                .or(parsed.checkpoint_max_mib)
                .map_or(crate::checkpoint::DEFAULT_MAX_BYTES, |mib| mib.saturating_mul(1024 * 1024)),
            rate_bytes_per_s: args
                .checkpoint_rate_mib_s
                .or(parsed.checkpoint_rate_mib_s)
                .map_or(crate::checkpoint::DEFAULT_RATE_BYTES_PER_S, |mib| mib.saturating_mul(1024 * 1024)),
        },
    })
}

/// Whether a mesh address only accepts connections from this host: `/ip4/127.x`,
/// `/ip6/::1` (a name, `/dns/...`, could be anything and counts as not loopback).
pub fn is_loopback(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn multiaddrs(texts: Vec<String>, origin: &Origin<'_>) -> Result<Vec<Multiaddr>, ConfigError> {
    texts
        .into_iter()
        .map(|text| {
            text.parse::<Multiaddr>().map_err(|err| {
                origin.invalid(
                    &text,
                    format!("not a multiaddr ({err}); write it like /ip4/10.0.0.5/tcp/7946"),
                )
            })
        })
        .collect()
}

/// `IP:PORT`, or `localhost:PORT` for the loopback address.
fn api_addr(text: &str, origin: &Origin<'_>) -> Result<SocketAddr, ConfigError> {
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
    }
    text.parse::<SocketAddr>()
        .map_err(|_| origin.invalid(text, "expected IP:PORT, like 127.0.0.1:7070 or [::1]:7070"))
}
