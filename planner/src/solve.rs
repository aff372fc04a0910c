//! One entry point for every solver: [`solve`] (and [`solve_traced`] for benchmarks).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::assemble::{assignments, makespan};
use crate::baselines;
use crate::bound::problem_bound;
use crate::construct::{completion_starts, greedy_starts, priced_starts, undominated_modes};
use crate::decode::{Decoder, Placed, Solution};
use crate::error::InstanceError;
use crate::instance::Instance;
use crate::plan::{Assignment, Plan};
use crate::problem::{compile, Problem};
use crate::search::{anneal, Budget};
pub use crate::search::MoveStats;

/// Which algorithm [`solve`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Solver {
    /// Simulated annealing over job order and configuration (the default).
    LocalSearch,
    /// Current practice: each job on whole hosts, one after another.
    MaxHeuristic,
    /// The Saturn paper's Algorithm 1.
    OptimusGreedy,
    /// Random configuration and order.
    Random,
}

impl Solver {
    /// Every solver, in `--solver` order.
    pub const ALL: [Solver; 4] = [Solver::LocalSearch, Solver::MaxHeuristic, Solver::OptimusGreedy, Solver::Random];

    /// The `--solver` name.
    pub fn name(self) -> &'static str {
        match self {
            Solver::LocalSearch => "local-search",
            Solver::MaxHeuristic => "max-heuristic",
            Solver::OptimusGreedy => "optimus-greedy",
            Solver::Random => "random",
        }
    }
}

impl fmt::Display for Solver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown solver name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown solver \"{0}\": use local-search, max-heuristic, optimus-greedy or random")]
pub struct UnknownSolver(pub String);

impl FromStr for Solver {
    type Err = UnknownSolver;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Solver::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| UnknownSolver(s.to_string()))
    }
}

/// How to solve.
#[derive(Debug, Clone, PartialEq)]
pub struct SolveOptions {
    /// The algorithm.
    pub solver: Solver,
    /// Wall-clock limit for the whole solve (the search stops early when it stagnates or
    /// reaches the lower bound).
    pub time_limit: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Caps the local search's iterations. With a cap and a time limit it never reaches,
    /// the same seed gives a byte-identical plan on any machine.
    pub max_iterations: Option<u64>,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions { solver: Solver::LocalSearch, time_limit: Duration::from_secs(2), seed: 0, max_iterations: None }
    }
}

/// Why [`solve`] failed: only a malformed instance can make it fail.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SolveError {
    /// The instance is malformed.
    #[error(transparent)]
    Instance(#[from] InstanceError),
}

/// A plan and how the search got there.
#[derive(Debug, Clone)]
pub struct SolveReport {
    /// The plan.
    pub plan: Plan,
    /// Time from the call until the first valid plan existed.
    pub first_feasible: Duration,
    /// (time since the call, makespan) each time the best plan improved.
    pub trace: Vec<(Duration, f64)>,
    /// Local-search iterations run (0 for the baselines).
    pub iterations: u64,
    /// Why the local search ended ("" for the baselines).
    pub stop: &'static str,
    /// Per move kind of the local search: tried, accepted, new best.
    pub moves: Vec<MoveStats>,
}

/// Solves an instance with the chosen solver; the plan is valid by construction.
pub fn solve(instance: &Instance, options: &SolveOptions) -> Result<Plan, SolveError> {
    solve_traced(instance, options).map(|r| r.plan)
}

/// [`solve`], also reporting when the first plan existed and how the best one improved.
pub fn solve_traced(instance: &Instance, options: &SolveOptions) -> Result<SolveReport, SolveError> {
    let started = Instant::now();
    let problem = compile(instance)?;
    let lower_bound = problem_bound(&problem);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut iterations = 0;
    let mut stop = "";
    let mut moves = Vec::new();
    let (found, trace) = match options.solver {
        Solver::MaxHeuristic => {
            let (modes, placed) = baselines::max_heuristic(&problem);
            (assignments(instance, &problem, &modes, &placed), Vec::new())
        }
        Solver::OptimusGreedy => (decoded(instance, &problem, &baselines::optimus_greedy(&problem)), Vec::new()),
        Solver::Random => (decoded(instance, &problem, &baselines::random(&problem, &mut rng)), Vec::new()),
        Solver::LocalSearch => {
            let allowed = undominated_modes(&problem);
            // Model-aware starts first: on a large instance only the first starts get decoded.
            // Both kinds are for clusters of several GPU models; on one model they only
            // delay the first plan (1,000 jobs: 12 decoder passes, ~80 ms, measured).
            let mut starts = priced_starts(&problem, &allowed, lower_bound);
            let greedy = greedy_starts(&problem, &allowed, lower_bound);
            if let Some(first) = greedy.first().filter(|_| problem.models.len() > 1) {
                starts.extend(completion_starts(&problem, &allowed, &first.modes));
            }
            starts.extend(greedy);
            starts.push(baselines::optimus_greedy(&problem));
            let budget = Budget {
                deadline: started + options.time_limit,
                max_iterations: options.max_iterations,
                target: lower_bound,
            };
            let outcome = anneal(&problem, &allowed, starts, &budget, &mut rng, started);
            iterations = outcome.iterations;
            stop = outcome.stop.name();
            moves = outcome.moves;
            let searched = decoded(instance, &problem, &outcome.best);
            // Current practice cannot be expressed as an order for the decoder (it idles
            // whole hosts), so compare with it explicitly: never return anything worse.
            let (modes, placed) = baselines::max_heuristic(&problem);
            let practice = assignments(instance, &problem, &modes, &placed);
            let best = if makespan(&practice) < makespan(&searched) { practice } else { searched };
            (best, outcome.trace)
        }
    };
    let first_feasible = trace.first().map_or(started.elapsed(), |t| t.0);
    let plan = Plan {
        makespan_s: makespan(&found),
        lower_bound_s: lower_bound,
        solver: options.solver.name().to_string(),
        solve_ms: started.elapsed().as_millis() as u64,
        assignments: found,
    };
    Ok(SolveReport { plan, first_feasible, trace, iterations, stop, moves })
}

fn decoded(instance: &Instance, problem: &Problem, solution: &Solution) -> Vec<Assignment> {
    let mut placed = Placed::default();
    Decoder::new(problem).decode(&solution.order, &solution.modes, Some(&mut placed));
    assignments(instance, problem, &solution.modes, &placed)
}
