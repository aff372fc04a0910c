//! Real network partitions between real agents (see `saturn_tests::netns`): each agent
//! in its own network namespace on a private bridge, links cut, made one-way and
//! flapped, then healed. One function per property:
//!
//! - an isolated leader cannot commit, and rejoins the majority's history on heal;
//! - a leader that can only send, or only receive, is replaced, and the cluster
//!   converges once the links heal;
//! - a frozen (SIGSTOP) leader is replaced, and follows the new one when it wakes and
//!   after a crash and restart;
//! - a follower whose link flaps leaves one leader and one job list, and loses no
//!   acknowledged submission;
//! - a worker isolated mid-run stops its jobs before the majority runs them elsewhere.
//!
//! Needs root and iproute2; without them each test fails under `CI=true` and elsewhere
//! prints why it did not run.
//! `SATURN_PARTITION_ROUNDS` sets the number of flapping rounds (default 5).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use saturn_tests::netns::{self, NetnsCluster, NoAnswer};
use saturn_tests::records::{self, Record};
use saturn_tests::{eventually, synth_sweep, Setup};

/// Formation, an election, or convergence after a heal.
const SETTLE: Duration = Duration::from_secs(40);
/// A submission the cluster should accept.
const SUBMIT: Duration = Duration::from_secs(15);
/// How long an agent that cannot commit may take to say so (its proposal timeout is 10 s).
const REFUSAL: Duration = Duration::from_secs(20);
/// Grace period the agents run with (seconds); the fence acts after half of it.
const GRACE_S: u64 = 4;
/// Heartbeat interval the agents run with.
const HEARTBEAT_MS: u64 = 200;

/// Starts `setup` in namespaces, or prints why this machine cannot and returns `None`.
fn start(setup: &Setup) -> Option<NetnsCluster> {
    if let Some(why) = netns::unavailable() {
        saturn_tests::missing_prerequisite(&format!("partition tests need root and iproute2 (`ip`): {why}"));
        return None;
    }
    Some(NetnsCluster::start(setup).expect("agents start in their namespaces"))
}

/// Fast heartbeats, a short grace period, and a short SIGTERM → SIGKILL wait so the
/// fence (grace/2 + kill grace) always ends before the grace period.
fn setup(agents: usize) -> Setup {
    let mut setup = Setup::new(agents);
    setup.extra_args = [
        "--heartbeat-ms",
        &HEARTBEAT_MS.to_string(),
        "--grace-period-s",
        &GRACE_S.to_string(),
        "--kill-grace-s",
        "1",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    setup
}

/// Runs a scenario; on failure panics with the error and every agent's log tail.
async fn run(cluster: &NetnsCluster, scenario: impl std::future::Future<Output = Result<()>>) {
    if let Err(err) = scenario.await {
        panic!("{err:#}\n{}", cluster.logs());
    }
}

/// A one-job sweep that will not finish during the test.
fn one_job(cluster: &NetnsCluster, name: &str) -> String {
    synth_sweep(&cluster.saturn, name, 1, 1_000_000, "")
}

fn no_panics(cluster: &NetnsCluster) -> Result<()> {
    for (i, agent) in cluster.agents.iter().enumerate() {
        ensure!(
            !cluster.log(i).contains("panicked at"),
            "{} panicked (see its log)",
            agent.name
        );
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_and_rejoins_the_majority() {
    let Some(cluster) = start(&setup(3)) else {
        return;
    };
    run(&cluster, isolated_leader(&cluster)).await;
}

async fn isolated_leader(cluster: &NetnsCluster) -> Result<()> {
    let formed = cluster.agreement("formed", SETTLE, |_| true).await?;
    let old = cluster
        .index_of(&formed.leader)
        .context("the leader is one of ours")?;
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();

    cluster.links.isolate(old)?;
    cluster
        .wait_status(
            majority[0],
            "a leader other than the isolated one",
            SETTLE,
            |s| s.leader.as_deref().is_some_and(|l| l != formed.leader),
        )
        .await?;
    let accepted = cluster
        .submit(majority[1], &one_job(cluster, "majority"), SUBMIT)
        .await?;
    let accepted_id = accepted.jobs[0].id.clone();

    // Through the isolated leader a submission must fail or time out, and while it is
    // tried the old leader's job list must never show the majority's job.
    let stale_file = one_job(cluster, "stale");
    let stale = cluster.submit(old, &stale_file, REFUSAL);
    tokio::pin!(stale);
    let mut looks = 0;
    let stale = loop {
        tokio::select! {
            result = &mut stale => break result,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                let jobs = cluster.jobs(old).await?;
                looks += 1;
                if let Some(job) = jobs.iter().find(|j| j.id == accepted_id || j.name.starts_with("stale")) {
                    bail!("the isolated old leader lists {job:?}: it applied what it cannot have committed");
                }
            }
        }
    };
    match stale {
        Ok(answer) => {
            bail!("the isolated leader acknowledged a submission it cannot commit: {answer:?}")
        }
        Err(err) if err.downcast_ref::<NoAnswer>().is_some() => bail!(
            "the isolated leader never answered the submission ({err}); the agent's own proposal \
             timeout is 10 s, so `saturn job run` should have ended with an error"
        ),
        Err(err) => {
            eprintln!("submission through the isolated leader refused, as it must be: {err:#}")
        }
    }
    ensure!(
        looks >= 3,
        "the old leader's job list was looked at only {looks} times"
    );

    cluster.links.heal(old)?;
    let healed = cluster
        .agreement("the majority's job among them", SETTLE, |a| {
            a.jobs.iter().any(|(id, _)| *id == accepted_id) && a.voters.len() == 3
        })
        .await?;
    ensure!(
        !healed
            .jobs
            .iter()
            .any(|(_, name)| name.starts_with("stale")),
        "a submission refused by the isolated leader was committed later: {:?}",
        healed.jobs
    );
    no_panics(cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_can_only_send_or_only_receive_is_replaced() {
    let Some(cluster) = start(&setup(3)) else {
        return;
    };
    run(&cluster, one_way_leader(&cluster)).await;
}

async fn one_way_leader(cluster: &NetnsCluster) -> Result<()> {
    let mut acknowledged = Vec::new();
    let mut leader = cluster.agreement("formed", SETTLE, |_| true).await?.leader;
    for (round, deaf) in [("deaf leader", true), ("mute leader", false)] {
        let l = cluster
            .index_of(&leader)
            .context("the leader is one of ours")?;
        let followers: Vec<usize> = (0..3).filter(|i| *i != l).collect();
        for &f in &followers {
            // Deaf: the leader still sends, hears nothing. Mute: the reverse.
            if deaf {
                cluster.links.drop_from(f, l)?;
            } else {
                cluster.links.drop_from(l, f)?;
            }
        }
        // The followers cannot keep a leader they cannot talk both ways with.
        cluster
            .wait_status(
                followers[0],
                &format!("{round}: a new leader"),
                SETTLE,
                |s| s.leader.as_deref().is_some_and(|new| new != leader),
            )
            .await?;
        let submitted = cluster
            .submit(
                followers[1],
                &one_job(cluster, round.split(' ').next().unwrap_or("x")),
                SUBMIT,
            )
            .await?;
        acknowledged.push(submitted.jobs[0].id.clone());
        cluster.links.heal_all()?;
        // Healed means whole again: the replaced leader is a voter once more. (While the
        // cluster has shrunk to fewer voters, losing the one left is not survivable.)
        let agreed = cluster
            .agreement(
                &format!("after the {round}, 3 voters and every acknowledged job"),
                SETTLE,
                |a| {
                    a.voters.len() == 3
                        && acknowledged
                            .iter()
                            .all(|id| a.jobs.iter().any(|(j, _)| j == id))
                },
            )
            .await?;
        leader = agreed.leader;
    }
    no_panics(cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_and_follows_when_it_wakes() {
    let Some(mut cluster) = start(&setup(3)) else {
        return;
    };
    if let Err(err) = frozen_leader(&mut cluster).await {
        panic!("{err:#}\n{}", cluster.logs());
    }
}

/// SIGSTOP is a partition in time: the frozen leader's timers, connections and beliefs
/// are all stale when it wakes. Then a crash and a restart on the same data dir.
async fn frozen_leader(cluster: &mut NetnsCluster) -> Result<()> {
    let formed = cluster.agreement("formed", SETTLE, |_| true).await?;
    let old = cluster
        .index_of(&formed.leader)
        .context("the leader is one of ours")?;
    let other = (old + 1) % 3;
    cluster.pause(old)?;
    cluster
        .wait_status(other, "a leader other than the frozen one", SETTLE, |s| {
            s.leader.as_deref().is_some_and(|l| l != formed.leader)
        })
        .await?;
    let accepted = cluster
        .submit(other, &one_job(cluster, "while-frozen"), SUBMIT)
        .await?;
    let id = accepted.jobs[0].id.clone();
    cluster.resume(old)?;
    cluster
        .agreement("after the wake-up, 3 voters and the job", SETTLE, |a| {
            a.voters.len() == 3 && a.jobs.iter().any(|(j, _)| *j == id)
        })
        .await?;

    // The woken agent crashes (kill -9) and comes back on its data dir, as itself.
    cluster.restart(old)?;
    let back = cluster
        .agreement("after the restart, 3 voters and the job", SETTLE, |a| {
            a.voters.len() == 3 && a.jobs.iter().any(|(j, _)| *j == id)
        })
        .await?;
    ensure!(
        back.voters.contains(&formed.leader),
        "{} did not come back as a voter",
        formed.leader
    );
    no_panics(cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_follower_link_leaves_one_leader_and_one_job_list() {
    let Some(cluster) = start(&setup(3)) else {
        return;
    };
    run(&cluster, flapping_follower(&cluster)).await;
}

async fn flapping_follower(cluster: &NetnsCluster) -> Result<()> {
    let rounds: usize = std::env::var("SATURN_PARTITION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let formed = cluster.agreement("formed", SETTLE, |_| true).await?;
    let leader = cluster
        .index_of(&formed.leader)
        .context("the leader is one of ours")?;
    let follower = (leader + 1) % 3;
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        // Alternate a pulled cable with a link the follower can only send on; the
        // latter makes it call elections the others hear.
        if round % 2 == 0 {
            cluster.links.isolate(follower)?;
        } else {
            cluster.links.drop_from(leader, follower)?;
        }
        // The fault pattern itself is timed, not a synchronisation: 0.2 to 0.9 s down.
        let down = Duration::from_millis(200 + (round as u64 * 370) % 700);
        let file = one_job(cluster, &format!("flap{round}"));
        // A submission may fail while the leader changes; only acknowledged ones count.
        if let Ok(Ok(answer)) = tokio::time::timeout(
            down + Duration::from_secs(3),
            cluster.submit(leader, &file, SUBMIT),
        )
        .await
        {
            acknowledged.push(answer.jobs[0].id.clone());
        }
        tokio::time::sleep(down).await;
        cluster.links.heal_all()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = cluster
        .submit(follower, &one_job(cluster, "after"), SUBMIT)
        .await?;
    acknowledged.push(after.jobs[0].id.clone());
    let agreed = cluster
        .agreement("3 voters and every acknowledged job", SETTLE, |a| {
            a.voters.len() == 3
                && acknowledged
                    .iter()
                    .all(|id| a.jobs.iter().any(|(j, _)| j == id))
        })
        .await?;
    let ids: BTreeSet<&String> = agreed.jobs.iter().map(|(id, _)| id).collect();
    ensure!(
        ids.len() == agreed.jobs.len(),
        "a job id is listed twice: {:?}",
        agreed.jobs
    );
    eprintln!(
        "{rounds} flapping rounds, {} of {} submissions acknowledged",
        acknowledged.len() - 1,
        rounds
    );
    no_panics(cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_worker_stops_its_jobs_before_they_run_elsewhere() {
    let Some(cluster) = start(&setup(3)) else {
        return;
    };
    run(&cluster, isolated_worker(&cluster)).await;
}

async fn isolated_worker(cluster: &NetnsCluster) -> Result<()> {
    let formed = cluster.agreement("formed", SETTLE, |_| true).await?;
    let leader = cluster
        .index_of(&formed.leader)
        .context("the leader is one of ours")?;
    // One GPU per job leaves GPUs free on the majority, so nothing but the grace period
    // holds back a re-run; known step times skip the trial runs.
    let sweep = synth_sweep(&cluster.saturn, "iso", 6, 250, "")
        .replace("gpus = [1, 4]", "gpus = [1, 1]")
        + "profile = { ddp = { 1 = 0.04 }, fsdp = { 1 = 0.05 } }\n";
    let ids: Vec<String> = cluster
        .submit(leader, &sweep, SUBMIT)
        .await?
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect();

    // A follower (isolating the leader would be an election, another scenario) with
    // training processes running right now.
    let (worker, cut_off) = eventually("a follower running training attempts", SETTLE, || async {
        let (_, running) = records::segments(&records::read(&cluster.records));
        Ok((0..3).filter(|i| *i != leader).find_map(|i| {
            let here: Vec<Record> = running
                .iter()
                .filter(|r| r.agent == cluster.agents[i].name && !r.profile)
                .cloned()
                .collect();
            (!here.is_empty()).then_some((i, here))
        }))
    })
    .await?;
    let isolated_at = now_ms();
    cluster.links.isolate(worker)?;
    let name = cluster.agents[worker].name.clone();

    // The majority runs the cut-off attempts again elsewhere, once the grace period is over.
    let rerun = |all: &[Record], old: &Record| {
        all.iter()
            .find(|r| r.job == old.job && r.attempt > old.attempt && r.agent != name)
            .cloned()
    };
    let reruns = eventually("the cut-off jobs running elsewhere", SETTLE, || async {
        let all = records::read(&cluster.records);
        Ok(cut_off
            .iter()
            .map(|old| rerun(&all, old))
            .collect::<Option<Vec<Record>>>())
    })
    .await?;
    let stale = cluster.job_pids(worker);
    ensure!(
        stale.is_empty(),
        "{name}, cut off {} ms ago, still runs job processes {stale:?} while the majority already re-runs {:?}: \
         two attempts of one job at once",
        now_ms().saturating_sub(isolated_at),
        reruns.iter().map(|r| format!("{} attempt {} on {} since +{} ms", r.job, r.attempt, r.agent, r.start_ms.saturating_sub(isolated_at))).collect::<Vec<_>>()
    );
    cluster.links.heal(worker)?;

    let jobs = eventually("every job ended", Duration::from_secs(90), || async {
        let jobs: Vec<_> = cluster
            .jobs(leader)
            .await?
            .into_iter()
            .filter(|j| ids.contains(&j.id))
            .collect();
        Ok(jobs
            .iter()
            .all(|j| matches!(j.state.as_str(), "completed" | "failed" | "cancelled" | "stopped"))
            .then_some(jobs))
    })
    .await?;
    for job in &jobs {
        ensure!(
            job.state == "completed",
            "{} ended {}: {:?}",
            job.id,
            job.state,
            job.error
        );
    }

    let all = records::read(&cluster.records);
    let (ended, open) = records::segments(&all);
    let segments: Vec<Record> = ended.iter().chain(&open).cloned().collect();
    for (old, new) in cut_off.iter().zip(&reruns) {
        check_handover(&all, &name, isolated_at, old, new)?;
    }
    ensure!(
        records::concurrent_attempts(&segments).is_empty(),
        "attempts ran at once: {:?}",
        records::concurrent_attempts(&segments)
    );
    ensure!(
        records::gpu_overlaps(&segments).is_empty(),
        "GPUs held twice: {:?}",
        records::gpu_overlaps(&segments)
    );
    for i in 0..3 {
        ensure!(
            cluster.job_pids(i).is_empty(),
            "{} still runs job processes {:?}",
            cluster.agents[i].name,
            cluster.job_pids(i)
        );
    }
    no_panics(cluster)
}

/// The records of one job moved off `name`, cut off at `isolated_at`: the old attempt
/// (`old`, on `name`) ended before the grace period was over, the new one (`new`,
/// elsewhere) began after both, and `name` never restarted the old one.
fn check_handover(
    all: &[Record],
    name: &str,
    isolated_at: u64,
    old: &Record,
    new: &Record,
) -> Result<()> {
    let old_end = all
        .iter()
        .filter(|e| e.job == old.job && e.attempt == old.attempt && e.agent == name)
        .find_map(|e| e.end_ms);
    let old_end = old_end.with_context(|| {
        format!(
            "{name}'s attempt {} of {} never ended (SIGKILL or still running)",
            old.attempt, old.job
        )
    })?;
    eprintln!(
        "{}: attempt {} on {name} ended {} ms after the cut; attempt {} started on {} after {} ms",
        old.job,
        old.attempt,
        old_end.saturating_sub(isolated_at),
        new.attempt,
        new.agent,
        new.start_ms.saturating_sub(isolated_at)
    );
    // The fence acts at grace/2 without a quorum; the majority may give the job away at
    // the grace period. The first must end before the second can begin.
    ensure!(
        old_end < isolated_at + GRACE_S * 1000,
        "{name} was cut off but stopped attempt {} of {} only {} ms later, past the {GRACE_S} s grace \
         period after which the majority may run it elsewhere (the fence should act at grace/2)",
        old.attempt, old.job, old_end.saturating_sub(isolated_at)
    );
    ensure!(
        new.start_ms >= old_end,
        "{} attempt {} started on {} at {} while attempt {} still ran on {name} until {old_end}",
        new.job,
        new.attempt,
        new.agent,
        new.start_ms,
        old.attempt
    );
    // Two heartbeats of slack: the last one heard may predate the isolation.
    ensure!(
        new.start_ms + 2 * HEARTBEAT_MS >= isolated_at + GRACE_S * 1000,
        "{} ran again {} ms after {name} was cut off, inside the {GRACE_S} s grace period",
        new.job,
        new.start_ms.saturating_sub(isolated_at)
    );
    let restarted = all.iter().find(|r| {
        r.job == old.job && r.attempt == old.attempt && r.agent == name && r.start_ms > isolated_at
    });
    ensure!(
        restarted.is_none(),
        "{name} restarted a stale attempt after the heal: {restarted:?}"
    );
    Ok(())
}

#[test]
fn the_harness_removes_what_it_made_even_when_a_test_panics() {
    if let Some(why) = netns::unavailable() {
        saturn_tests::missing_prerequisite(&format!("partition tests need root and iproute2 (`ip`): {why}"));
        return;
    }
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip runs")
    };
    // Left by a test process that no longer runs (no pid is above the kernel's limit).
    let stale = "saturn-pt-4194305-0-hub";
    ip(&["netns", "add", stale]);

    let made = std::sync::Mutex::new(None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = NetnsCluster::start(&setup(2)).expect("agents start");
        let prefix = cluster.agents[0].netns.trim_end_matches("a0").to_string();
        let pids: Vec<u32> = cluster.agents.iter().filter_map(|a| a.pid()).collect();
        *made.lock().unwrap_or_else(|p| p.into_inner()) = Some((prefix, pids, cluster.dir()));
        panic!("a scenario fails with the cluster running");
    }));
    assert!(outcome.is_err());
    let (prefix, pids, dir) = made
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the cluster started");
    let _ = std::fs::remove_dir_all(dir);

    let listing = String::from_utf8_lossy(&ip(&["netns", "list"]).stdout).into_owned();
    assert!(
        !listing.contains(stale),
        "a dead run's namespace was not removed: {listing}"
    );
    assert!(
        !listing.contains(&prefix),
        "namespaces {prefix}* outlived their cluster: {listing}"
    );
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "agent process {pid} outlived its cluster"
        );
    }
}
