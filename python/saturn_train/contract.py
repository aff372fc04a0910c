"""The Saturn job contract: the only module that reads `SATURN_*` and prints `SATURN …` lines.

See the agent's spec ("What a job process gets and says"). Everything else in the package
gets these values from `SaturnEnv` and reports through `Reporter`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Mapping, Optional


def _int(env: Mapping[str, str], name: str, default: Optional[int]) -> Optional[int]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"saturn_train: {name}={raw!r} is not an integer") from None


@dataclass(frozen=True)
class SaturnEnv:
    """What the agent told this process (defaults make a plain `python train.py` work)."""

    technique: Optional[str]
    gpus: int
    steps: Optional[int]
    start_step: Optional[int]
    checkpoint_dir: Optional[str]
    profile_steps: Optional[int]
    nnodes: int
    node_rank: int
    node_addr: Optional[str]
    rendezvous_timeout_s: float
    step_interval_s: float
    simulate_oom: bool
    device: Optional[str]
    gpu_memory_mib: Optional[int]
    checkpoint_every: int
    gpu_memory_cap_gib: Optional[float]

    @staticmethod
    def read(env: Mapping[str, str] = os.environ) -> "SaturnEnv":
        """Reads the environment; SATURN_TRAIN_* are this library's own settings."""
        timeout = env.get("SATURN_RENDEZVOUS_TIMEOUT_S", "").strip() or "180"
        interval = env.get("SATURN_TRAIN_STEP_INTERVAL_S", "").strip() or "1"
        return SaturnEnv(
            technique=env.get("SATURN_TECHNIQUE") or None,
            gpus=max(1, _int(env, "SATURN_GPUS", 1) or 1),
            steps=_int(env, "SATURN_STEPS", None),
            start_step=_int(env, "SATURN_START_STEP", None),
            checkpoint_dir=env.get("SATURN_CHECKPOINT_DIR") or None,
            profile_steps=_int(env, "SATURN_PROFILE_STEPS", None),
            nnodes=max(1, _int(env, "SATURN_NNODES", 1) or 1),
            node_rank=_int(env, "SATURN_NODE_RANK", 0) or 0,
            node_addr=env.get("SATURN_NODE_ADDR") or None,
            rendezvous_timeout_s=float(timeout),
            step_interval_s=float(interval),
            simulate_oom=env.get("SATURN_TRAIN_SIMULATE_OOM", "") == "1",
            device=env.get("SATURN_TRAIN_DEVICE") or None,
            gpu_memory_mib=_int(env, "SATURN_GPU_MEMORY_MIB", None),
            checkpoint_every=_int(env, "SATURN_TRAIN_CHECKPOINT_EVERY", 0) or 0,
            gpu_memory_cap_gib=float(env["SATURN_TRAIN_GPU_MEMORY_GIB"])
            if env.get("SATURN_TRAIN_GPU_MEMORY_GIB") else None,
        )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Reporter:
    """Prints the stdout protocol for one worker.

    Every host's first worker prints `SATURN step=N` (rate-limited to one line per
    `SATURN_TRAIN_STEP_INTERVAL_S`, default 1 s, the last step always); only global rank 0
    prints metrics and checkpoints.
    """

    def __init__(self, *, prints_steps: bool, prints_metrics: bool, interval_s: float) -> None:
        self.prints_steps = prints_steps
        self.prints_metrics = prints_metrics
        self.interval_s = interval_s
        self._last = float("-inf")

    def step(self, step: int, *, force: bool = False, **metrics: float) -> None:
        """Step `step` is done; `metrics` are printed along when the line is."""
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        if self.prints_steps:
            _say(f"SATURN step={step}")
        for name, value in metrics.items():
            self.metric(name, value)

    def metric(self, name: str, value: float) -> None:
        """`SATURN metric name=value` (rank 0 only)."""
        if self.prints_metrics:
            _say(f"SATURN metric {name}={value:.6g}")

    def checkpoint(self, step: int) -> None:
        """A checkpoint at `step` is durable (rank 0 only; call after the rename)."""
        if self.prints_metrics:
            _say(f"SATURN checkpoint step={step}")

    def note(self, text: str) -> None:
        """A human-readable line (rank 0 only)."""
        if self.prints_metrics:
            _say(f"saturn_train: {text}")
