"""The binary fits the execution environment it is installed into: the current awx-ee image is
CentOS Stream 9 (glibc 2.34), and RHEL 9 based EEs have the same glibc; a binary that asks for a
newer glibc symbol would not start there at all."""

import re
import subprocess

from conftest import BIN

EE_GLIBC = (2, 34)


def test_binary_needs_no_glibc_newer_than_the_ee_has():
    out = subprocess.run(["objdump", "-T", str(BIN)], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", out)}
    assert versions, "no glibc symbol versions found: is this a dynamically linked binary?"
    assert max(versions) <= EE_GLIBC, f"needs glibc {'.'.join(map(str, max(versions)))}"
