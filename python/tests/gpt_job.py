"""The tests' job: the tiny GPT example, plus hooks the tests observe it through.

TEST_DATA_LOG: rank 0 appends each step whose batch it reads (the data position);
TEST_STEP_SLEEP: seconds to sleep per batch (so a signal lands mid-run);
TEST_PRINT_ENV: each worker prints its gang environment as one JSON line on stderr;
TEST_OWN_TECHNIQUE: registers `accumulated`, a user's technique written as python/README.md
says (its checkpoints through the default `full_state`/`load_full_state`).
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "torch"))

import gpt  # noqa: E402

import saturn_train as st  # noqa: E402

task = gpt.task("tiny", bs=8, lr=1e-2, seed=0, steps=30)
inner = task.data
log = os.environ.get("TEST_DATA_LOG")
nap = float(os.environ.get("TEST_STEP_SLEEP", "0"))


def data(step: int):
    if log and os.environ.get("RANK") == "0":
        with open(log, "a") as f:
            f.write(f"{step}\n")
    if nap:
        time.sleep(nap)
    return inner(step)


task.data = data


class Accumulated(st.Technique):
    """One worker; the global batch in two halves, gradients accumulated, one step."""

    name = "accumulated"

    def setup(self, example):
        self.model = self.build_model().to(self.ctx.device)
        self.opt = self.make_optimizer(self.model.parameters())

    def train_step(self, batch):
        self.opt.zero_grad(set_to_none=True)
        half = batch[0].shape[0] // 2
        total = 0.0
        for part in (slice(0, half), slice(half, None)):
            inputs, targets = self.to_device(tuple(t[part] for t in batch))
            loss = self.task.loss(self.model(inputs), targets) / 2
            loss.backward()
            total += float(loss.detach())
        self.opt.step()
        return total


if os.environ.get("TEST_OWN_TECHNIQUE"):
    st.register_technique("accumulated", Accumulated)
if os.environ.get("TEST_PRINT_ENV") and os.environ.get("SATURN_TRAIN_WORKER"):
    keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
            "MASTER_PORT", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"]
    print("ENV " + json.dumps({k: os.environ.get(k) for k in keys}), file=sys.stderr, flush=True)
st.train(task)
