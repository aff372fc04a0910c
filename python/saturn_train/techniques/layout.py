"""How a model lays out around its blocks, found by running it once (no user annotations).

`pipeline` and `spilling` need to know which parameters are used before the first block
(embeddings, a stem: "pre") and after the last one (final norm, head: "post"). A forward pass
with hooks on every module records when each module with its own parameters runs relative
to the blocks. Parameters directly on the root module count as "pre" (position tables);
modules that never run count as "post". A parameter used both before and after the blocks
(tied embedding and head) cannot be split over pipeline stages: the error says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import Infeasible, TaskError


@dataclass
class Layout:
    """Non-block parameter names used before (`pre`) and after (`post`) the blocks, and each
    block's output shape for the traced micro-batch."""

    pre: set[str]
    post: set[str]
    block_params: list[int]
    block_outputs: list[torch.Size]


def trace(model: nn.Module, blocks: nn.ModuleList, example: torch.Tensor) -> Layout:
    """Runs `model(example)` once under `no_grad` and records the layout."""
    block_ids = {id(b) for b in blocks}
    phase = {"v": "pre"}
    seen: dict[str, str] = {}
    outputs: list[torch.Size] = []
    hooks = []
    names = {id(m): n for n, m in model.named_modules()}

    def inside_block(name: str) -> bool:
        return any(name == bn or name.startswith(bn + ".") for bn in block_names)

    block_names = [names[id(b)] for b in blocks]

    def on_call(mod: nn.Module, _args: object) -> None:
        name = names.get(id(mod), "")
        if id(mod) in block_ids or inside_block(name):
            return
        if any(True for _ in mod.parameters(recurse=False)):
            prev = seen.get(name)
            seen[name] = phase["v"] if prev in (None, phase["v"]) else "both"

    def on_block_out(idx: int):
        def hook(_m: nn.Module, _a: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                outputs.append(out.shape)
            if idx == len(blocks) - 1:
                phase["v"] = "post"
        return hook

    for m in model.modules():
        if m is not model:
            hooks.append(m.register_forward_pre_hook(on_call))
    for i, b in enumerate(blocks):
        hooks.append(b.register_forward_hook(on_block_out(i)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    if len(outputs) != len(blocks):
        raise TaskError("each block must return one tensor (the activation passed to the next "
                        "block) and run once per forward, in order")
    pre: set[str] = {n for n, _ in model.named_parameters(recurse=False)}
    post: set[str] = set()
    for mname, mod in model.named_modules():
        if mod is model or inside_block(mname):
            continue
        where = seen.get(mname, "post")
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}"
            if where == "both":
                raise TaskError(f"parameter {full} is used both before and after the blocks "
                                f"(tied weights?); untie it to run this model as a pipeline")
            (pre if where == "pre" else post).add(full)
    counts = [sum(p.numel() for p in b.parameters()) for b in blocks]
    return Layout(pre, post, counts, outputs)


def balance(counts: list[int], stages: int) -> list[range]:
    """Contiguous block ranges, one per stage, balanced by parameter count."""
    if stages > len(counts):
        raise Infeasible(f"a pipeline over {stages} stages needs at least {stages} blocks; the "
                        f"model has {len(counts)}: use fewer GPUs or another technique")
    total = sum(counts)
    bounds, acc, start = [], 0, 0
    for i, c in enumerate(counts):
        acc += c
        left_blocks = len(counts) - (i + 1)
        left_stages = stages - len(bounds) - 1
        if left_stages == 0:
            break
        target = total * (len(bounds) + 1) / stages
        if acc >= target or left_blocks == left_stages:
            bounds.append(range(start, i + 1))
            start = i + 1
    bounds.append(range(start, len(counts)))
    return bounds
