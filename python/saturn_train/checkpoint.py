"""Checkpoints that survive a change of technique and GPU count.

Layout in `SATURN_CHECKPOINT_DIR`: `step-N/` (a `torch.distributed.checkpoint` directory
holding the full model under its plain key names, the optimizer state keyed by the same
names, RNG state and the data position) and `latest` (the name of the newest). Global rank 0
gathers the full state and writes it alone (`no_dist`: in a gang only node rank 0's host
holds the checkpoint); on resume rank 0 reads it and broadcasts it to every rank, and each
technique takes its share. Atomic: written to `.tmp-step-N`, renamed, then `latest` is
replaced by rename, and only then is `SATURN checkpoint step=N` printed.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

from .errors import TaskError

_KEEP = 2


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save(directory: str, step: int, full: dict[str, Any], data_step: int) -> None:
    """Writes step `step` atomically (rank 0 only) and prunes older ones."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    state = {**full, "rng": _rng_state(),
             "meta": {"step": step, "data_step": data_step, "format": "saturn_train/1"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "assuming ... a single process": yes
        dcp.save(state, checkpoint_id=str(tmp), no_dist=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(final.name + "\n")
    os.replace(latest_tmp, root / "latest")
    _fsync_dir(root)
    steps = sorted((int(p.name[5:]) for p in root.glob("step-*") if p.name[5:].isdigit()))
    for old in steps[:-_KEEP]:
        shutil.rmtree(root / f"step-{old}", ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pick(directory: str, start_step: Optional[int]) -> Optional[Path]:
    root = Path(directory)
    if start_step == 0:
        return None
    if start_step is not None:
        want = root / f"step-{start_step}"
        if not want.is_dir():
            have = sorted(p.name for p in root.glob("step-*")) if root.is_dir() else []
            raise TaskError(f"SATURN_START_STEP={start_step} but {root} has no step-{start_step}"
                            f" (has: {have or 'nothing'}); was the checkpoint fetched to this "
                            f"host (node rank 0)?")
        return want
    latest = root / "latest"
    if latest.is_file():
        path = root / latest.read_text().strip()
        if path.is_dir():
            return path
    return None


def read(path: Path) -> dict[str, Any]:
    """One checkpoint directory as a nested dict (`model`, `optim`, `rng`, `meta`).

    Read without a template, because the shapes of another technique's optimizer state are
    not known here: the planner `dcp_to_torch_save` uses, in this process alone.
    """
    state: dict[str, Any] = {}
    _load_state_dict(state, storage_reader=dcp.FileSystemReader(str(path)),
                     planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    return state


def load(directory: Optional[str], start_step: Optional[int], rank: int) -> Optional[dict]:
    """Collective: the saved state on every rank (read by rank 0, broadcast), or None."""
    if start_step and not directory:
        raise TaskError(f"SATURN_START_STEP={start_step} but SATURN_CHECKPOINT_DIR is not set: "
                        f"nothing to resume from")
    box: list[Optional[dict]] = [None]
    if rank == 0 and directory:
        path = _pick(directory, start_step)
        if path is not None:
            box[0] = read(path)
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def restore_rng(state: dict[str, Any]) -> None:
    """Puts the saved RNG state back (rank 0's, on every rank)."""
    rng = state.get("rng", {})
    if "cpu" in rng:
        torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
