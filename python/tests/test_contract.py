"""Trials, simulated OOM, SIGTERM without a checkpoint dir, errors that name the fix."""

from harness import job_env, run


def test_trial_tunes_knobs_and_reports_step_time():
    result = run(job_env("pipeline", 2, SATURN_PROFILE_STEPS=3))
    assert result.rc == 0, result.explain()
    assert result.metrics["trial_step_s"] > 0, result.explain()
    assert result.metrics["knob.n_microbatches"] in (2, 4, 8), result.explain()
    assert any(k.startswith("knob.schedule.") for k in result.metrics), result.explain()
    assert result.steps == [1, 2, 3], result.explain()
    assert result.checkpoints == []


def test_simulated_oom_exits_3():
    result = run(job_env("single", 1, SATURN_TRAIN_SIMULATE_OOM=1))
    assert result.rc == 3, result.explain()
    assert "out of memory" in result.stderr


def test_unknown_technique_names_the_fix():
    result = run(job_env("zero3", 1, steps=2))
    assert result.rc == 2, result.explain()
    assert "unknown technique 'zero3'" in result.stderr
    assert "register_technique" in result.stderr


def test_a_technique_that_cannot_run_at_this_gpu_count_exits_3_infeasible():
    # One-GPU techniques on two workers: not the user's mistake, the planner's to avoid.
    for technique in ("single", "spilling"):
        result = run(job_env(technique, 2, steps=2))
        assert result.rc == 3, result.explain()
        assert "infeasible" in result.stderr and "runs on 1 GPU" in result.stderr, result.explain()
