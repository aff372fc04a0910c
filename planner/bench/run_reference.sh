#!/bin/sh
# Regenerates the heterogeneous instances and their reference makespans (CP-SAT and the LP
# bound) into planner/bench/reference.json. Needs python3 and PyPI (ortools, in its own venv).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${SATURN_ORTOOLS_VENV:-$HOME/.cache/saturn-ortools-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import ortools' 2>/dev/null || "$venv/bin/pip" install -q ortools
"$venv/bin/python" "$here/hetero.py" generate "$here/instances"
"$venv/bin/python" "$here/hetero.py" solve "$here/instances"
