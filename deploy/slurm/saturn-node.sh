#!/usr/bin/env bash
# One saturn-agent on this Slurm node. saturn.sbatch starts it on every node of the
# allocation with `srun --ntasks-per-node=1`; it is not meant to be run by hand.
#
# From saturn.sbatch (exported, srun passes the environment on):
#   SATURN_EXPECT          nodes that form the cluster (min(nodes, 3)): nodes 0..EXPECT-1
#                          get --bootstrap-expect EXPECT, the others only --join
#   SATURN_JOIN_IP         IPv4 address of the first node, which every other node joins
#   SATURN_CLUSTER_KEY_HEX 64 hex digits: this allocation's mesh key (optional)
#   SATURN_TOKEN           this allocation's API token (optional)
# Overridable:
#   SATURN_BIN_DIR         where saturn-agent is (default: $PATH)
#   SATURN_MESH_PORT       mesh port (default 7946)     SATURN_API_PORT  API port (7070)
#   SATURN_GPUS            --gpus value (default auto)  SATURN_AGENT_ARGS extra flags
#   SATURN_SCRATCH         node-local directory for the data dir
#                          (default $SLURM_TMPDIR, $TMPDIR or /tmp)
#   SATURN_LOCAL_TEST=1    all "nodes" are processes on one machine (tests): ports are
#                          offset by SLURM_NODEID, names are node0, node1, ..., and the
#                          mesh listens on 127.0.0.1 only.
set -euo pipefail

: "${SATURN_EXPECT:?saturn-node.sh is started by saturn.sbatch (SATURN_EXPECT is not set)}"
: "${SATURN_JOIN_IP:?saturn-node.sh is started by saturn.sbatch (SATURN_JOIN_IP is not set)}"

agent=${SATURN_BIN_DIR:+$SATURN_BIN_DIR/}saturn-agent
node_id=${SLURM_NODEID:-0}
join_port=${SATURN_MESH_PORT:-7946}
mesh_port=$join_port
api_port=${SATURN_API_PORT:-7070}
name=${SLURMD_NODENAME:-$(hostname -s)}
bind=0.0.0.0
if [[ ${SATURN_LOCAL_TEST:-0} == 1 ]]; then
  mesh_port=$((mesh_port + node_id))
  api_port=$((api_port + node_id))
  name=node$node_id
  bind=127.0.0.1
fi

# Node-local scratch: the Raft log is written on every commit, keep it off shared storage.
scratch=${SATURN_SCRATCH:-${SLURM_TMPDIR:-${TMPDIR:-/tmp}}}
data_dir=$scratch/saturn-${SLURM_JOB_ID:-local}/$name
secrets=$data_dir/secrets
mkdir -p "$data_dir"
(umask 077 && mkdir -p "$secrets")

# The API stays on loopback: the batch script talks to the first node's agent locally.
args=(--name "$name" --data-dir "$data_dir/data"
  --listen "/ip4/$bind/tcp/$mesh_port" --api "127.0.0.1:$api_port"
  --gpus "${SATURN_GPUS:-auto}" --no-mdns)
# Only the first nodes form the cluster; an agent given --join alone never forms one.
if ((node_id < SATURN_EXPECT)); then
  args+=(--bootstrap-expect "$SATURN_EXPECT")
fi
if [[ $node_id != 0 ]]; then
  args+=(--join "/ip4/$SATURN_JOIN_IP/tcp/$join_port")
fi
# Other users of a shared node could otherwise reach the mesh port and the loopback API.
if [[ -n ${SATURN_CLUSTER_KEY_HEX:-} ]]; then
  (umask 077 && printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$SATURN_CLUSTER_KEY_HEX" >"$secrets/cluster.key")
  args+=(--cluster-key-file "$secrets/cluster.key")
fi
if [[ -n ${SATURN_TOKEN:-} ]]; then
  (umask 077 && printf '%s\n' "$SATURN_TOKEN" >"$secrets/api.token")
  args+=(--api-token-file "$secrets/api.token")
fi
read -r -a extra <<<"${SATURN_AGENT_ARGS:-}"

echo "saturn-node: $name (node $node_id) mesh $bind:$mesh_port api 127.0.0.1:$api_port data $data_dir" >&2
# exec: srun's SIGTERM reaches the agent itself, which checkpoints its jobs and exits.
exec "$agent" "${args[@]}" ${extra[@]+"${extra[@]}"}
