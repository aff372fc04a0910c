#!/usr/bin/env bash
# A Saturn mesh on one machine: N agents with simulated GPUs on 127.0.0.1.
#
#   deploy/local-cluster.sh N [--sim SPEC] [--dir BASE] [--timeout SECONDS]
#   deploy/local-cluster.sh status [--dir BASE]
#   deploy/local-cluster.sh stop [--dir BASE]
#
# Agent i (0-based) is named node-a, node-b, ..., listens on mesh port 7946+i and API
# port 7070+i, keeps its data in BASE/NAME (default ./saturn-local) and logs to
# BASE/NAME/agent.log. The first min(N,3) agents form the cluster (bootstrap-expect);
# every agent but the first joins through the first. Binaries: $SATURN_BIN_DIR, else
# target/release or target/debug of this checkout, else $PATH. Port bases:
# $SATURN_MESH_PORT, $SATURN_API_PORT. Restarting on the same BASE resumes the state.
# Every agent uses the API token in BASE/api-token (made at first start, mode 0600);
# the commands printed at the end pass it to the CLI with --token-file.
set -euo pipefail

usage() {
  sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "local-cluster: $*" >&2
  exit 1
}

base=${SATURN_LOCAL_DIR:-./saturn-local}
sim=4xSIM-24GB
timeout_s=${SATURN_READY_TIMEOUT_S:-60}
mesh_base=${SATURN_MESH_PORT:-7946}
api_base=${SATURN_API_PORT:-7070}

# Finds a binary: $SATURN_BIN_DIR, then this checkout's target dirs, then $PATH.
find_bin() {
  local name=$1 root dir
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ -n ${SATURN_BIN_DIR:-} ]]; then
    [[ -x $SATURN_BIN_DIR/$name ]] || die "SATURN_BIN_DIR=$SATURN_BIN_DIR has no executable $name"
    echo "$SATURN_BIN_DIR/$name"
    return
  fi
  for dir in "$root/target/release" "$root/target/debug"; do
    if [[ -x $dir/$name ]]; then
      echo "$dir/$name"
      return
    fi
  done
  command -v "$name" || die "$name not found: run 'cargo build --release' or set SATURN_BIN_DIR"
}

# node-a .. node-z, then node-26, node-27, ...
agent_name() {
  local i=$1 letters=abcdefghijklmnopqrstuvwxyz
  if ((i < 26)); then echo "node-${letters:i:1}"; else echo "node-$i"; fi
}

# Prints "<healthy agents> <leader or ->" as the agent on $1 (API port) sees the mesh.
# `saturn status --json` is one JSON document; only agents carry "healthy".
mesh_state() {
  local json healthy leader
  json=$("$saturn" --addr "http://127.0.0.1:$1" --token-file "$token_file" status --json 2>/dev/null) || { echo "0 -"; return; }
  healthy=$({ grep -Eo '"healthy" *: *true' <<<"$json" || true; } | wc -l)
  leader=$(sed -nE 's/.*"leader" *: *"([^"]*)".*/\1/p' <<<"$json" | sed -n 1p)
  echo "$healthy ${leader:--}"
}

pids_file() { echo "$base/agents.pids"; }

# True when the pid is alive and is a saturn-agent (not a reused pid).
is_agent() {
  kill -0 "$1" 2>/dev/null && grep -q saturn-agent "/proc/$1/cmdline" 2>/dev/null
}

start_agent() {
  local i=$1 expect=$2 name dir
  name=$(agent_name "$i")
  dir=$base/$name
  mkdir -p "$dir"
  local args=(--name "$name" --data-dir "$dir/data"
    --listen "/ip4/127.0.0.1/tcp/$((mesh_base + i))" --api "127.0.0.1:$((api_base + i))"
    --gpus "sim:$sim" --no-mdns --api-token-file "$token_file")
  # The first $expect agents form the cluster; the others only join it (an agent given
  # --join alone never forms a cluster of its own).
  if ((i < expect)); then args+=(--bootstrap-expect "$expect"); fi
  if ((i > 0)); then args+=(--join "/ip4/127.0.0.1/tcp/$mesh_base"); fi
  # setsid: the agents outlive this script and a Ctrl-C in its terminal.
  setsid "$agent" "${args[@]}" >>"$dir/agent.log" 2>&1 </dev/null &
  echo "$! $name" >>"$(pids_file)"
}

# Polls until the first agent sees $1 healthy agents and a leader, or fails clearly.
wait_for() {
  local want=$1 deadline=$((SECONDS + timeout_s)) state pid name
  while :; do
    state=$(mesh_state "$api_base")
    if ((${state%% *} >= want)) && [[ ${state#* } != - ]]; then
      leader=${state#* }
      return
    fi
    while read -r pid name; do
      if ! is_agent "$pid"; then
        local log
        log=$(tail -n 15 "$base/$name/agent.log" 2>/dev/null || true)
        stop_agents >&2
        die "agent $name exited before the mesh formed; last lines of $base/$name/agent.log:"$'\n'"$log"
      fi
    done <"$(pids_file)"
    if ((SECONDS >= deadline)); then
      stop_agents
      local leader_now=${state#* }
      [[ $leader_now != - ]] || leader_now=none
      die "after ${timeout_s}s the mesh has ${state%% *} of $want healthy agents (leader: $leader_now); agents stopped, logs in $base/*/agent.log"
    fi
    sleep 0.5
  done
}

stop_agents() {
  local file pid name deadline alive
  file=$(pids_file)
  [[ -f $file ]] || { echo "local-cluster: nothing recorded in $file, nothing to stop"; return; }
  while read -r pid name; do
    if is_agent "$pid"; then
      echo "stopping $name (pid $pid)"
      kill -TERM "$pid" || true
    fi
  done <"$file"
  # Running jobs get SIGTERM from their agent and time to checkpoint (30 s by default).
  deadline=$((SECONDS + 45))
  while :; do
    alive=0
    while read -r pid name; do
      if is_agent "$pid"; then alive=$((alive + 1)); fi
    done <"$file"
    if ((alive == 0)); then break; fi
    if ((SECONDS >= deadline)); then
      while read -r pid name; do
        if is_agent "$pid"; then
          echo "killing $name (pid $pid): no clean stop in 45 s"
          kill -KILL "$pid" || true
        fi
      done <"$file"
      break
    fi
    sleep 0.5
  done
  rm -f "$file"
  echo "stopped; state kept in $base (delete it for a fresh mesh)"
}

show_status() {
  local file pid name
  file=$(pids_file)
  [[ -f $file ]] || { echo "no local cluster recorded in $base"; return 1; }
  while read -r pid name; do
    if is_agent "$pid"; then echo "$name pid $pid running"; else echo "$name pid $pid gone"; fi
  done <"$file"
  "$saturn" --addr "http://127.0.0.1:$api_base" --token-file "$token_file" status
}

# --- arguments --------------------------------------------------------------------------
[[ $# -ge 1 ]] || usage
command=$1
shift
while [[ $# -gt 0 ]]; do
  case $1 in
    --sim) sim=${2:?--sim needs a SPEC like 4xA100-80GB}; shift 2 ;;
    --sim=*) sim=${1#--sim=}; shift ;;
    --dir) base=${2:?--dir needs a directory}; shift 2 ;;
    --dir=*) base=${1#--dir=}; shift ;;
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
sim=${sim#sim:}
token_file=$base/api-token

case $command in
  stop) stop_agents; exit ;;
  status) saturn=$(find_bin saturn); show_status; exit ;;
  -h | --help) usage ;;
esac
[[ $command =~ ^[1-9][0-9]*$ ]] || die "expected a number of agents, 'status' or 'stop', got '$command'"
count=$command

agent=$(find_bin saturn-agent)
saturn=$(find_bin saturn)
mkdir -p "$base"
if [[ ! -s $token_file ]]; then
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
fi
if [[ -f $(pids_file) ]]; then
  while read -r pid name; do
    if is_agent "$pid"; then die "agent $name (pid $pid) of $base is still running: '$0 stop --dir $base' first"; fi
  done <"$(pids_file)"
  rm -f "$(pids_file)"
fi

expect=$((count < 3 ? count : 3))
echo "starting $count agents ($sim each) in $base, $expect forming the cluster…"
for ((i = 0; i < expect; i++)); do start_agent "$i" "$expect"; done
wait_for "$expect"
for ((i = expect; i < count; i++)); do start_agent "$i" "$expect"; done
wait_for "$count"

last=$((count - 1))
cat <<EOF

Saturn: $count agents up, leader $leader.
  dashboard   http://127.0.0.1:$api_base/   (every agent serves it: ports $api_base-$((api_base + last)))
  token       $token_file   (the dashboard asks for its contents once)
  status      $saturn --addr http://127.0.0.1:$api_base --token-file $token_file status
  submit      SATURN_ADDR=http://127.0.0.1:$api_base SATURN_TOKEN_FILE=$token_file $saturn job run JOBS.toml --wait
  agent logs  $base/<name>/agent.log   (names node-a … $(agent_name "$last"))
  stop        $0 stop --dir $base
EOF
