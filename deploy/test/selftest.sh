#!/usr/bin/env bash
# Tests the deploy scripts on this machine.
#
#   deploy/test/selftest.sh            stub binaries (stub-bin/): checks what the scripts
#                                      start, with which flags, and that they stop it all
#   deploy/test/selftest.sh BIN_DIR    real saturn and saturn-agent from BIN_DIR (e.g.
#                                      target/debug): a local mesh and a fake-srun Slurm
#                                      allocation each run a tiny job to completion
#
# Slurm is faked by fake-slurm/srun and fake-slurm/scontrol (SATURN_LOCAL_TEST=1), so
# no Slurm installation is needed. Ports (only bound with real binaries): local mesh
# $SATURN_SELFTEST_MESH_PORT+ [17946], local API $SATURN_SELFTEST_API_PORT+ [17070],
# Slurm mesh $SATURN_SELFTEST_SLURM_MESH_PORT+ [27946], Slurm API
# $SATURN_SELFTEST_SLURM_API_PORT+ [27070]; 4 consecutive ports from each base.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deploy=$(dirname "$here")
real_bin=${1:+$(cd "$1" && pwd)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/saturn-deploy-test.XXXXXX")
failures=0
mesh_port=${SATURN_SELFTEST_MESH_PORT:-17946}
api_port=${SATURN_SELFTEST_API_PORT:-17070}
slurm_mesh_port=${SATURN_SELFTEST_SLURM_MESH_PORT:-27946}
slurm_api_port=${SATURN_SELFTEST_SLURM_API_PORT:-27070}

cleanup() {
  SATURN_BIN_DIR=${real_bin:-$here/stub-bin} SATURN_STUB_DIR=$tmp/registry \
    "$deploy/local-cluster.sh" stop --dir "$tmp/local" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

check() {
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; failures=$((failures + 1)); fi
}
has_line() { grep -qxF -- "$2" "$1" 2>/dev/null; }
follows() { grep -A1 -xF -- "$2" "$1" 2>/dev/null | grep -qxF -- "$3"; } # flag $2 has value $3

cat >"$tmp/jobs.toml" <<'TOML'
[[job]]
name = "deploy-selftest"
command = ["sh", "-c", "echo SATURN step=5"]
steps = 5
techniques = ["ddp"]
gpus = [1, 1]

[job.profile]
ddp = { 1 = 0.01 }
TOML

if [[ -z $real_bin ]]; then
  export SATURN_BIN_DIR=$here/stub-bin SATURN_STUB_DIR=$tmp/registry
  reg=$SATURN_STUB_DIR

  echo "== local-cluster.sh with stub binaries"
  SATURN_MESH_PORT=$mesh_port SATURN_API_PORT=$api_port \
    "$deploy/local-cluster.sh" 4 --sim 2xSIM-8GB --dir "$tmp/local" --timeout 20 >"$tmp/local.out"
  check "four agents started" test "$(find "$reg" -name '*.up' | wc -l)" -eq 4
  check "node-a forms the cluster without joining" bash -c "! grep -qx -- --join '$reg/node-a.flags'"
  check "node-d joins node-a" follows "$reg/node-d.flags" --join "/ip4/127.0.0.1/tcp/$mesh_port"
  check "the first three form with bootstrap-expect 3" follows "$reg/node-c.flags" --bootstrap-expect 3
  check "node-d only joins (never forms)" bash -c "! grep -qx -- --bootstrap-expect '$reg/node-d.flags'"
  check "node-d API on port base+3" follows "$reg/node-d.flags" --api "127.0.0.1:$((api_port + 3))"
  check "node-c mesh on port base+2" follows "$reg/node-c.flags" --listen "/ip4/127.0.0.1/tcp/$((mesh_port + 2))"
  check "simulated GPUs" follows "$reg/node-b.flags" --gpus sim:2xSIM-8GB
  check "mDNS off" has_line "$reg/node-b.flags" --no-mdns
  check "every agent uses the cluster's API token file" follows "$reg/node-c.flags" --api-token-file "$tmp/local/api-token"
  check "API token readable by the user only" test "$(stat -c %a "$tmp/local/api-token")" = 600
  check "prints how to stop" grep -q "local-cluster.sh stop --dir $tmp/local" "$tmp/local.out"
  check "refuses a second start" bash -c "! '$deploy/local-cluster.sh' 2 --dir '$tmp/local' 2>/dev/null"
  "$deploy/local-cluster.sh" stop --dir "$tmp/local" >/dev/null
  check "stop ends every agent with SIGTERM" test "$(find "$reg" -name '*.stopped' | wc -l)" -eq 4
  check "no agent left" test "$(find "$reg" -name '*.up' | wc -l)" -eq 0
  rm -rf "$reg"

  echo "== saturn.sbatch with fake srun and stub binaries"
  # Replaces the calling (sub)shell by the batch script, so a signal sent to `$!` reaches it.
  exec_sbatch() {
    cd "$tmp" && PATH=$here/fake-slurm:$PATH SLURM_JOB_NUM_NODES=3 SLURM_JOB_NODELIST='node[0-2]' \
      SLURM_JOB_ID=4242 SLURM_SUBMIT_DIR=$tmp SATURN_LOCAL_TEST=1 SATURN_SCRATCH=$tmp/scratch \
      SATURN_MESH_PORT=$slurm_mesh_port SATURN_API_PORT=$slurm_api_port SATURN_READY_TIMEOUT_S=${SATURN_READY_TIMEOUT_S:-20} \
      exec bash "$deploy/slurm/saturn.sbatch" "$tmp/jobs.toml" >>"$tmp/sbatch.out"
  }
  run_sbatch() { (exec_sbatch); }
  check "the batch script succeeds" run_sbatch 2>"$tmp/sbatch.err" || cat "$tmp/sbatch.err"
  check "the job file ran against node0's API with a token" \
    grep -qxF "job run $tmp/jobs.toml --wait token=set addr=http://127.0.0.1:$slurm_api_port" "$reg/jobs.log"
  check "three agents, all stopped at the end" test "$(find "$reg" -name '*.stopped' | wc -l)" -eq 3
  check "node1 joins node0" follows "$reg/node1.flags" --join "/ip4/127.0.0.1/tcp/$slurm_mesh_port"
  check "node2 mesh port from SLURM_NODEID" follows "$reg/node2.flags" --listen "/ip4/127.0.0.1/tcp/$((slurm_mesh_port + 2))"
  check "node2 API port from SLURM_NODEID" follows "$reg/node2.flags" --api "127.0.0.1:$((slurm_api_port + 2))"
  check "bootstrap-expect = min(nodes, 3)" follows "$reg/node0.flags" --bootstrap-expect 3
  check "node2 forms too (one of the first three)" follows "$reg/node2.flags" --bootstrap-expect 3
  check "data dir on node scratch" follows "$reg/node1.flags" --data-dir "$tmp/scratch/saturn-4242/node1/data"
  key=$tmp/scratch/saturn-4242/node1/secrets/cluster.key
  check "cluster key in pnet format" bash -c "sed -n 3p '$key' | grep -qE '^[0-9a-f]{64}$' && sed -n 1p '$key' | grep -qx /key/swarm/psk/1.0.0/"
  check "cluster key readable by the user only" test "$(stat -c %a "$key")" = 600
  rm -rf "$reg"
  SATURN_STUB_JOB_EXIT=3 run_sbatch 2>/dev/null && rc=0 || rc=$?
  check "a failing job run fails the batch job with its status (3)" test "$rc" -eq 3
  check "and the agents are stopped all the same" test "$(find "$reg" -name '*.stopped' | wc -l)" -eq 3
  rm -rf "$reg"

  SATURN_STUB_NO_MESH=1 SATURN_READY_TIMEOUT_S=3 run_sbatch 2>"$tmp/sbatch.err" && rc=0 || rc=$?
  check "a mesh that does not form fails the batch job" test "$rc" -eq 1
  check "with a clear reason" grep -q "only 0 of 3 agents are up" "$tmp/sbatch.err"
  check "and stops the agents" test "$(find "$reg" -name '*.stopped' | wc -l)" -eq 3
  rm -rf "$reg"

  SATURN_STUB_JOB_SLEEP=60 exec_sbatch 2>/dev/null &
  batch=$!
  deadline=$((SECONDS + 20))
  until [[ -s $reg/jobs.log ]] || ((SECONDS > deadline)); do sleep 0.2; done
  kill -TERM "$batch"
  wait "$batch" && rc=0 || rc=$?
  check "SIGTERM to the batch script (time limit, scancel) ends it" test "$rc" -eq 143
  check "and stops the agents with SIGTERM" test "$(find "$reg" -name '*.stopped' | wc -l)" -eq 3
else
  export SATURN_BIN_DIR=$real_bin
  saturn=$real_bin/saturn
  echo "== local-cluster.sh with $real_bin"
  SATURN_MESH_PORT=$mesh_port SATURN_API_PORT=$api_port \
    "$deploy/local-cluster.sh" 4 --dir "$tmp/local" --timeout 60 >"$tmp/local.out"
  check "four agents in the mesh" bash -c "'$saturn' --addr http://127.0.0.1:$((api_port + 3)) status --json | grep -o '\"healthy\": *true' | wc -l | grep -qx 4"
  check "a job runs to completion" timeout 120 "$saturn" --addr "http://127.0.0.1:$((api_port + 1))" job run "$tmp/jobs.toml" --wait
  check "stop ends the agents" "$deploy/local-cluster.sh" stop --dir "$tmp/local"

  echo "== saturn.sbatch with fake srun and $real_bin"
  check "the batch script runs the job file and stops" bash -c "cd '$tmp' && PATH='$here/fake-slurm':\$PATH \
    SLURM_JOB_NUM_NODES=2 SLURM_JOB_NODELIST='node[0-1]' SLURM_JOB_ID=4243 SLURM_SUBMIT_DIR='$tmp' \
    SATURN_LOCAL_TEST=1 SATURN_SCRATCH='$tmp/scratch' SATURN_GPUS=sim:1xSIM-24GB \
    SATURN_MESH_PORT=$slurm_mesh_port SATURN_API_PORT=$slurm_api_port SATURN_READY_TIMEOUT_S=60 \
    timeout 300 bash '$deploy/slurm/saturn.sbatch' '$tmp/jobs.toml'"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
