"""A worker's place in the gang: ranks, device, process group."""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .contract import SaturnEnv
from .launcher import STORE_PREFIX_WORKERS


@dataclass(frozen=True)
class Context:
    """Where this worker stands; `device` is `cuda:LOCAL_RANK` or `cpu`."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_cuda(self) -> bool:
        """Whether this worker computes on a GPU."""
        return self.device.type == "cuda"


def _die_with_launcher() -> None:
    """PR_SET_PDEATHSIG: a worker never outlives its launcher (SIGKILLed or not)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    launcher = os.environ.get("SATURN_TRAIN_LAUNCHER_PID")
    if launcher and os.getppid() != int(launcher):
        os._exit(1)


def _pick_device(want: str | None, local_rank: int) -> torch.device:
    if want == "cpu" or (want is None and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("saturn_train: SATURN_TRAIN_DEVICE=cuda but torch sees no CUDA device")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise SystemExit(f"saturn_train: worker {local_rank} needs GPU {local_rank} but "
                         f"torch sees {count}; SATURN_GPUS exceeds CUDA_VISIBLE_DEVICES "
                         f"(simulated GPUs? set SATURN_TRAIN_DEVICE=cpu)")
    return torch.device("cuda", local_rank)


def init(env: SaturnEnv, device_choice: str | None = None) -> Context:
    """Joins the gang's process group (gloo on CPU, NCCL on GPUs)."""
    _die_with_launcher()
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = _pick_device(env.device or device_choice, local_rank)
    if device.type == "cpu":
        torch.set_num_threads(1)
    else:
        torch.cuda.set_device(device)
        if env.gpu_memory_cap_gib:
            # Behave like a smaller GPU (demonstrations: spilling vs single on a big GPU).
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(
                min(1.0, env.gpu_memory_cap_gib * 2**30 / total), device)
    timeout = timedelta(seconds=env.rendezvous_timeout_s)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), None,
                          False, timeout=timeout)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        store=dist.PrefixStore(STORE_PREFIX_WORKERS, store), rank=rank, world_size=world,
        device_id=device if device.type == "cuda" else None,
    )
    return Context(rank, world, local_rank, int(os.environ["LOCAL_WORLD_SIZE"]), device)


def all_max(ctx: Context, value: float) -> float:
    """The largest `value` over all ranks (collective)."""
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_sum(ctx: Context, value: float) -> float:
    """The sum of `value` over all ranks (collective)."""
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item())
