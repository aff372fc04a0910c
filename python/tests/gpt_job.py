"""The tests' job: the tiny GPT example, plus hooks the tests observe it through.

TEST_DATA_LOG: rank 0 appends each step whose batch it reads (the data position);
TEST_STEP_SLEEP: seconds to sleep per batch (so a signal lands mid-run);
TEST_PRINT_ENV: each worker prints its gang environment as one JSON line on stderr.
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
if os.environ.get("TEST_PRINT_ENV") and os.environ.get("SATURN_TRAIN_WORKER"):
    keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
            "MASTER_PORT", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"]
    print("ENV " + json.dumps({k: os.environ.get(k) for k in keys}), file=sys.stderr, flush=True)
st.train(task)
