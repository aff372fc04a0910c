"""The per-host launcher: one worker process per GPU of this host, across the whole gang.

The agent starts one process per host. `st.train` in that process lands here: it meets the
other hosts' launchers on a `TCPStore` served by node rank 0 at `MASTER_ADDR:MASTER_PORT`
(that is how GPU counts per host, hence rank offsets, are agreed, and how a peer that never
comes up is noticed: exit 4 after `SATURN_RENDEZVOUS_TIMEOUT_S`), then re-executes the
script once per local GPU (like torchrun) with `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
`LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`. Workers join the same store for their
process group. SIGTERM/SIGINT are forwarded to the workers (they finish the step,
checkpoint and exit 0); when one worker fails the others are killed and the launcher exits
with the failed worker's status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from typing import Optional

from .contract import SaturnEnv
from .errors import EXIT_RENDEZVOUS_TIMEOUT, EXIT_USAGE, TaskError
from .netif import interface_of
from .task import Task

WORKER_FLAG = "SATURN_TRAIN_WORKER"
"""Set in the environment of the worker processes the launcher starts."""
STORE_PREFIX_LAUNCH = "saturn/launch/"
STORE_PREFIX_WORKERS = "saturn/pg/"
_DONE_GRACE_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _err(msg: str) -> None:
    sys.stderr.write(f"saturn_train: {msg}\n")
    sys.stderr.flush()


def socket_ifname_env(env: SaturnEnv, master_addr: str) -> dict[str, str]:
    """GLOO_/NCCL_SOCKET_IFNAME for the interface that carries this host's address.

    Left alone when the user set them; not set when the address is on no local interface
    (a hostname that resolves elsewhere, a wildcard).
    """
    out: dict[str, str] = {}
    host = env.node_addr or master_addr
    iface = interface_of(host)
    if iface is None:
        return out
    for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        if not os.environ.get(name):
            out[name] = iface
    return out


BANNER = "saturn_train launcher:"
"""How the one line each host's launcher prints starts (logs and tests read it back)."""


def banner(env: SaturnEnv, task: Task, world: int, local: int, master: str,
           iface: Optional[str]) -> str:
    """The launcher's line: what this host runs, and where the gang meets."""
    fields = {
        "technique": env.technique or task.technique or ("single" if world == 1 else "ddp"),
        "trial": env.profile_steps is not None,
        "node_rank": env.node_rank,
        "nnodes": env.nnodes,
        "world_size": world,
        "local_workers": local,
        "node_addr": env.node_addr or "-",
        "master": master,
        "ifname": iface or "-",
    }
    return BANNER + " " + " ".join(f"{k}={v}" for k, v in fields.items())


def _rendezvous(env: SaturnEnv, addr: str, port: int, local: int):
    """Meets every host's launcher; returns (store, rank offset, world size)."""
    import torch.distributed as dist  # heavy import kept out of module import

    timeout = timedelta(seconds=env.rendezvous_timeout_s)
    is_master = env.node_rank == 0
    try:
        store = dist.TCPStore(addr, port, None, is_master, timeout=timeout,
                              wait_for_workers=False)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds here
        if is_master:
            _err(f"cannot serve the gang's rendezvous on port {port}: {e}")
            raise SystemExit(EXIT_USAGE) from None
        _err(f"rendezvous timed out: node rank {env.node_rank} could not reach node rank 0 "
             f"at {addr}:{port} within {env.rendezvous_timeout_s:g}s "
             f"(SATURN_RENDEZVOUS_TIMEOUT_S); is the peer up and is {addr} reachable from here?")
        raise SystemExit(EXIT_RENDEZVOUS_TIMEOUT) from None
    store.set(f"{STORE_PREFIX_LAUNCH}node/{env.node_rank}", str(local))
    keys = [f"{STORE_PREFIX_LAUNCH}node/{r}" for r in range(env.nnodes)]
    try:
        store.wait(keys, timeout)
    except Exception:  # noqa: BLE001 - DistStoreError / RuntimeError by version
        missing = [r for r in range(env.nnodes) if not store.check([keys[r]])]
        _err(f"rendezvous timed out after {env.rendezvous_timeout_s:g}s "
             f"(SATURN_RENDEZVOUS_TIMEOUT_S): node rank(s) {missing} of {env.nnodes} never "
             f"arrived at {addr}:{port}")
        raise SystemExit(EXIT_RENDEZVOUS_TIMEOUT) from None
    counts = [int(store.get(k)) for k in keys]
    return store, sum(counts[: env.node_rank]), sum(counts)


def _worker_env(base: dict[str, str], **values: object) -> dict[str, str]:
    env = dict(base)
    env.update({k: str(v) for k, v in values.items()})
    return env


def _check_technique(env: SaturnEnv, task: Task) -> bool:
    """Fails before any worker starts when the technique is unknown (the script's own
    `register_technique` calls have already run: this is the same script)."""
    from .techniques import technique_class

    name = env.technique or task.technique
    try:
        if name:
            technique_class(name)
    except TaskError as e:
        _err(str(e))
        return False
    return True


def launch(task: Task, argv: Optional[list[str]] = None) -> int:
    """Runs this host's share of the gang; returns the exit status for the host process."""
    env = SaturnEnv.read()
    if not _check_technique(env, task):
        return EXIT_USAGE
    local = env.gpus
    master_addr = os.environ.get("MASTER_ADDR") or "127.0.0.1"
    port_raw = os.environ.get("MASTER_PORT")
    if not port_raw and env.nnodes > 1:
        _err("a gang (SATURN_NNODES>1) needs MASTER_PORT; the agent sets it")
        return EXIT_USAGE
    port = int(port_raw) if port_raw else _free_port()
    store, offset, world = _rendezvous(env, master_addr, port, local)
    expected = os.environ.get("WORLD_SIZE")
    if expected and int(expected) != world:
        _err(f"WORLD_SIZE={expected} but the hosts' SATURN_GPUS add up to {world}")
        return EXIT_USAGE
    base = dict(os.environ)
    ifname = socket_ifname_env(env, master_addr)
    base.update(ifname)
    print(banner(env, task, world, local, f"{master_addr}:{port}", ifname.get("GLOO_SOCKET_IFNAME")), flush=True)
    cmd = [sys.executable] + (argv if argv is not None else sys.orig_argv[1:])
    procs = [
        subprocess.Popen(cmd, env=_worker_env(
            base, RANK=offset + i, LOCAL_RANK=i, WORLD_SIZE=world, LOCAL_WORLD_SIZE=local,
            MASTER_ADDR=master_addr, MASTER_PORT=port, **{WORKER_FLAG: "1"},
            SATURN_TRAIN_LAUNCHER_PID=os.getpid()))
        for i in range(local)
    ]
    status = _supervise(procs)
    if status == 0:
        _finish_together(store, env)
    return status


def _supervise(procs: list[subprocess.Popen]) -> int:
    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            code = failed[0]
            return 128 - code if code < 0 else code
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.1)


def _finish_together(store, env: SaturnEnv) -> None:
    """Node rank 0 serves the store: it stays up until every host's workers are done."""
    store.set(f"{STORE_PREFIX_LAUNCH}done/{env.node_rank}", "1")
    if env.node_rank != 0 or env.nnodes == 1:
        return
    keys = [f"{STORE_PREFIX_LAUNCH}done/{r}" for r in range(env.nnodes)]
    try:
        store.wait(keys, timedelta(seconds=_DONE_GRACE_S))
    except Exception:  # noqa: BLE001 - a peer that failed has its own status
        pass
