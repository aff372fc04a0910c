"""`Task`: what a user describes once, whatever technique it later runs under."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
"""One step's *global* batch: (inputs, targets), split along dim 0 by the technique."""

DataSource = Union[Callable[[int], Batch], Iterable[Batch]]


@dataclass
class Task:
    """A training task.

    * ``model()`` builds the model on CPU (random init under ``seed``).
    * ``blocks(model)`` returns the ``nn.ModuleList`` of repeated blocks: FSDP wraps one unit
      per block, pipeline splits stages over them, spilling streams them to the device.
    * ``data`` is preferably a function of the step number returning that step's *global*
      batch ``(inputs, targets)``, deterministic: every technique then sees the same samples
      and a resumed run continues the exact sample stream. An iterable also works (resume
      skips the batches already consumed).
    * ``loss(output, targets)`` returns the mean loss of a (micro-)batch.
    * ``optimizer(params, lr)`` builds the optimizer.
    """

    model: Callable[[], nn.Module]
    data: DataSource
    loss: Callable[[Any, torch.Tensor], torch.Tensor]
    optimizer: Callable[[Any, float], torch.optim.Optimizer]
    blocks: Optional[Callable[[nn.Module], nn.ModuleList]] = None
    lr: float = 1e-3
    seed: int = 0
    steps: Optional[int] = None
    """Total steps when `SATURN_STEPS` is not set (running outside Saturn)."""
    technique: Optional[str] = None
    """Technique when `SATURN_TECHNIQUE` is not set; default `single` on 1 GPU, else `ddp`."""
    knobs: dict[str, Any] = field(default_factory=dict)
    """Fixed knob values (e.g. ``{"n_microbatches": 4}``); a trial tunes the others."""
    checkpoint_every: int = 0
    """Also checkpoint every N steps (0: only on SIGTERM and at the end)."""
    device: Optional[str] = None
    """`"cpu"` or `"cuda"`; default CUDA when torch sees it. `SATURN_TRAIN_DEVICE` overrides
    (the agent passes no `SATURN_*` of its own environment or a job file's `env` to jobs, so
    from a job file use a script flag that sets this, like the examples' `--device`)."""
    tokens_per_sample: Optional[int] = None
    """Report `tokens_per_s` too; inferred for integer (token) inputs of shape (B, T)."""
