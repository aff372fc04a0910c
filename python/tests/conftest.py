"""Torch must be importable; under CI=true its absence fails the run instead of skipping."""

import os

import pytest

try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(
            "torch is not importable and CI=true: run the tests with the venv's python "
            "($SATURN_PYTHON, default $HOME/.cache/saturn-venv/bin/python)")
    pytest.skip("torch is not installed (outside CI)", allow_module_level=True)


@pytest.fixture(scope="session")
def straight(tmp_path_factory):
    """The reference: `single` on one worker, 30 steps straight, checkpoint at the end."""
    from harness import job_env, run

    ckpt = tmp_path_factory.mktemp("straight")
    result = run(job_env("single", 1, SATURN_CHECKPOINT_DIR=ckpt))
    assert result.rc == 0, result.explain()
    assert sorted(result.losses) == list(range(1, 31)), result.explain()
    return result, ckpt
