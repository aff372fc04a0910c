"""Runs the tests' job as the agent would (environment in, `SATURN …` lines out)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

JOB = Path(__file__).with_name("gpt_job.py")
TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env(technique: str, gpus: int, steps: int = 30, **extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SATURN_") and k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(SATURN_TECHNIQUE=technique, SATURN_GPUS=str(gpus), SATURN_STEPS=str(steps),
               SATURN_TRAIN_STEP_INTERVAL_S="0", SATURN_TRAIN_DEVICE="cpu",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class Run:
    """What a job printed, parsed."""

    rc: int
    stdout: str
    stderr: str
    losses: dict[int, float] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def parse(rc: int, out: str, err: str) -> "Run":
        run = Run(rc, out, err)
        step = 0
        for line in out.splitlines():
            if m := re.fullmatch(r"SATURN step=(\d+)", line):
                step = int(m[1])
                run.steps.append(step)
            elif m := re.fullmatch(r"SATURN checkpoint step=(\d+)", line):
                run.checkpoints.append(int(m[1]))
            elif m := re.fullmatch(r"SATURN metric (\S+)=(\S+)", line):
                run.metrics[m[1]] = float(m[2])
                if m[1] == "loss":
                    run.losses[step] = float(m[2])
        return run

    def explain(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def start(env: dict[str, str]) -> subprocess.Popen:
    """The job as its own process group (so a test can kill all of it, like the agent)."""
    return subprocess.Popen([sys.executable, str(JOB)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run(env: dict[str, str], timeout: float = TIMEOUT_S) -> Run:
    proc = start(env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"job did not finish in {timeout}s\n{out}\n{err}")
    return Run.parse(proc.returncode, out, err)


def run_until(env: dict[str, str], line_matches: Callable[[str], bool], then: signal.Signals,
              whole_group: bool) -> Run:
    """Starts the job, sends `then` once a stdout line matches, returns what it printed."""
    proc = start(env)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    sent = False
    for line in proc.stdout:
        lines.append(line)
        if not sent and line_matches(line.strip()):
            if whole_group:
                os.killpg(proc.pid, then)
            else:
                proc.send_signal(then)
            sent = True
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    rc = proc.wait(timeout=60)
    err = proc.stderr.read() if proc.stderr else ""
    return Run.parse(rc, "".join(lines), err)


def checkpoint_state(directory: Path, step: int) -> dict:
    """Checkpoint `step` of a job, read with the library's own reader."""
    from saturn_train import checkpoint

    return checkpoint.read(directory / f"step-{step}")


def read_log(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def wait_gone(pid: int, timeout: float = 30) -> Optional[bool]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
