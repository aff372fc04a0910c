"""The launcher across a gang: two "hosts" as two launcher processes on 127.0.0.1."""

import json
import subprocess
import sys

from harness import JOB, Run, free_port, job_env, run


def _launcher(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(JOB)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_two_host_gang_sets_ranks_and_trains_like_one_process(straight, tmp_path):
    reference, _ = straight
    port = free_port()
    procs = []
    for node in (0, 1):
        env = job_env("ddp", 1, steps=4, SATURN_NNODES=2, SATURN_NODE_RANK=node, WORLD_SIZE=2,
                      MASTER_PORT=port, SATURN_NODE_ADDR="127.0.0.1", TEST_PRINT_ENV=1,
                      SATURN_CHECKPOINT_DIR=tmp_path / f"node{node}")
        env.pop("GLOO_SOCKET_IFNAME", None)
        env.pop("NCCL_SOCKET_IFNAME", None)
        if node == 1:  # a user's own choice is kept (NCCL is unused on CPU: any name works)
            env["NCCL_SOCKET_IFNAME"] = "mine0"
        procs.append(_launcher(env))
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        runs.append(Run.parse(p.returncode, out, err))
    for r in runs:
        assert r.rc == 0, r.explain()
        assert r.steps[-1] == 4, r.explain()
    envs = [json.loads(line[4:]) for r in runs for line in r.stderr.splitlines()
            if line.startswith("ENV ")]
    assert sorted(e["RANK"] for e in envs) == ["0", "1"]
    for e in envs:
        assert e["WORLD_SIZE"] == "2" and e["LOCAL_WORLD_SIZE"] == "1" and e["LOCAL_RANK"] == "0"
        assert e["MASTER_ADDR"] == "127.0.0.1" and e["MASTER_PORT"] == str(port)
        assert e["GLOO_SOCKET_IFNAME"] == "lo"
    assert {e["RANK"]: e["NCCL_SOCKET_IFNAME"] for e in envs} == {"0": "lo", "1": "mine0"}
    # only node rank 0 checkpoints and reports metrics
    assert runs[0].checkpoints == [4] and runs[1].checkpoints == []
    assert (tmp_path / "node0" / "step-4").is_dir() and not (tmp_path / "node1").exists()
    for step in range(1, 5):
        assert abs(runs[0].losses[step] - reference.losses[step]) <= 1e-4


def test_gang_that_does_not_assemble_times_out_with_exit_4():
    """Node rank 1 whose rank 0 never comes up, and a rank 0 whose peer never arrives."""
    envs = [job_env("ddp", 1, SATURN_NNODES=2, SATURN_NODE_RANK=rank, WORLD_SIZE=2,
                    SATURN_RENDEZVOUS_TIMEOUT_S=3) for rank in (1, 0)]
    procs = [_launcher(env) for env in envs]  # different ports: they never meet
    outputs = [p.communicate(timeout=120) for p in procs]
    lonely_peer, lonely_rank0 = [Run.parse(p.returncode, *o) for p, o in zip(procs, outputs)]
    assert lonely_peer.rc == 4, lonely_peer.explain()
    assert f"127.0.0.1:{envs[0]['MASTER_PORT']}" in lonely_peer.stderr
    assert "SATURN_RENDEZVOUS_TIMEOUT_S" in lonely_peer.stderr
    assert lonely_rank0.rc == 4, lonely_rank0.explain()
    assert "node rank(s) [1]" in lonely_rank0.stderr


def test_the_launcher_names_technique_gang_and_rendezvous_in_one_line():
    result = run(job_env("ddp", 2, steps=2))
    assert result.rc == 0, result.explain()
    lines = [l for l in result.stdout.splitlines() if l.startswith("saturn_train launcher:")]
    assert len(lines) == 1, result.explain()
    fields = dict(w.split("=", 1) for w in lines[0].split()[2:])
    assert fields["technique"] == "ddp" and fields["trial"] == "False", lines
    assert (fields["node_rank"], fields["nnodes"], fields["world_size"]) == ("0", "1", "2"), lines
    assert fields["master"].startswith("127.0.0.1:") and fields["ifname"] == "lo", lines
