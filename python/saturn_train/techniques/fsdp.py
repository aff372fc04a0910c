"""`fsdp`: FSDP2 (`fully_shard`), one unit per block plus the root; bf16 compute on GPU."""

from __future__ import annotations

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ..task import Batch
from .base import Knobs
from .ddp import DataParallel


class FSDP(DataParallel):
    """Parameters, gradients and optimizer state sharded over the ranks."""

    name = "fsdp"
    needs_blocks = True

    @classmethod
    def default_knobs(cls, ctx, task) -> Knobs:
        return {"reshard_after_forward": True}

    @classmethod
    def knob_space(cls, ctx, task) -> list[Knobs]:
        return [{"reshard_after_forward": True}, {"reshard_after_forward": False}]

    def setup(self, example: Batch) -> None:
        model = self.build_model().to(self.ctx.device)
        mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if self.ctx.is_cuda else MixedPrecisionPolicy())
        reshard = bool(self.knobs["reshard_after_forward"])
        for block in self.blocks_of(model):
            fully_shard(block, mp_policy=mp, reshard_after_forward=reshard)
        fully_shard(model, mp_policy=mp, reshard_after_forward=reshard)
        self.model = model
        self.opt = self.make_optimizer(model.parameters())
