#!/usr/bin/env bash
# The demo: an AWX-style job through the real controller-side ansible-runner and ftl2-runner:
#   ansible-runner transmit tests/demo -p main.py | ftl2-runner worker | ansible-runner process
# It prints the job output AWX would show and the final status. On a fresh clone it first makes
# what it needs (the Python venv with ansible-runner, the binary, the guest), as .ci/run does,
# and says so; when they are there it is quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source .ci/setup.sh
setup_python
setup_build
setup_guest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
set +o pipefail  # the worker's exit code is the job's rc; the status below tells it
"$VENV/bin/ansible-runner" transmit tests/demo -p main.py --ident demo \
  | "$FTL2_RUNNER_BIN" worker --private-data-dir="$work/worker" --delete \
  | "$VENV/bin/ansible-runner" process "$work/out" -i demo
echo "status: $(cat "$work/out/artifacts/demo/status")  rc: $(cat "$work/out/artifacts/demo/rc")"
