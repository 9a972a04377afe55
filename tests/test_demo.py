"""The README's first command: `bash tests/demo.sh` runs the demo job through the real
ansible-runner transmit/process with nothing set up by hand (it makes or finds the venv, the
binary and the guest itself, quietly when they are there)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_with_nothing_exported():
    env = {k: v for k, v in os.environ.items() if k not in ("FTL2_GUEST", "FTL2_RUNNER_BIN")}
    proc = subprocess.run(["bash", "tests/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello from the demo" in proc.stdout and "status: successful  rc: 0" in proc.stdout, proc.stdout
    assert "setup:" not in proc.stdout + proc.stderr, "not quiet although everything is there"
