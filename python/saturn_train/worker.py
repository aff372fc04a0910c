"""One worker's training loop: resume, steps, reports, SIGTERM, checkpoints."""

from __future__ import annotations

import signal
import sys
import time
from typing import Iterator, Optional

import torch
import torch.distributed as dist

from . import checkpoint, trial
from .contract import Reporter, SaturnEnv
from .distributed import Context, all_max, init
from .errors import EXIT_INFEASIBLE, EXIT_OOM, EXIT_USAGE, Infeasible, TaskError
from .task import Batch, Task
from .techniques import Technique, technique_class


class DataStream:
    """The global batch of each step, from a function of the step or an iterable."""

    def __init__(self, task: Task) -> None:
        self._fn = task.data if callable(task.data) else None
        self._it: Optional[Iterator[Batch]] = None if self._fn else iter(task.data)  # type: ignore[arg-type]
        self._pos = 0
        self._cached: Optional[tuple[int, Batch]] = None

    def at(self, step: int) -> Batch:
        """The batch of step `step` (0-based); an iterable is advanced to it."""
        if self._cached is not None and self._cached[0] == step:
            return self._cached[1]
        if self._fn is not None:
            batch = self._fn(step)
        else:
            assert self._it is not None
            while self._pos < step:
                next(self._it)
                self._pos += 1
            self._pos += 1
            batch = next(self._it)
        self._cached = (step, batch)
        return batch


def throughput(batch: Batch, seconds: float, task: Task) -> dict[str, float]:
    """samples_per_s, and tokens_per_s for token inputs (or `task.tokens_per_sample`)."""
    inputs = batch[0]
    out = {"samples_per_s": inputs.shape[0] / seconds}
    per_sample = task.tokens_per_sample
    if per_sample is None and inputs.dim() == 2 and not inputs.is_floating_point():
        per_sample = inputs.shape[1]
    if per_sample:
        out["tokens_per_s"] = inputs.shape[0] * per_sample / seconds
    return out


def peak_memory(ctx: Context) -> dict[str, float]:
    """`peak_mem_mib`: the most GPU memory this worker's tensors held so far (GPU only)."""
    if not ctx.is_cuda:
        return {}
    return {"peak_mem_mib": torch.cuda.max_memory_allocated(ctx.device) / 2**20}


def technique_name(env: SaturnEnv, task: Task, ctx: Context) -> str:
    """SATURN_TECHNIQUE, else the task's, else `single` on one worker and `ddp` on more."""
    return env.technique or task.technique or ("single" if ctx.world_size == 1 else "ddp")


class _Stop:
    """SIGTERM/SIGINT: finish the current step, checkpoint, exit 0."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, _signum: int, _frame: object) -> None:
        self.requested = True


def simulate_oom(env: SaturnEnv) -> None:
    """SATURN_TRAIN_SIMULATE_OOM=1 raises torch's OOM error (a test hook, not a measurement)."""
    if env.simulate_oom:
        raise torch.OutOfMemoryError("simulated out of memory (SATURN_TRAIN_SIMULATE_OOM=1)")


def _train(task: Task, env: SaturnEnv, ctx: Context, rep: Reporter) -> int:
    name = technique_name(env, task, ctx)
    cls = technique_class(name)
    if env.profile_steps:
        return trial.run(task, env, ctx, rep, cls, DataStream(task))
    total = env.steps if env.steps is not None else task.steps
    if total is None:
        raise TaskError("how many steps? set SATURN_STEPS (the agent does) or Task(steps=...)")
    stop = _Stop()
    tech: Technique = cls(ctx, task)
    simulate_oom(env)
    saved = checkpoint.load(env.checkpoint_dir, env.start_step, ctx.rank)
    start = int(saved["meta"]["step"]) if saved is not None else 0
    data = DataStream(task)
    tech.setup(data.at(start))
    if saved is not None:
        tech.load_full_state({"model": saved["model"], "optim": saved["optim"]})
        checkpoint.restore_rng(saved)
        rep.note(f"resumed at step {start} under {name} on {ctx.world_size} worker(s)")
    else:
        rep.note(f"training {name} on {ctx.world_size} worker(s), knobs {tech.knobs}")
    step = start
    while step < total:
        batch = data.at(step)
        t0 = time.perf_counter()
        loss = tech.train_step(batch)
        if ctx.is_cuda:
            torch.cuda.synchronize(ctx.device)
        seconds = time.perf_counter() - t0
        step += 1
        stopping = all_max(ctx, 1.0 if stop.requested else 0.0) > 0
        rep.step(step, force=stopping or step == total, loss=loss,
                 **throughput(batch, seconds, task), **peak_memory(ctx))
        every = env.checkpoint_every or task.checkpoint_every
        periodic = every and step % every == 0
        if stopping or periodic or step == total:
            _checkpoint(tech, env, ctx, rep, step)
        if stopping:
            rep.note(f"stopped at step {step} (SIGTERM)")
            return 0
    return 0


def _checkpoint(tech: Technique, env: SaturnEnv, ctx: Context, rep: Reporter, step: int) -> None:
    if not env.checkpoint_dir:
        return
    full = tech.full_state()
    if ctx.rank == 0:
        assert full is not None
        checkpoint.save(env.checkpoint_dir, step, full, data_step=step)
        rep.checkpoint(step)
    dist.barrier()


def run(task: Task) -> None:
    """The worker's entry point (the launcher re-executed the script with RANK etc.)."""
    env = SaturnEnv.read()
    ctx = init(env, task.device)
    rep = Reporter(prints_steps=ctx.local_rank == 0, prints_metrics=ctx.rank == 0,
                   interval_s=env.step_interval_s)
    try:
        code = _train(task, env, ctx, rep)
    except torch.OutOfMemoryError as e:
        sys.stderr.write(f"saturn_train: rank {ctx.rank}: out of memory ({e}); exit {EXIT_OOM} "
                         f"(this configuration is infeasible)\n")
        sys.stderr.flush()
        _hard_exit(EXIT_OOM)
    except Infeasible as e:
        sys.stderr.write(f"saturn_train: rank {ctx.rank}: infeasible: {e}; exit {EXIT_INFEASIBLE}\n")
        sys.stderr.flush()
        _hard_exit(EXIT_INFEASIBLE)
    except TaskError as e:
        sys.stderr.write(f"saturn_train: {e}\n")
        sys.stderr.flush()
        _hard_exit(EXIT_USAGE)
    dist.destroy_process_group()
    sys.exit(code)


def _hard_exit(code: int) -> None:
    """Exits without collective teardown: peers may be waiting in a collective."""
    import os
    sys.stdout.flush()
    os._exit(code)
