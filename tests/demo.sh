#!/usr/bin/env bash
# The demo: an AWX-style job through the real controller-side ansible-runner and ftl2-runner:
#   ansible-runner transmit tests/demo -p main.py | ftl2-runner worker | ansible-runner process
# It prints the job output AWX would show and the final status.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FTL2_VENV:-$HOME/.cache/ftl2-runner/venv}
BIN=${FTL2_RUNNER_BIN:-${CARGO_TARGET_DIR:-target}/debug/ftl2-runner}
[ -x "$BIN" ] || cargo build -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
set +o pipefail  # the worker's exit code is the job's rc; the status below tells it
"$VENV/bin/ansible-runner" transmit tests/demo -p main.py --ident demo \
  | "$BIN" worker --private-data-dir="$work/worker" --delete \
  | "$VENV/bin/ansible-runner" process "$work/out" -i demo
echo "status: $(cat "$work/out/artifacts/demo/status")  rc: $(cat "$work/out/artifacts/demo/rc")"
