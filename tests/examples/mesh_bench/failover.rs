//! Leader failover: the leader is taken down, a survivor is asked to commit a write.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use saturn_tests::Harness;

use crate::cluster::steady;
use crate::report::{millis, ms, Stats, Table};
use crate::submit::{submit_once, submit_path};

/// How the leader is taken down.
#[derive(Clone, Copy, PartialEq)]
pub enum Fault {
    /// `kill -9`, restarted on its data dir afterwards: its sockets close at once.
    Kill,
    /// SIGSTOP, SIGCONT afterwards: a hung host, its connections stay open and silent.
    Stop,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9",
            Fault::Stop => "SIGSTOP",
        }
    }
}

/// Longest a trial may take before the benchmark gives up.
const TRIAL_LIMIT: Duration = Duration::from_secs(60);

/// `trials` rounds of: settle, take the leader down, time a survivor's new leader and a
/// committed submission through it, bring the old leader back.
pub async fn measure(harness: &mut Harness, fault: Fault, trials: usize) -> Result<Table> {
    let n = harness.cluster.agents.len();
    let path = submit_path(harness);
    let (mut elected, mut committed, mut back) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..trials {
        let leader = steady(harness).await?;
        let old = harness.cluster.agents[leader].name.clone();
        let survivor = (leader + 1) % n;
        let client = harness.client(survivor);
        let down = Instant::now();
        match fault {
            Fault::Kill => harness.cluster.kill(leader)?,
            Fault::Stop => harness.cluster.signal(leader, Signal::SIGSTOP)?,
        }
        // Polled every 20 ms rather than with `eventually`'s 100 ms: this is the resolution.
        let new_leader = async {
            while down.elapsed() < TRIAL_LIMIT {
                if let Ok(status) = harness.status(survivor).await {
                    if status.leader.as_deref().is_some_and(|l| l != old) {
                        return Ok(down.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bail!("no new leader within {TRIAL_LIMIT:?} of taking {old} down")
        };
        // Each submission blocks until committed or refused; a refusal is retried.
        let write = async {
            let mut last = String::new();
            while down.elapsed() < TRIAL_LIMIT {
                match submit_once(&client, &path, &format!("failover-{trial}")).await {
                    Ok(_) => return Ok(down.elapsed()),
                    Err(err) => last = format!("{err:#}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bail!("no write committed within {TRIAL_LIMIT:?} of taking the leader down: {last}")
        };
        let (election, write) = tokio::join!(new_leader, write);
        let (election, write) = (election?, write?);
        let returned = Instant::now();
        match fault {
            Fault::Kill => harness.cluster.restart(leader)?,
            Fault::Stop => harness.cluster.signal(leader, Signal::SIGCONT)?,
        }
        steady(harness).await?;
        println!(
            "  {} trial {trial}: {old} down; new leader seen {:.0} ms, write committed {:.0} ms; settled again in {:.1} s",
            fault.name(),
            millis(election),
            millis(write),
            returned.elapsed().as_secs_f64()
        );
        elected.push(election);
        committed.push(write);
        back.push(returned.elapsed());
    }
    let title = format!("Leader failover, {n} agents, {trials} trials of {} (target: median write < 2 s)", fault.name());
    let first = format!("from {} of the leader until", fault.name());
    let mut table = Table::new(&title, &[first.as_str(), "min ms", "median ms", "max ms"]);
    for (what, samples) in [
        ("a survivor names a new leader", elected),
        ("a submission via a survivor is committed", committed),
        ("(after its return) all settled and caught up", back),
    ] {
        let s = Stats::of(samples);
        table.row(vec![what.to_string(), ms(s.min), ms(s.p50), ms(s.max)]);
    }
    Ok(table)
}
