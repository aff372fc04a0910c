"""Every technique trains the tiny GPT exactly like one process does (real gloo, no mocks).

Tolerance: loss within 1e-4 absolute per step over the first STEPS steps (the techniques only
reorder float reductions: observed differences are 0 to ~1e-6).
"""

import pytest

from harness import job_env, run

STEPS = 5
LOSS_ATOL = 1e-4


@pytest.mark.parametrize("technique,gpus", [("ddp", 2), ("fsdp", 2), ("pipeline", 2),
                                            ("spilling", 1)])
def test_technique_matches_single_process_loss_trajectory(technique, gpus, straight):
    reference, _ = straight
    result = run(job_env(technique, gpus, steps=STEPS))
    assert result.rc == 0, result.explain()
    assert sorted(result.losses) == list(range(1, STEPS + 1)), result.explain()
    for step in range(1, STEPS + 1):
        assert abs(result.losses[step] - reference.losses[step]) <= LOSS_ATOL, (
            f"{technique}/{gpus} step {step}: loss {result.losses[step]} vs single "
            f"{reference.losses[step]}")
    assert reference.losses[STEPS] < reference.losses[1], "the reference run did not learn"
