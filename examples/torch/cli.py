"""The command line the examples share: pick a size, batch size and learning rate, train.

An example calls `main(task, SIZES, ...)` where `task(size, bs, lr, seed, steps, device)`
builds its `saturn_train.Task`; a sweep file then varies `--bs` and `--lr` per job.
"""

from __future__ import annotations

import argparse
from typing import Callable, Mapping, Optional

import saturn_train as st


def main(task: Callable[..., st.Task], sizes: Mapping[str, object], *, doc: Optional[str],
         batch_unit: str, lr: float) -> None:
    """Parses the flags and trains `task(...)` under whatever Saturn chose."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--size", choices=sorted(sizes), default="tiny")
    parser.add_argument("--bs", type=int, default=8, help=f"global batch size ({batch_unit})")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100, help="when SATURN_STEPS is unset")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: CUDA when torch sees it")
    args = parser.parse_args()
    st.train(task(args.size, args.bs, args.lr, args.seed, args.steps, args.device))
