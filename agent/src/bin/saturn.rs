//! The `saturn` CLI.

use clap::{Parser, Subcommand};
use saturn_agent::cli;

#[derive(Debug, Parser)]
#[command(name = "saturn", version, about = "Saturn: train many models at once on a mesh of GPU hosts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Solve a SPASE planner instance offline and print the plan JSON.
    Plan(cli::plan::PlanArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Plan(args) => cli::plan::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("saturn: {err:#}");
            std::process::exit(1);
        }
    }
}
