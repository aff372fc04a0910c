"""Trial runs (`SATURN_PROFILE_STEPS` set): tune the technique's knobs, then show the step time.

The agent measures a trial's step time from the arrival of `SATURN step=` lines. So the
tuning comes first and prints no step lines: each knob setting of `knob_space()` (minus the
ones the task fixed) runs a warm-up step and two timed steps; the fastest (slowest rank's
time) wins and is reported as `SATURN metric trial_step_s=…` and `SATURN metric
knob.NAME=VALUE` (a string knob as `knob.NAME.VALUE=1`). Then `SATURN_PROFILE_STEPS` steps
run with the winning knobs, each printing `SATURN step=N`. Nothing is checkpointed; SIGTERM
(the agent stops a trial once its measurement settled) exits 0 after the current step.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

import torch

from .distributed import all_max
from .errors import TaskError

if TYPE_CHECKING:
    from .contract import Reporter, SaturnEnv
    from .distributed import Context
    from .task import Task
    from .techniques import Knobs, Technique
    from .worker import DataStream

_WARMUP = 1
_TIMED = 2


class _Flag:
    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._on)
        signal.signal(signal.SIGINT, self._on)

    def _on(self, _s: int, _f: object) -> None:
        self.set = True


def _sync(ctx: "Context") -> None:
    if ctx.is_cuda:
        torch.cuda.synchronize(ctx.device)


def _time_steps(tech: "Technique", ctx: "Context", data: "DataStream", first: int) -> float:
    for i in range(_WARMUP):
        tech.train_step(data.at(first + i))
    _sync(ctx)
    t0 = time.perf_counter()
    for i in range(_TIMED):
        tech.train_step(data.at(first + _WARMUP + i))
    _sync(ctx)
    return all_max(ctx, (time.perf_counter() - t0) / _TIMED)


def _report_knobs(rep: "Reporter", knobs: "Knobs") -> None:
    for name, value in sorted(knobs.items()):
        if isinstance(value, bool):
            rep.metric(f"knob.{name}", float(value))
        elif isinstance(value, (int, float)):
            rep.metric(f"knob.{name}", value)
        else:
            rep.metric(f"knob.{name}.{value}", 1.0)


def candidates(cls: "type[Technique]", ctx: "Context", task: "Task") -> list[dict[str, Any]]:
    """The technique's knob settings with the task's fixed knobs applied, without repeats."""
    out: list[dict[str, Any]] = []
    for knobs in cls.knob_space(ctx, task):
        merged = {**knobs, **task.knobs}
        if merged not in out:
            out.append(merged)
    return out or [dict(task.knobs)]


def run(task: "Task", env: "SaturnEnv", ctx: "Context", rep: "Reporter",
        cls: "type[Technique]", data: "DataStream") -> int:
    """The whole trial; returns the exit status (0)."""
    from .worker import simulate_oom

    flag = _Flag()
    first = env.start_step or 0
    space = candidates(cls, ctx, task)
    best_knobs, best_time = space[0], float("inf")
    simulate_oom(env)
    if len(space) > 1:
        for knobs in space:
            tech = cls(ctx, task, knobs)
            try:
                tech.setup(data.at(first))
            except TaskError as e:  # e.g. more micro-batches than samples: same on every rank
                rep.note(f"trial {cls.name} {tech.knobs}: skipped ({e})")
                continue
            seconds = _time_steps(tech, ctx, data, first)
            rep.note(f"trial {cls.name} {tech.knobs}: {seconds:.4f} s/step")
            if seconds < best_time:
                best_knobs, best_time = knobs, seconds
            del tech
            if all_max(ctx, float(flag.set)) > 0:
                return 0
    tech = cls(ctx, task, best_knobs)
    tech.setup(data.at(first))
    if best_time == float("inf"):
        best_time = _time_steps(tech, ctx, data, first)
    rep.metric("trial_step_s", best_time)
    _report_knobs(rep, tech.knobs)
    rep.note(f"trial {cls.name}: tuned knobs {tech.knobs}, {best_time:.4f} s/step")
    rep.interval_s = 0.0
    for i in range(env.profile_steps or 0):
        loss = tech.train_step(data.at(first + i))
        _sync(ctx)
        rep.step(first + i + 1, loss=loss)
        if all_max(ctx, float(flag.set)) > 0:
            break
    return 0
