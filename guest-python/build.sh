#!/usr/bin/env bash
# Build the guest component: CPython + the ftl2 API + PyYAML/Jinja2, via componentize-py.
#   guest-python/build.sh [OUT.wasm]     (default: $CARGO_TARGET_DIR or target, /guest/ftl2-guest.wasm)
# Needs componentize-py 0.25.1 (pinned: its output targets wasmtime 46, which the host pins).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
VENV=${FTL2_VENV:-$HOME/.cache/ftl2-runner/venv}
CPY=${COMPONENTIZE_PY:-$VENV/bin/componentize-py}
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target/guest/ftl2-guest.wasm}
deps=$target/guest/deps
want=$(cat "$here/requirements.txt" | tr '\n' ' ')
mkdir -p "$(dirname "$out")"
if [ ! -f "$deps/.installed" ] || [ "$(cat "$deps/.installed")" != "$want" ]; then
  rm -rf "$deps"
  # Pure-Python packages only: C extensions cannot run in the sandbox (PyYAML and MarkupSafe fall
  # back to their pure-Python code when their extension modules are absent).
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --no-compile --target "$deps" --no-deps \
    --no-binary pyyaml,markupsafe -r "$here/requirements.txt"
  find "$deps" -name '*.so' -delete
  echo "$want" > "$deps/.installed"
fi
"$CPY" -q -d "$root/wit" -w runner componentize app -p "$here" -p "$deps" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
