"""`pipeline`: `torch.distributed.pipelining`, one stage per rank over the model's blocks.

Stages are contiguous runs of blocks balanced by parameter count; the modules before the
first block belong to stage 0 and those after the last block to the last stage (found by
`layout.trace`, no annotations needed). Every rank builds the whole model from the same seed
and keeps its blocks; the others become pass-throughs. A non-first stage still runs the
(frozen, cheap) modules before the blocks on a fixed example input to reach its first block,
whose input is then replaced by the activation received from the previous stage; a non-last
stage ends at its last block. Knobs: `n_microbatches` (the global batch is split into that
many micro-batches; gradients are averaged over them, so the update equals one full-batch
step) and `schedule` (`gpipe` or `1f1b`).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from ..errors import TaskError
from ..task import Batch
from .base import FullState, Knobs, Technique, dsd_load_full_state, split
from .layout import balance, trace

_SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


class _Skip(nn.Module):
    """A block owned by another stage: passes the activation through."""

    def forward(self, x: torch.Tensor, *_a: Any, **_k: Any) -> torch.Tensor:
        return x


class _StageExit(Exception):
    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out


class StageModule(nn.Module):
    """The part of `model` one stage computes, with the model's own key names inside."""

    def __init__(self, model: nn.Module, blocks: nn.ModuleList, owned: range, first: bool,
                 last: bool, example: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.first, self.last = first, last
        self._inject: Optional[torch.Tensor] = None
        self.register_buffer("_example", example, persistent=False)
        for i in range(len(blocks)):
            if i not in owned:
                blocks[i] = _Skip()
        if not last:
            blocks[owned.stop - 1].register_forward_hook(self._exit)
        if not first:
            blocks[owned.start].register_forward_pre_hook(self._enter)

    def _exit(self, _m: nn.Module, _a: object, out: torch.Tensor) -> None:
        raise _StageExit(out)

    def _enter(self, _m: nn.Module, args: tuple) -> tuple:
        return (self._inject,) + tuple(args[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.first:
            self._inject = x
            x = self._example
        try:
            return self.model(x)
        except _StageExit as e:
            return e.out
        finally:
            self._inject = None


class Pipeline(Technique):
    """GPipe or 1F1B over `world_size` stages (one per rank)."""

    name = "pipeline"
    needs_blocks = True

    @classmethod
    def default_knobs(cls, ctx, task) -> Knobs:
        return {"n_microbatches": max(2, ctx.world_size), "schedule": "1f1b"}

    @classmethod
    def knob_space(cls, ctx, task) -> list[Knobs]:
        n = ctx.world_size
        return [{"n_microbatches": m, "schedule": "1f1b"} for m in (n, 2 * n, 4 * n)] + [
            {"n_microbatches": 2 * n, "schedule": "gpipe"}]

    def setup(self, example: Batch) -> None:
        ctx, stages = self.ctx, self.ctx.world_size
        schedule = _SCHEDULES.get(str(self.knobs["schedule"]))
        if schedule is None:
            raise TaskError(f"pipeline knob schedule={self.knobs['schedule']!r}: use one of "
                            f"{sorted(_SCHEDULES)}")
        n_micro = int(self.knobs["n_microbatches"])
        model = self.build_model()
        blocks = self.blocks_of(model)
        inputs, _ = split(example, 0, n_micro)
        layout = trace(model, blocks, inputs)
        ranges = balance(layout.block_params, stages)
        s = ctx.rank
        self.owned = ranges[s]
        self.first, self.last = s == 0, s == stages - 1
        with torch.no_grad():
            example_out = model(inputs)
        names = self._owned_names(model, blocks, layout)
        for name, p in model.named_parameters():
            p.requires_grad_(name in names)
        self.inner = model
        module = StageModule(model, blocks, self.owned, self.first, self.last,
                             inputs.to(ctx.device)).to(ctx.device)
        self.owned_names = names
        self.owned_keys = self._owned_keys(model, blocks, names)
        act = lambda i: torch.empty(layout.block_outputs[i], device=ctx.device,  # noqa: E731
                                    requires_grad=True)
        in_args = inputs.to(ctx.device) if self.first else act(self.owned.start - 1)
        out_args = example_out.to(ctx.device) if self.last else act(self.owned.stop - 1)
        self.stage = PipelineStage(module, s, stages, ctx.device, input_args=in_args,
                                   output_args=out_args)
        self.schedule = schedule(self.stage, n_micro, loss_fn=self.task.loss)
        self.opt = self.make_optimizer([p for n, p in model.named_parameters() if n in names])

    def _owned_names(self, model: nn.Module, blocks: nn.ModuleList, layout) -> set[str]:
        prefix = {id(b): n for n, b in model.named_modules()}
        names: set[str] = set()
        for i in self.owned:
            bname = prefix[id(blocks[i])]
            names |= {f"{bname}.{n}" for n, _ in blocks[i].named_parameters()}
        if self.first:
            names |= layout.pre
        if self.last:
            names |= layout.post
        return names

    def _owned_keys(self, model: nn.Module, blocks: nn.ModuleList, names: set[str]) -> set[str]:
        """Parameters this stage trains, plus buffers of its blocks (stage 0: the others')."""
        block_prefixes = [n + "." for n, m in model.named_modules() if any(m is b for b in blocks)]
        mine = tuple(block_prefixes[i] for i in self.owned)
        keys = set(names)
        for key, _ in model.named_buffers():
            in_block = any(key.startswith(p) for p in block_prefixes)
            if key.startswith(mine) or (self.first and not in_block):
                keys.add(key)
        return keys

    def train_step(self, batch: Batch) -> float:
        inputs, targets = self.to_device(batch)
        self.opt.zero_grad(set_to_none=True)
        losses: list[torch.Tensor] = []
        if self.first and self.last:
            self.schedule.step(inputs, target=targets, losses=losses)
        elif self.first:
            self.schedule.step(inputs)
        elif self.last:
            self.schedule.step(target=targets, losses=losses)
        else:
            self.schedule.step()
        self.opt.step()
        mean = torch.stack(losses).detach().mean().float() if losses else torch.zeros((), device=self.ctx.device)
        dist.all_reduce(mean)  # only the last stage contributes
        return float(mean)

    def full_state(self) -> Optional[FullState]:
        model_sd = {k: v.detach().cpu() for k, v in self.inner.state_dict().items()
                    if k in self.owned_keys}
        osd = get_optimizer_state_dict(self.inner, self.opt, options=StateDictOptions())
        mine = {"model": model_sd, "optim": _cpu(osd)}
        parts: list[Optional[dict]] = [None] * self.ctx.world_size
        dist.gather_object(mine, parts if self.ctx.rank == 0 else None, dst=0)
        if self.ctx.rank != 0:
            return None
        return _merge([p for p in parts if p is not None])

    def load_full_state(self, state: FullState) -> None:
        optim = state["optim"]
        mine = {"state": {k: v for k, v in optim["state"].items() if k in self.owned_names},
                "param_groups": [{**g, "params": [p for p in g["params"] if p in self.owned_names]}
                                 for g in optim["param_groups"]]}
        dsd_load_full_state(self.inner, self.opt, {"model": state["model"], "optim": mine},
                            strict=False)


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


def _merge(parts: list[dict]) -> FullState:
    model: dict[str, Any] = {}
    state: dict[str, Any] = {}
    groups: list[dict] = []
    for part in parts:
        model.update(part["model"])
        state.update(part["optim"]["state"])
        for i, g in enumerate(part["optim"]["param_groups"]):
            if i == len(groups):
                groups.append({**g, "params": []})
            groups[i]["params"].extend(g["params"])
    return {"model": model, "optim": {"state": state, "param_groups": groups}}
