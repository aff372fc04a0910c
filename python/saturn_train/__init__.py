"""saturn_train: describe a PyTorch training task once, run it under whatever Saturn chose.

```python
import saturn_train as st
st.train(st.Task(model=build_gpt, blocks=lambda m: m.blocks, data=batches,
                 loss=cross_entropy, optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr)))
```

Modules:
- `task`: `Task`, the user's description (model builder, blocks, data, loss, optimizer).
- `contract`: the only reader of `SATURN_*` and printer of `SATURN …` lines.
- `launcher`: per-host process; rendezvous of the gang, one worker per GPU, signals.
- `distributed`: a worker's ranks, device and process group.
- `worker`: the training loop (resume, report, SIGTERM, checkpoint).
- `techniques`: `single`, `ddp`, `fsdp`, `pipeline`, `spilling` behind `Technique`, and
  `register_technique` for your own.
- `checkpoint`: full-model checkpoints that resume under any technique and GPU count.
- `trial`: knob tuning and step-time reporting in trial runs.
"""

from __future__ import annotations

import os
import sys

from .errors import EXIT_INFEASIBLE, EXIT_OOM, EXIT_RENDEZVOUS_TIMEOUT, Infeasible, TaskError
from .task import Batch, Task
from .techniques import Technique, register_technique, split

__all__ = ["Batch", "EXIT_INFEASIBLE", "EXIT_OOM", "EXIT_RENDEZVOUS_TIMEOUT", "Infeasible", "Task",
           "TaskError", "Technique", "register_technique", "split", "train"]


def train(task: Task) -> None:
    """Trains `task` under `SATURN_TECHNIQUE` on `SATURN_GPUS` workers; exits the process.

    Called in the process the agent started, it launches one worker per GPU by re-running
    this script; in those workers it trains. Exit status: 0 done or stopped cleanly, 3
    infeasible (out of memory, or this technique cannot run at this GPU count), 4 rendezvous
    timed out, 2 a task/environment error (the message says the fix).
    """
    from .launcher import WORKER_FLAG

    if os.environ.get(WORKER_FLAG) == "1":
        from .worker import run
        run(task)
        return
    from .launcher import launch
    sys.exit(launch(task))
