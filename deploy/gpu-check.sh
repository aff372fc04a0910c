#!/usr/bin/env bash
# deploy/gpu-check.sh — one prepared check of saturn_train on an NVIDIA GPU host (< 8 min).
#
#   deploy/gpu-check.sh            from a Saturn checkout with target/release built
#
# 1. nvidia-smi's view of GPU 0, then `saturn-agent --gpus auto` (NVML) started on loopback
#    with a temporary data dir, and its GPUs from `saturn status --json` (name, memory).
# 2. Each technique of the GPT example (examples/torch/gpt.py --size 350m) for a few steps on
#    one GPU: step time, tokens/s and peak GPU memory from its `SATURN metric` lines.
# 3. Spilling training a model too large for `single`: the GPU is capped at
#    SPILL_CAP_GIB (SATURN_TRAIN_GPU_MEMORY_GIB, the CUDA allocator's limit) so a 1.5B GPT
#    (~24 GiB of fp32 weights, gradients and AdamW state) cannot run as `single` (exit 3,
#    out of memory) but trains as `spilling` (blocks streamed from host memory).
#
# Environment: SATURN_PYTHON (python with CUDA torch; default python3), SATURN_BIN
# (default target/release), SPILL_CAP_GIB (default 12), GPT_SIZE (350m) and SPILL_SIZE (1.5b):
# `GPT_SIZE=tiny SPILL_SIZE=tiny deploy/gpu-check.sh` rehearses the script on a machine
# without a GPU (the NVML step then says it found none, the techniques run on the CPU). saturn_train is used from this
# checkout through PYTHONPATH (nothing is installed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${SATURN_PYTHON:-python3}
BIN=${SATURN_BIN:-$PWD/target/release}
CAP=${SPILL_CAP_GIB:-12}
GPT_SIZE=${GPT_SIZE:-350m}
SPILL_SIZE=${SPILL_SIZE:-1.5b}
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export SATURN_TRAIN_STEP_INTERVAL_S=0
tmp=$(mktemp -d)
agent_pid=
cleanup() { [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== GPU (nvidia-smi)"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader || echo "nvidia-smi failed"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'

echo "== saturn-agent --gpus auto (NVML)"
api=$(free_port); mesh=$(free_port)
"$BIN/saturn-agent" --name gpu-check --data-dir "$tmp/data" --gpus auto --bootstrap-expect 1 \
  --listen "/ip4/127.0.0.1/tcp/$mesh" --api "127.0.0.1:$api" >"$tmp/agent.log" 2>&1 &
agent_pid=$!
status_ok=
for _ in $(seq 1 60); do
  if out=$("$BIN/saturn" --addr "http://127.0.0.1:$api" --token-file "$tmp/data/api-token" status --json 2>/dev/null) \
     && echo "$out" | grep -q '"memory_mib"'; then
    echo "$out" | "$PY" -c 'import json,sys; d=json.load(sys.stdin)
for a in d["agents"]:
    for g in a["gpus"]: print(f"agent {a[\"name\"]}: GPU {g[\"index\"]} {g[\"model\"]} {g[\"memory_mib\"]} MiB")'
    status_ok=1; break
  fi
  sleep 1
done
[ -n "$status_ok" ] || { echo "agent listed no GPU within 60 s; its log:"; tail -20 "$tmp/agent.log"; }
kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null; agent_pid=

# run TECHNIQUE SIZE BS STEPS [ENV=VALUE ...]: one job as the agent would start it on GPU 0.
run() {
  local technique=$1 size=$2 bs=$3 steps=$4; shift 4
  env "$@" SATURN_TECHNIQUE="$technique" SATURN_GPUS=1 SATURN_STEPS="$steps" CUDA_VISIBLE_DEVICES=0 \
    MASTER_ADDR=127.0.0.1 MASTER_PORT="$(free_port)" \
    timeout 150 "$PY" examples/torch/gpt.py --size "$size" --bs "$bs" --lr 1e-4 >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  "$PY" - "$technique" "$size" "$bs" "$rc" "$tmp/out" <<'PYEOF'
import re, statistics, sys
technique, size, bs, rc, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
text = open(path).read()
def values(name):
    return [float(v) for v in re.findall(rf"SATURN metric {name}=(\S+)", text)]
rate, tok, mem, loss = values("samples_per_s"), values("tokens_per_s"), values("peak_mem_mib"), values("loss")
if rc != 0 or not rate:
    print(f"{technique:<10} {size:<6} exit {rc}" + (" (out of memory: infeasible)" if rc == 3 else ""))
else:
    steady = lambda xs: statistics.median(xs[1:] or xs)  # the first step pays for warm-up
    peak = f"{max(mem):>7.0f} MiB" if mem else "(no GPU)"  # peak_mem_mib is reported on CUDA only
    print(f"{technique:<10} {size:<6} step {bs / steady(rate) * 1e3:>8.1f} ms  "
          f"tokens/s {steady(tok):>9.0f}  peak {peak}  loss {loss[-1]:.4f}")
PYEOF
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || tail -5 "$tmp/err"
}

echo "== techniques, GPT $GPT_SIZE, global batch 8, 6 steps, 1 GPU"
for t in single ddp fsdp pipeline spilling; do run "$t" "$GPT_SIZE" 8 6; done

echo "== spilling vs single, GPT $SPILL_SIZE, batch 4, GPU capped at ${CAP} GiB"
run single "$SPILL_SIZE" 4 3 SATURN_TRAIN_GPU_MEMORY_GIB="$CAP"
run spilling "$SPILL_SIZE" 4 3 SATURN_TRAIN_GPU_MEMORY_GIB="$CAP"
