"""`spilling`: parameters and optimizer state live in host memory; blocks visit the device.

Saturn's model spilling, so a model larger than one GPU trains on one GPU. Each block runs
under non-reentrant activation checkpointing: in the forward it is copied to the device,
run, and dropped (only its input activation stays); in the backward it is copied again,
recomputed and differentiated, and once all its gradients have arrived they go to host
memory and the device copy is dropped. While block i computes, the next `prefetch` blocks
(forward: i+1…, backward: i-1…) are copied on a side CUDA stream. The modules outside the
blocks (embeddings, head) stay on the device for the whole step. The optimizer steps on the
host. On CPU the very same code runs with the device being the CPU (copies are no-ops).
Knob: `prefetch` (blocks copied ahead).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import Infeasible, TaskError
from ..task import Batch
from .base import Knobs, Technique


class _Resident:
    """A block's tensors on the device, and the event that says the copy is done."""

    def __init__(self, tensors: list[torch.Tensor], event: Optional[torch.cuda.Event]) -> None:
        self.tensors = tensors
        self.event = event


class Spilling(Technique):
    """One worker; blocks streamed between host and device memory."""

    name = "spilling"
    needs_blocks = True

    @classmethod
    def default_knobs(cls, ctx, task) -> Knobs:
        return {"prefetch": 1}

    @classmethod
    def knob_space(cls, ctx, task) -> list[Knobs]:
        return [{"prefetch": 1}, {"prefetch": 2}] if ctx.is_cuda else [{"prefetch": 1}]

    def setup(self, example: Batch) -> None:
        if self.ctx.world_size != 1:
            raise Infeasible(f"technique 'spilling' runs on 1 GPU, got {self.ctx.world_size}: "
                            f"use 'fsdp' to spread a large model over several GPUs")
        self.device = self.ctx.device
        model = self.build_model()
        if self.ctx.is_cuda:
            for t in list(model.parameters()) + list(model.buffers()):
                t.data = t.data.pin_memory()
        self.model = model
        self.blocks = self.blocks_of(model)
        self.stream = torch.cuda.Stream(self.device) if self.ctx.is_cuda else None
        self.block_tensors: list[list[torch.Tensor]] = [
            list(b.parameters()) + list(b.buffers()) for b in self.blocks]
        self.host: dict[int, torch.Tensor] = {
            id(t): t.data for ts in self.block_tensors for t in ts}
        in_blocks = {id(t) for ts in self.block_tensors for t in ts}
        self.outside = [t for t in list(model.parameters()) + list(model.buffers())
                        if id(t) not in in_blocks]
        self.outside_host = [t.data for t in self.outside]
        self.resident: dict[int, _Resident] = {}
        self.phase = "forward"
        self.pending: list[int] = []
        for i, block in enumerate(self.blocks):
            self._wrap(i, block)
        self.opt = self.make_optimizer(model.parameters())

    # -- moving blocks -------------------------------------------------------------------

    def _fetch(self, i: int) -> None:
        if i in self.resident or not 0 <= i < len(self.blocks):
            return
        if self.stream is None:
            self.resident[i] = _Resident([self.host[id(t)] for t in self.block_tensors[i]], None)
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            tensors = [self.host[id(t)].to(self.device, non_blocking=True)
                       for t in self.block_tensors[i]]
            event = torch.cuda.Event()
            event.record(self.stream)
        self.resident[i] = _Resident(tensors, event)

    def _use(self, i: int) -> None:
        self._fetch(i)
        res = self.resident[i]
        if res.event is not None:
            torch.cuda.current_stream(self.device).wait_event(res.event)
            for t in res.tensors:
                t.record_stream(torch.cuda.current_stream(self.device))
        for t, d in zip(self.block_tensors[i], res.tensors):
            t.data = d

    def _release(self, i: int) -> None:
        """Back to host: gradients moved, buffers copied back, the device copy dropped."""
        for t in self.block_tensors[i]:
            host = self.host[id(t)]
            if t.device == host.device:
                continue
            grad = t.grad if isinstance(t, nn.Parameter) else None
            if isinstance(t, nn.Parameter):
                t.grad = None
            else:
                host.copy_(t.data)
            t.data = host
            if grad is not None:
                t.grad = grad.to(host.device)
        self.resident.pop(i, None)

    def _wrap(self, i: int, block: nn.Module) -> None:
        original = block.forward
        params = [p for p in block.parameters() if p.requires_grad]
        arrived = {"n": 0}

        def run(*args: Any, **kwargs: Any) -> Any:
            self._use(i)
            step = 1 if self.phase == "forward" else -1
            for k in range(1, int(self.knobs["prefetch"]) + 1):
                self._fetch(i + step * k)
            return original(*args, **kwargs)

        def forward(*args: Any, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():
                out = run(*args, **kwargs)
            else:
                out = checkpoint(run, *args, use_reentrant=False, **kwargs)
            if self.phase == "forward":
                self._release(i)
            return out

        def grad_arrived(_p: torch.Tensor) -> None:
            arrived["n"] += 1
            if arrived["n"] == len(params):
                arrived["n"] = 0
                self._release(i)

        for p in params:
            p.register_post_accumulate_grad_hook(grad_arrived)
        block.forward = forward  # type: ignore[method-assign]

    def _outside_to(self, device_side: bool) -> None:
        for t, host in zip(self.outside, self.outside_host):
            if device_side:
                t.data = host.to(self.device, non_blocking=True)
                continue
            grad = t.grad if isinstance(t, nn.Parameter) else None
            if t.device == host.device:
                continue
            if not isinstance(t, nn.Parameter):
                host.copy_(t.data)
            if isinstance(t, nn.Parameter):
                t.grad = None
            t.data = host
            if grad is not None:
                t.grad = grad.to(host.device)

    # -- the interface -------------------------------------------------------------------

    def train_step(self, batch: Batch) -> float:
        inputs, targets = self.to_device(batch)
        self.opt.zero_grad(set_to_none=True)
        self._outside_to(device_side=True)
        self.phase = "forward"
        loss = self.task.loss(self.model(inputs), targets)
        self.phase = "backward"
        loss.backward()
        for i in list(self.resident):
            self._release(i)
        self._outside_to(device_side=False)
        self.phase = "forward"
        self.opt.step()
        return float(loss.detach())
