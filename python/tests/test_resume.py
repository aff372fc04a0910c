"""Resume chain across techniques and GPU counts matches a straight run.

DDP on 2 workers → SIGTERM (finishes the step, checkpoints, exits 0) → pipeline on 2 from
that checkpoint, checkpointing every 5 steps → SIGKILL of its whole process group after a
checkpoint at step >= 20 → spilling on 1 worker from the last checkpoint to step 30.
Compared with `single` run straight for 30 steps: loss per step within 1e-4 and every
parameter within 1e-4 absolute (AdamW on float32; observed differences ~1e-7).
"""

import re
import signal

from harness import checkpoint_state, job_env, read_log, run, run_until

ATOL = 1e-4


def test_resume_chain_ddp_pipeline_spilling_matches_straight_run(straight, tmp_path):
    reference, ref_ckpt = straight
    ckpt, log = tmp_path / "ckpt", tmp_path / "data.log"
    common = dict(SATURN_CHECKPOINT_DIR=ckpt, TEST_DATA_LOG=log)

    first = run_until(job_env("ddp", 2, TEST_STEP_SLEEP=0.1, **common),
                      lambda line: line == "SATURN step=10", signal.SIGTERM, whole_group=False)
    assert first.rc == 0, first.explain()
    assert len(first.checkpoints) == 1 and 10 <= first.checkpoints[0] < 30, first.explain()
    s1 = first.checkpoints[0]
    assert read_log(log) == list(range(0, s1))

    def late_checkpoint(line: str) -> bool:
        m = re.fullmatch(r"SATURN checkpoint step=(\d+)", line)
        return bool(m) and int(m[1]) >= 20

    second = run_until(job_env("pipeline", 2, SATURN_START_STEP=s1, TEST_STEP_SLEEP=0.1,
                               SATURN_TRAIN_CHECKPOINT_EVERY=5, **common),
                       late_checkpoint, signal.SIGKILL, whole_group=True)
    assert second.rc == -signal.SIGKILL, second.explain()
    s2 = max(second.checkpoints)
    assert 20 <= s2 < 30, second.explain()
    assert min(second.losses) == s1 + 1, "pipeline did not continue where ddp stopped"

    log.write_text("")
    third = run(job_env("spilling", 1, SATURN_START_STEP=s2, **common))
    assert third.rc == 0, third.explain()
    assert read_log(log) == list(range(s2, 30)), "the data position did not continue"
    assert third.checkpoints == [30]

    chain = {**first.losses, **second.losses, **third.losses}
    for step in range(1, 31):
        assert abs(chain[step] - reference.losses[step]) <= ATOL, (step, chain[step],
                                                                   reference.losses[step])
    got = checkpoint_state(ckpt, 30)
    want = checkpoint_state(ref_ckpt, 30)
    assert got["meta"]["data_step"] == 30
    assert set(got["model"]) == set(want["model"])
    for name, tensor in want["model"].items():
        diff = (got["model"][name] - tensor).abs().max().item()
        assert diff <= ATOL, f"{name}: max abs diff {diff}"
    for name, state in want["optim"]["state"].items():
        diff = (got["optim"]["state"][name]["exp_avg"] - state["exp_avg"]).abs().max().item()
        assert diff <= ATOL, f"optimizer state of {name}: max abs diff {diff}"


def test_a_users_own_technique_checkpoints_and_resumes_under_single(straight, tmp_path):
    reference, _ = straight
    ckpt = tmp_path / "ckpt"
    first = run(job_env("accumulated", 1, steps=10, SATURN_CHECKPOINT_DIR=ckpt, TEST_OWN_TECHNIQUE=1))
    assert first.rc == 0 and first.checkpoints == [10], first.explain()
    second = run(job_env("single", 1, SATURN_START_STEP=10, SATURN_CHECKPOINT_DIR=ckpt))
    assert second.rc == 0 and min(second.losses) == 11, second.explain()
    chain = {**first.losses, **second.losses}
    for step in range(1, 31):
        assert abs(chain[step] - reference.losses[step]) <= ATOL, (step, chain[step],
                                                                   reference.losses[step])
