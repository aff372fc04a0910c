//! The `saturn` CLI.

use clap::{Parser, Subcommand};
use saturn_agent::cli;

#[derive(Debug, Parser)]
#[command(name = "saturn", version = saturn_agent::VERSION, about = "Saturn: train many models at once on a mesh of GPU hosts")]
struct Cli {
    #[command(flatten)]
    conn: cli::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit, follow and control jobs.
    #[command(subcommand)]
    Job(cli::job::JobCommand),
    /// The mesh: agents, leader, term, GPUs, health.
    Status,
    /// Solve a SPASE planner instance offline and print the plan JSON.
    Plan(cli::plan::PlanArgs),
    /// A local mesh of agents with simulated GPUs running a sample sweep.
    Demo(cli::demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Simulated training job: sleeps instead of computing (for demos and tests).
    #[command(hide = true)]
    SynthJob(saturn_agent::synth_job::SynthJobArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Plan(args) => cli::plan::run(args),
        Command::SynthJob(args) => saturn_agent::synth_job::run(args),
        Command::Job(command) => block_on(cli::job::run(&cli.conn, command)),
        Command::Status => block_on(cli::status::run(&cli.conn)),
        Command::Demo(args) => block_on(cli::demo::run(args)),
        Command::Completions { shell } => {
            cli::completions::print_completions(*shell, &mut <Cli as clap::CommandFactory>::command());
            Ok(0)
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("saturn: {err:#}");
            std::process::exit(1);
        }
    }
}

/// Runs one async CLI command on a small runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(future: F) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))?;
    runtime.block_on(future)
}
