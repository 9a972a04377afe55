# What running ftl2-runner's demo and tests needs, each step idempotent and quiet when its result
# is already there. Sourced by .ci/run (everything) and tests/demo.sh (the demo's part).
#   source .ci/setup.sh; setup_python; setup_build; setup_guest

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

# System packages: sshd for the test hosts, sudo and doas for become, objdump for the binary's
# glibc needs; crontab, git and rsync for the Ansible modules (cron, git, synchronize) the module
# tests run; podman, runc and mmdebstrap for the image test (tests/ee_base.sh, test_image.py).
setup_system() {
  local need=()
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v sudo >/dev/null || need+=(sudo)
  command -v doas >/dev/null || need+=(doas)
  command -v ssh-keygen >/dev/null || need+=(openssh-client)
  command -v objdump >/dev/null || need+=(binutils)
  command -v crontab >/dev/null || need+=(cron)
  command -v git >/dev/null || need+=(git)
  command -v rsync >/dev/null || need+=(rsync)
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v newuidmap >/dev/null || need+=(uidmap)
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# Python peer: the real ansible-runner from PyPI (pinned; the protocol is checked against it),
# ansible-core for reference runs, pytest + PyYAML for the tests, componentize-py for the guest.
setup_python() {
  VENV=${FTL2_VENV:-$HOME/.cache/ftl2-runner/venv}
  local reqs=(ansible-runner==2.4.3 ansible-core pytest pyyaml componentize-py==0.25.1)
  if ! "$VENV/bin/python" -c 'import ansible_runner, ansible, pytest, yaml, componentize_py' 2>/dev/null \
     || [ "$("$VENV/bin/ansible-runner" --version 2>/dev/null)" != "2.4.3" ] \
     || [ "$("$VENV/bin/componentize-py" --version 2>/dev/null)" != "componentize-py 0.25.1" ]; then
    echo "setup: creating the Python venv at $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${reqs[@]}"
  fi
  export FTL2_VENV=$VENV
}

# A second ansible-core, the 2.15 line awx-ee ships today: the module tests run as that EE too.
setup_python215() {
  VENV215=${FTL2_VENV215:-$HOME/.cache/ftl2-runner/venv215}
  if ! "$VENV215/bin/python" -c 'import ansible.release as r; assert r.__version__.startswith("2.15.")' 2>/dev/null; then
    echo "setup: creating the ansible-core 2.15 venv at $VENV215"
    python3 -m venv "$VENV215"
    "$VENV215/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.15,<2.16'
  fi
  export FTL2_VENV215=$VENV215
}

# The newest ansible-core (2.20+ needs Python >= 3.12) and FTL2 0.4.7 (>= 3.13) for the
# side-by-side tests and benchmarks: the first Python 3.13 found (PATH, then pyenv's versions).
setup_python_newest() {
  VENV_NEWEST=${FTL2_VENV_NEWEST:-$HOME/.cache/ftl2-runner/venv-newest}
  if ! "$VENV_NEWEST/bin/python" -c 'import ansible, ftl2' 2>/dev/null; then
    local py313="" cand
    for cand in python3.13 $(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python3.13 2>/dev/null); do
      if "$cand" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then py313=$cand; break; fi
    done
    if [ -z "$py313" ] && command -v apt-get >/dev/null; then
      echo "setup: no Python 3.13 found; installing python3.13"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.13 python3.13-venv >/dev/null 2>&1 || true
      command -v python3.13 >/dev/null && py313=python3.13
    fi
    [ -n "$py313" ] || { echo "setup: Python >= 3.13 is needed for the newest ansible-core and FTL2" >&2; return 1; }
    echo "setup: creating the newest ansible-core + FTL2 venv at $VENV_NEWEST ($py313)"
    "$py313" -m venv "$VENV_NEWEST"
    "$VENV_NEWEST/bin/pip" install -q --disable-pip-version-check ansible-core 'ftl2==0.4.7'
  fi
  export FTL2_VENV_NEWEST=$VENV_NEWEST
  # FTL2 0.4.7 cannot pass arguments to the modules of ansible-core 2.19+ ("Failed to decode
  # JSON module parameters"), so the module benchmark runs all three runners on 2.18.
  VENV_FTL2_218=${FTL2_VENV_FTL2_218:-$HOME/.cache/ftl2-runner/venv-ftl2-218}
  if ! "$VENV_FTL2_218/bin/python" -c 'import ansible, ftl2' 2>/dev/null; then
    echo "setup: creating the ansible-core 2.18 + FTL2 venv at $VENV_FTL2_218"
    "$VENV_NEWEST/bin/python" -m venv "$VENV_FTL2_218"
    "$VENV_FTL2_218/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.18,<2.19' 'ftl2==0.4.7'
  fi
  export FTL2_VENV_FTL2_218=$VENV_FTL2_218
}

# Collections from PyPI's `ansible` package (the module tests use ansible.posix and
# community.general from it), unpacked once into a collections path.
setup_collections() {
  COLLECTIONS=${FTL2_COLLECTIONS:-$HOME/.cache/ftl2-runner/ansible-collections}
  if [ ! -f "$COLLECTIONS/ansible_collections/community/general/MANIFEST.json" ]; then
    echo "setup: installing PyPI's ansible collections into $COLLECTIONS"
    "$VENV_NEWEST/bin/pip" install -q --disable-pip-version-check --no-deps --target "$COLLECTIONS" ansible
  fi
  export FTL2_COLLECTIONS=$COLLECTIONS
}

# The binary (debug build, in $CARGO_TARGET_DIR or target/).
setup_build() {
  (cd "$ROOT" && cargo build --locked -q)
  TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
  export FTL2_RUNNER_BIN=$TARGET/debug/ftl2-runner
}

# The guest component (CPython + ftl2 API), rebuilt when what guest-python/ or wit/ hold changed
# (by content, recorded beside the build: every file of a fresh clone is newer than a cached
# build, so times would rebuild it on every CI run), then its native artifact for this binary;
# FTL2_GUEST points the worker at it.
setup_guest() {
  local wasm=$TARGET/guest/ftl2-guest.wasm sources
  sources=$(cd "$ROOT" && find guest-python wit -type f -not -name '*.pyc' -not -path '*/__pycache__/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [ ! -f "$wasm" ] || [ "$(cat "$wasm.sources" 2>/dev/null)" != "$sources" ]; then
    FTL2_VENV=$VENV bash "$ROOT/guest-python/build.sh" "$wasm" >/dev/null
    echo "$sources" > "$wasm.sources"
  fi
  "$FTL2_RUNNER_BIN" compile "$wasm" -o "$TARGET/guest/ftl2-guest.cwasm" >/dev/null
  export FTL2_GUEST=$TARGET/guest/ftl2-guest.cwasm
}
