//! `saturn-agent`: the daemon, one per GPU host.
//!
//! Exit status 0 on a clean stop (SIGINT/SIGTERM), 1 on a fatal error with a one-line
//! reason on stderr.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use saturn_agent::config::{AgentArgs, AgentConfig};
use saturn_agent::daemon::{self, DaemonSettings};
use saturn_agent::gpus::GpuInventory;
use saturn_agent::scheduler::config::SchedulerConfig;

/// Environment variables of the agent passed through to every job it runs.
const PASSED_TO_JOBS: &[&str] = &["SATURN_SYNTH_RECORD_FILE"];

fn main() -> ExitCode {
    // The agent runs every job under itself as a watchdog (see executor::watchdog).
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).is_some_and(|a| a == saturn_agent::executor::watchdog::WATCHDOG_ARG) {
        saturn_agent::executor::watchdog::main(&raw[2..]);
    }
    let args = AgentArgs::parse();
    if let Some(path) = &args.gen_cluster_key {
        return match saturn_agent::mesh::write_cluster_key(path, &saturn_agent::mesh::generate_cluster_key()) {
            Ok(()) => {
                println!("wrote a new cluster key to {}: give it to every agent with --cluster-key-file", path.display());
                ExitCode::SUCCESS
            }
            Err(err) => fatal(&anyhow::Error::new(err)),
        };
    }
    let config = match AgentConfig::load(&args) {
        Ok(config) => config,
        Err(err) => return fatal(&anyhow::Error::new(err)),
    };
    init_tracing(&config.log_level);
    if args.reset_data {
        return match daemon::reset_data(&config.data_dir, args.yes_really) {
            Ok(what) => {
                println!("{what}");
                ExitCode::SUCCESS
            }
            Err(err) => fatal(&err),
        };
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fatal(&err),
    }
}

fn fatal(err: &anyhow::Error) -> ExitCode {
    // One line a person can act on: the causes joined, no backtrace.
    eprintln!("saturn-agent: {}", format!("{err:#}").replace('\n', "; "));
    ExitCode::from(1)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{level},openraft=warn,libp2p_kad=error,libp2p_gossipsub=warn,libp2p_swarm=warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

fn run(config: AgentConfig) -> Result<()> {
    let inventory = GpuInventory::discover(&config.gpus);
    if let Some(reason) = inventory.none_found_reason() {
        tracing::info!("no GPU found ({reason}); this agent runs with none: it still votes, plans and accepts jobs");
    }
    let gpus = inventory.gpus().iter().map(|gpu| gpu.info()).collect();
    let mut scheduler = SchedulerConfig {
        grace_period_ms: config.grace_period.as_millis() as u64,
        replan_interval_ms: config.replan_interval.as_millis() as u64,
        solver: config.solver.clone(),
        early_stop_replan: config.early_stop_replan,
        ..SchedulerConfig::default()
    };
    if !config.introspection {
        // A gain can never exceed an infinite threshold: running jobs stay where they are.
        scheduler.preempt_min_gain_s = f64::INFINITY;
    }
    let job_env = PASSED_TO_JOBS
        .iter()
        .filter_map(|key| std::env::var(key).ok().map(|value| (key.to_string(), value)))
        .collect();
    let settings = DaemonSettings {
        name: config.name.clone(),
        data_dir: config.data_dir.clone(),
        listen: config.listen.clone(),
        join: config.join.clone(),
        advertise: config.advertise.clone(),
        bootstrap_expect: config.bootstrap_expect.map(|n| n as usize),
        api: config.api,
        api_token: config.api_token.as_ref().map(|t| t.expose().to_string()),
        gpus,
        cluster_key: config.cluster_key,
        mdns: config.mdns,
        heartbeat: config.heartbeat,
        grace_period: config.grace_period,
        kill_grace: config.kill_grace,
        rendezvous_timeout: config.rendezvous_timeout,
        scheduler,
        job_env,
        checkpoint_root: config.checkpoint_root.clone(),
        checkpoint: config.checkpoint.clone(),
        cuda_ids: saturn_agent::gpus::cuda_ids(inventory.gpus()),
    };
    // The `saturn` CLI of this user finds the token through this pointer (api::token_advert).
    let _advert = saturn_agent::api::token_advert::runtime_dir().and_then(|dir| {
        saturn_agent::api::token_advert::advertise(&dir, config.api.port(), &config.api_token_file)
            .map_err(|err| tracing::warn!(dir = %dir.display(), %err, "cannot advertise the API token file to the CLI; use saturn --token-file"))
            .ok()
    });
    if config.dev {
        tracing::info!(data_dir = %config.data_dir.display(), "dev mode: one agent, simulated GPUs, temporary data dir");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(daemon::run(settings, shutdown_signal()));
    if config.data_dir_is_temporary {
        // --dev's data dir was ours alone: nothing in it outlives the agent.
        if let Err(err) = std::fs::remove_dir_all(&config.data_dir) {
            tracing::warn!(data_dir = %config.data_dir.display(), %err, "could not remove the temporary data dir");
        }
    }
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without signal handlers the agent can only be killed; run until then.
        _ => std::future::pending::<()>().await,
    }
}
