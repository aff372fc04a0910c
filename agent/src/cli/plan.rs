//! `saturn plan INSTANCE.json`: solve a SPASE instance offline and print the plan JSON.
//!
//! A bad instance (unreadable file, bad JSON, failed validation) is the user's to fix, so
//! it gets one line on stderr naming the file and the job or host at fault, and exit
//! status 2; status 1 is left for failures of saturn itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use saturn_planner::{parse_instance, render_svg, solve, validate_plan, SolveOptions, Solver};

/// Exit status for a malformed or unreadable instance.
const BAD_INPUT: i32 = 2;

/// Arguments of `saturn plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The instance JSON file (see spec/planner.md).
    pub instance: PathBuf,
    /// local-search, max-heuristic, optimus-greedy or random.
    #[arg(long, default_value = "local-search")]
    pub solver: Solver,
    /// Wall-clock limit for the whole solve, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub time_limit_ms: u64,
    /// Seed of the solver's random choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cap on local-search iterations; with it, the same seed gives the same plan on any
    /// machine (as long as the time limit is not reached first).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Also write a Gantt chart of the plan to this SVG file.
    #[arg(long, value_name = "GANTT.svg")]
    pub svg: Option<PathBuf>,
}

/// Runs `saturn plan`; returns the process exit status.
pub fn run(args: &PlanArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let path = args.instance.display();
    let text = match std::fs::read_to_string(&args.instance) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("saturn plan: cannot read {path}: {err}");
            return Ok(BAD_INPUT);
        }
    };
    let instance = match parse_instance(&text) {
        Ok(instance) => instance,
        Err(err) => {
            eprintln!("saturn plan: {path}: {err}");
            return Ok(BAD_INPUT);
        }
    };
    // The limit bounds the whole command, so reading and checking count against it.
    let limit = Duration::from_millis(args.time_limit_ms).saturating_sub(started.elapsed());
    let options =
        SolveOptions { solver: args.solver, time_limit: limit, seed: args.seed, max_iterations: args.iterations };
    let plan = solve(&instance, &options).with_context(|| format!("solving {path}"))?;
    // Solvers build valid plans by construction; checking anyway turns a solver bug into
    // an error instead of a wrong schedule.
    validate_plan(&instance, &plan).context("the solver produced an invalid plan (a bug in saturn)")?;
    if let Some(svg) = &args.svg {
        std::fs::write(svg, render_svg(&instance, &plan))
            .with_context(|| format!("writing the Gantt chart to {}", svg.display()))?;
    }
    println!("{}", serde_json::to_string_pretty(&plan).context("encoding the plan")?);
    Ok(0)
}
