"""The script author's API reference (guest-python/API.md) is generated from the guest's
docstrings: it must be current, and every public name must have a docstring."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_api_reference_is_current_and_every_public_name_is_documented():
    proc = subprocess.run([sys.executable, str(ROOT / "guest-python" / "apidoc.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    text = (ROOT / "guest-python" / "API.md").read_text()
    # What a script author looks for is there: the entry point, the proxies, results, secrets.
    for needle in ("### function `automation(", "### class `AutomationContext(", "HostScopedProxy",
                   "### class `ExecuteResult(", "property `secrets`", "### class `PolicyDeniedError("):
        assert needle in text, needle
