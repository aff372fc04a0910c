"""CPU step time and loss per technique on the GPT example, next to `single` (a table).

    $SATURN_PYTHON python/bench/techniques.py [--size tiny] [--steps 20] [--bs 8]

Each technique runs as Saturn would start it (launcher + workers, gloo on CPU, one thread
per worker): `single` and `spilling` on 1 worker, the others on 2. Step time is the median
over the steps after the first two (from the `samples_per_s` lines); the loss after the last
step, and the largest per-step loss difference from `single` (same seed, same samples).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
from pathlib import Path

GPT = Path(__file__).resolve().parents[2] / "examples" / "torch" / "gpt.py"
RUNS = [("single", 1), ("ddp", 2), ("fsdp", 2), ("pipeline", 2), ("spilling", 1)]


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(technique: str, gpus: int, args: argparse.Namespace) -> tuple[float, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATURN_")}
    env.update(SATURN_TECHNIQUE=technique, SATURN_GPUS=str(gpus), SATURN_STEPS=str(args.steps),
               SATURN_TRAIN_STEP_INTERVAL_S="0", SATURN_TRAIN_DEVICE="cpu",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port()))
    out = subprocess.run([sys.executable, str(GPT), "--size", args.size, "--bs", str(args.bs),
                          "--lr", "1e-3"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{technique}/{gpus} exited {out.returncode}:\n{out.stderr[-3000:]}")
    rates = [float(x) for x in re.findall(r"SATURN metric samples_per_s=(\S+)", out.stdout)]
    losses = [float(x) for x in re.findall(r"SATURN metric loss=(\S+)", out.stdout)]
    step_s = statistics.median(args.bs / r for r in rates[2:])
    return step_s, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bs", type=int, default=8)
    args = parser.parse_args()
    results = {f"{t}/{g}": run(t, g, args) for t, g in RUNS}
    base_time, base = results["single/1"]
    print(f"GPT {args.size}, global batch {args.bs}, {args.steps} steps, CPU/gloo, "
          f"1 thread per worker")
    print(f"{'technique':<12} {'step ms':>9} {'vs single':>10} {'final loss':>11} "
          f"{'max |loss - single| over all steps':>36}")
    for name, (step_s, losses) in results.items():
        diff = max(abs(a - b) for a, b in zip(losses, base))
        print(f"{name:<12} {step_s * 1e3:>9.1f} {step_s / base_time:>9.2f}x {losses[-1]:>11.5f} "
              f"{diff:>36.2e}")


if __name__ == "__main__":
    main()
