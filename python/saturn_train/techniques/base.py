"""The one interface every technique implements, and what they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..distributed import Context
from ..errors import Infeasible, TaskError
from ..task import Batch, Task

FullState = dict[str, Any]
"""`{"model": {fqn: tensor}, "optim": {"state": {fqn: {...}}, "param_groups": [...]}}`:
full (unsharded) tensors on CPU under the plain model's key names, so a state written under
one technique loads under any other."""

Knobs = dict[str, Any]


class Technique(ABC):
    """How one task trains on `ctx.world_size` workers.

    Lifecycle: `__init__` (cheap) → `setup(example)` (build model and optimizer, usually as
    `self.model` and `self.opt`) → `train_step()` per step; `full_state()`/`load_full_state()` around checkpoints. `knob_space()` lists
    the knob settings a trial may try (the first is the default).
    """

    name: ClassVar[str] = "?"
    needs_blocks: ClassVar[bool] = False

    def __init__(self, ctx: Context, task: Task, knobs: Optional[Knobs] = None) -> None:
        self.ctx = ctx
        self.task = task
        self.knobs: Knobs = {**self.default_knobs(ctx, task), **(knobs or {})}
        if self.needs_blocks and task.blocks is None:
            raise TaskError(f"technique '{self.name}' needs `blocks`: pass "
                            f"Task(blocks=lambda m: m.layers) (the model's nn.ModuleList of "
                            f"repeated blocks)")

    @classmethod
    def default_knobs(cls, ctx: Context, task: Task) -> Knobs:
        """Knob values used when neither the task nor a trial picks them."""
        return {}

    @classmethod
    def knob_space(cls, ctx: Context, task: Task) -> list[Knobs]:
        """Settings a trial tries (each merged over the defaults); `[{}]`: nothing to tune."""
        return [{}]

    @abstractmethod
    def setup(self, example: Batch) -> None:
        """Builds the model (seeded: same init under every technique) and optimizer.

        `example` is the first global batch this run trains on (for shapes only)."""

    @abstractmethod
    def train_step(self, batch: Batch) -> float:
        """One optimizer step on the *global* batch; the global mean loss (valid on rank 0)."""

    def full_state(self) -> Optional[FullState]:
        """Collective: the full state on rank 0, None elsewhere.

        This default gathers `self.model` and `self.opt` (wrapped or sharded as they may be)
        through `torch.distributed.checkpoint`; a technique that keeps its model in pieces
        (pipeline stages) overrides it."""
        state = dsd_full_state(self.model, self.opt)
        return state if self.ctx.rank == 0 else None

    def load_full_state(self, state: FullState) -> None:
        """Every rank gets the same full state and takes its share (default: into
        `self.model` and `self.opt`)."""
        dsd_load_full_state(self.model, self.opt, state)

    # -- shared helpers ------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """The task's model, initialised from the task's seed."""
        torch.manual_seed(self.task.seed)
        model = self.task.model()
        if not isinstance(model, nn.Module):
            raise TaskError("Task(model=...) must return an nn.Module (a builder, not a model)")
        return model

    def blocks_of(self, model: nn.Module) -> nn.ModuleList:
        """`task.blocks(model)`, checked."""
        assert self.task.blocks is not None
        blocks = self.task.blocks(model)
        if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
            raise TaskError("Task(blocks=...) must return the model's non-empty nn.ModuleList "
                            "of blocks, e.g. blocks=lambda m: m.layers")
        return blocks

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """`task.optimizer(params, lr)`."""
        return self.task.optimizer(params, self.task.lr)

    def to_device(self, batch: Batch) -> Batch:
        """The batch on this worker's device."""
        return tuple(t.to(self.ctx.device, non_blocking=True) for t in batch)  # type: ignore[return-value]


def split(batch: Batch, index: int, count: int) -> Batch:
    """Part `index` of `count` equal parts of the batch along dim 0."""
    size = batch[0].shape[0]
    if size % count:
        raise Infeasible(f"the global batch of {size} samples does not split into {count} equal "
                        f"parts (data-parallel ranks x micro-batches): use a batch size "
                        f"divisible by {count}")
    part = size // count
    return tuple(t[index * part:(index + 1) * part] for t in batch)  # type: ignore[return-value]


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def dsd_full_state(model: nn.Module, opt: torch.optim.Optimizer) -> FullState:
    """Full state via `torch.distributed.checkpoint.state_dict` (unwraps DDP/FSDP names)."""
    return {"model": get_model_state_dict(model, options=_FULL),
            "optim": get_optimizer_state_dict(model, opt, options=_FULL)}


def dsd_load_full_state(model: nn.Module, opt: torch.optim.Optimizer, state: FullState,
                        strict: bool = True) -> None:
    """Loads a full state into a (possibly wrapped or sharded) model and its optimizer."""
    opts = StateDictOptions(full_state_dict=True, strict=strict)
    set_model_state_dict(model, state["model"], options=opts)
    set_optimizer_state_dict(model, opt, state["optim"], options=opts)
