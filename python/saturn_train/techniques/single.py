"""`single`: one worker, the model on its device, no parallelism (the reference)."""

from __future__ import annotations

from ..task import Batch
from .base import Technique


class Single(Technique):
    """Plain training on one device."""

    name = "single"

    def setup(self, example: Batch) -> None:
        if self.ctx.world_size != 1:
            from ..errors import Infeasible
            raise Infeasible(f"technique 'single' runs on 1 GPU, got {self.ctx.world_size}: "
                            f"use 'ddp' or 'fsdp' for more")
        self.model = self.build_model().to(self.ctx.device)
        self.opt = self.make_optimizer(self.model.parameters())

    def train_step(self, batch: Batch) -> float:
        inputs, targets = self.to_device(batch)
        self.opt.zero_grad(set_to_none=True)
        loss = self.task.loss(self.model(inputs), targets)
        loss.backward()
        self.opt.step()
        return float(loss.detach())
