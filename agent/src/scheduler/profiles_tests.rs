//! The profile book's ladder, pruning and filling rules, scenario by scenario.

use super::*;
use crate::scheduler::shapes::up_hosts;
use crate::scheduler::test_support::{cluster, key, record, spec, submit};

/// One group `g` of one job with `techniques` on 1..=8 GPUs, on 3 hosts x 4 GPUs.
fn setup(techniques: &[&str]) -> ClusterState {
    let mut state = cluster(&[("a", 4), ("b", 4), ("c", 4)]);
    submit(&mut state, vec![spec("j", "g", techniques, 1, 8)]);
    state
}

fn book(state: &ClusterState) -> ProfileBook {
    ProfileBook::build(state, &up_hosts(state), state.jobs().values(), &SchedulerConfig::default())
}

fn series<'a>(book: &'a ProfileBook, technique: &str) -> &'a Series {
    let key = SeriesKey { group: "g".into(), technique: technique.into(), model: "SIM".into() };
    &book.series[&key]
}

#[test]
fn a_fresh_group_starts_every_technique_at_one_gpu() {
    let state = setup(&["ddp", "fsdp"]);
    let book = book(&state);
    assert_eq!(series(&book, "ddp").next, Some(Shape::single(1)));
    assert_eq!(series(&book, "fsdp").next, Some(Shape::single(1)));
    assert!(!series(&book, "ddp").ready());
}

#[test]
fn the_ladder_stops_when_doubling_stops_paying_and_the_rest_is_fitted() {
    let mut state = setup(&["ddp"]);
    record(&mut state, key("g", "ddp", 1, 1), Some(1.0));
    record(&mut state, key("g", "ddp", 2, 1), Some(0.55));
    assert_eq!(series(&book(&state), "ddp").next, Some(Shape::single(4)));
    record(&mut state, key("g", "ddp", 4, 1), Some(0.52));
    let book = book(&state);
    let ddp = series(&book, "ddp");
    assert_eq!(ddp.next, None, "2 -> 4 GPUs gained under 10%: the 2-host gang is not measured");
    assert!(ddp.ready());
    let (three, source) = ddp.step_time(Shape::single(3)).unwrap();
    assert!((0.52..=0.55).contains(&three) && source == Source::Fitted);
    let gang = Shape { gpus_per_host: 4, hosts: 2 };
    assert_eq!(ddp.step_time(gang), Some((0.52, Source::Fitted)), "no gain promised past the last rung");
    assert_eq!(ddp.step_time(Shape::single(4)), Some((0.52, Source::Measured)));
}

#[test]
fn a_replicated_technique_out_of_memory_once_is_out_everywhere() {
    let mut state = setup(&["ddp"]);
    record(&mut state, key("g", "ddp", 1, 1), None);
    let book = book(&state);
    let ddp = series(&book, "ddp");
    assert_eq!(ddp.next, None);
    assert!(ddp.shapes.iter().all(|s| ddp.step_time(*s).is_none()));
}

#[test]
fn a_sharded_technique_out_of_memory_on_few_gpus_climbs_on() {
    let mut state = setup(&["fsdp"]);
    record(&mut state, key("g", "fsdp", 1, 1), None);
    record(&mut state, key("g", "fsdp", 2, 1), Some(0.8));
    let book = book(&state);
    let fsdp = series(&book, "fsdp");
    assert_eq!(fsdp.next, Some(Shape::single(4)));
    assert_eq!(fsdp.step_time(Shape::single(1)), None);
    assert_eq!(fsdp.step_time(Shape::single(2)), Some((0.8, Source::Measured)));
}

#[test]
fn a_technique_failing_above_a_count_that_ran_stops_there() {
    let mut state = setup(&["spilling"]);
    record(&mut state, key("g", "spilling", 1, 1), Some(2.0));
    assert_eq!(series(&book(&state), "spilling").next, Some(Shape::single(2)));
    record(&mut state, key("g", "spilling", 2, 1), None);
    let book = book(&state);
    let spilling = series(&book, "spilling");
    assert_eq!(spilling.next, None, "not tried on 4 GPUs after failing on 2");
    assert!(spilling.ready());
    assert_eq!(spilling.step_time(Shape::single(1)), Some((2.0, Source::Measured)));
    for shape in [Shape::single(2), Shape::single(3), Shape::single(4), Shape { gpus_per_host: 4, hosts: 2 }] {
        assert_eq!(spilling.step_time(shape), None, "{shape:?} is not fitted from the 1-GPU run");
    }
}

#[test]
fn a_clearly_slower_technique_is_pruned_after_two_counts() {
    let mut state = setup(&["ddp", "spilling"]);
    for (n, ddp, spilling) in [(1, 1.0, 3.0), (2, 0.55, 1.7)] {
        record(&mut state, key("g", "ddp", n, 1), Some(ddp));
        record(&mut state, key("g", "spilling", n, 1), Some(spilling));
    }
    let book = book(&state);
    let spilling = series(&book, "spilling");
    assert_eq!(spilling.pruned_by.as_deref(), Some("ddp"));
    assert_eq!(spilling.next, None);
    assert!(spilling.ready());
    assert!(series(&book, "ddp").pruned_by.is_none());
}

#[test]
fn user_given_step_times_are_never_trial_run() {
    let mut state = cluster(&[("a", 4)]);
    let mut job = spec("j", "g", &["fsdp"], 1, 4);
    job.profile.insert("fsdp".into(), [(2, 0.4), (4, 0.25)].into_iter().collect());
    submit(&mut state, vec![job]);
    let book = book(&state);
    let fsdp = series(&book, "fsdp");
    assert!(fsdp.user_given && fsdp.next.is_none());
    let (three, source) = fsdp.step_time(Shape::single(3)).unwrap();
    assert!((0.25..=0.4).contains(&three) && source == Source::User);
}

#[test]
fn a_job_is_ready_to_plan_before_its_gang_rung_is_measured() {
    let mut state = setup(&["fsdp"]);
    for (n, t) in [(1, 1.0), (2, 0.5), (4, 0.26)] {
        record(&mut state, key("g", "fsdp", n, 1), Some(t));
    }
    let book = book(&state);
    let fsdp = series(&book, "fsdp");
    assert_eq!(fsdp.next, Some(Shape { gpus_per_host: 4, hosts: 2 }));
    assert!(fsdp.ready());
}
