//! Scenario (spec: "A job whose script ignores all of this still runs"): a job whose
//! script prints no `SATURN` line at all is profiled, found unmeasurable (its trial ends
//! well without a step), planned on its largest GPU count for its `duration_estimate_s`,
//! run, and completed on exit 0; the plan shows that length.

use std::time::Duration;

use saturn_agent::views::PlanView;
use saturn_tests::{eventually, Harness, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_reports_steps_runs_and_completes() {
    let harness = Harness::start(&Setup::new(1)).expect("agent starts");
    let result = async {
        harness.wait_formed(0, 1, Duration::from_secs(30)).await?;
        // It ignores SATURN_PROFILE_STEPS too: the trial runs it whole and it exits 0.
        let job = "[[job]]\nname = \"quiet\"\ncommand = [\"sh\", \"-c\", \"echo training without a word to Saturn; sleep 2\"]\n\
                   steps = 500\ntechniques = [\"fsdp\", \"ddp\"]\ngpus = [1, 4]\nduration_estimate_s = 1800\n";
        let id = harness.submit(0, job).await?.jobs.remove(0).id;
        let planned = eventually("the quiet job planned", Duration::from_secs(60), || async {
            let plan: PlanView = harness.client(0).get_json("/v1/plan").await?;
            Ok(plan.assignments.into_iter().find(|a| a.job == id))
        })
        .await?;
        let ended = harness.wait_jobs_ended(0, std::slice::from_ref(&id), Duration::from_secs(60)).await?;
        anyhow::Ok((planned, ended))
    }
    .await;
    let (planned, ended) = result.unwrap_or_else(|err| panic!("{err:#}\n{}", harness.logs()));
    let gpus: usize = planned.placement.iter().map(|p| p.gpus.len()).sum();
    assert_eq!((planned.technique.as_str(), gpus), ("fsdp", 4), "first technique, largest GPU count: {planned:?}");
    let length = planned.end_s - planned.start_s;
    assert!((1700.0..=1900.0).contains(&length), "planned for its duration estimate (1800 s), not {length} s");
    assert_eq!(ended[0].state, "completed", "{:?}", ended[0]);
    assert_eq!(ended[0].training_attempts, 1, "ran once for real: {:?}", ended[0]);
}
