"""A GPT-style decoder trained through saturn_train (random init, synthetic tokens).

    python3 examples/torch/gpt.py --size tiny --bs 8 --lr 1e-3       # outside Saturn: 1 worker
    SATURN_TECHNIQUE=pipeline SATURN_GPUS=2 SATURN_STEPS=20 python3 examples/torch/gpt.py ...

Sizes go from `tiny` (CPU tests, ~50k parameters) to `1.5b` (GPT-2 XL shape). The data is
generated locally from the step number: a noisy fixed-rule token sequence, so the loss falls
and every technique sees exactly the same samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import saturn_train as st

# layers, width, heads, vocabulary, context
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (4, 32, 2, 64, 16),
    "small": (6, 256, 8, 8192, 128),
    "124m": (12, 768, 12, 50304, 1024),
    "350m": (24, 1024, 16, 50304, 1024),
    "774m": (36, 1280, 20, 50304, 1024),
    "1.5b": (48, 1600, 25, 50304, 1024),
}


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and an MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)  # a key bias has zero gradient
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token + position embeddings, `layers` blocks, final norm, untied head."""

    def __init__(self, layers: int, width: int, heads: int, vocab: int, context: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02 / (math.sqrt(2 * layers) if name.endswith("proj.weight") else 1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def token_batches(batch_size: int, vocab: int, context: int, seed: int = 0):
    """`step -> (inputs, targets)`: the step's global batch, the same for every technique."""

    def at(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        seq = torch.empty(batch_size, context + 1, dtype=torch.long)
        seq[:, 0] = torch.randint(vocab, (batch_size,), generator=g)
        noise = torch.rand(batch_size, context, generator=g) < 0.1
        rand = torch.randint(vocab, (batch_size, context), generator=g)
        for t in range(context):
            nxt = (seq[:, t] * 7 + 3) % vocab
            seq[:, t + 1] = torch.where(noise[:, t], rand[:, t], nxt)
        return seq[:, :-1], seq[:, 1:]

    return at


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def task(size: str, bs: int, lr: float, seed: int = 0, steps: int | None = None,
         device: str | None = None) -> st.Task:
    """The GPT task of one size; tests and benchmarks build it from here too."""
    layers, width, heads, vocab, context = SIZES[size]
    return st.Task(
        model=lambda: GPT(layers, width, heads, vocab, context),
        blocks=lambda m: m.blocks,
        data=token_batches(bs, vocab, context, seed),
        loss=cross_entropy,
        optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr),
        lr=lr, seed=seed, steps=steps, device=device,
    )


if __name__ == "__main__":
    import cli  # the sibling examples/torch/cli.py

    cli.main(task, SIZES, doc=__doc__, batch_unit="sequences", lr=1e-3)
