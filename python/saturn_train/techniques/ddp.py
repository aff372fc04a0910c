"""`ddp`: DistributedDataParallel, the global batch split evenly over the ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..task import Batch
from .base import Knobs, Technique, split


class DataParallel(Technique):
    """What every data-parallel technique does the same way (DDP, FSDP): each rank trains
    on its equal share of the global batch, the reported loss is the mean over ranks, and
    the full state (gathered by `torch.distributed.checkpoint`) is kept by rank 0. A
    subclass's `setup` wraps the model and makes `self.model` and `self.opt`."""

    def train_step(self, batch: Batch) -> float:
        inputs, targets = self.to_device(split(batch, self.ctx.rank, self.ctx.world_size))
        self.opt.zero_grad(set_to_none=True)
        loss = self.task.loss(self.model(inputs), targets)
        loss.backward()
        self.opt.step()
        return mean_over_ranks(loss)


class DDP(DataParallel):
    """Replicated model; gradients all-reduced in buckets during backward."""

    name = "ddp"

    @classmethod
    def default_knobs(cls, ctx, task) -> Knobs:
        return {"bucket_cap_mb": 25}

    @classmethod
    def knob_space(cls, ctx, task) -> list[Knobs]:
        return [{"bucket_cap_mb": 25}, {"bucket_cap_mb": 100}]

    def setup(self, example: Batch) -> None:
        model = self.build_model().to(self.ctx.device)
        self.model = DistributedDataParallel(
            model, device_ids=[self.ctx.device.index] if self.ctx.is_cuda else None,
            bucket_cap_mb=self.knobs["bucket_cap_mb"])
        self.opt = self.make_optimizer(self.model.parameters())


def mean_over_ranks(loss: torch.Tensor) -> float:
    """The mean of each rank's (equal-sized) batch loss: the global batch's mean loss."""
    t = loss.detach().clone().float()
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()
