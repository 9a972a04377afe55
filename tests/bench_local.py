"""Benchmark: 200 sequential `command` calls on the controller itself (the local connection),
one job each (not a test).

    $FTL2_VENV/bin/python tests/bench_local.py [--calls 200] [--runs 3]

ftl2-runner: a job through the worker whose script awaits `command` on localhost N times.
FTL2 0.4.7 (Python >= 3.13 venv, see .ci/run): the same loop with its own `automation()`.
Both measured in the same run; the ratio is what to read, not the absolute times.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import FTL2_VENV, measure  # noqa: E402
from conftest import BIN, make_stream, make_zip, worker_env  # noqa: E402

OURS = """
MODULE, ARGS = {module!r}, {args!r}
async def run(inventory_path, extravars, runner):
    async with runner.automation() as ftl:
        for _ in range({n}):
            await ftl.run_on("localhost", MODULE, **ARGS)
    return 0
"""

FTL2 = """
import asyncio
MODULE, ARGS = {module!r}, {args!r}
from ftl2 import automation

async def main():
    async with automation(quiet=True) as ftl:
        for _ in range({n}):
            await ftl.run_on("localhost", MODULE, **ARGS)

asyncio.run(main())
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--module", default="command", help="command (cmd=true) or ping: without a process")
    args = ap.parse_args()
    ftl2_py = FTL2_VENV / "bin" / "python"
    assert ftl2_py.is_file(), f"FTL2 0.4.7 is not installed at {FTL2_VENV} (run .ci/run)"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sdir = tmp / "scripts"
        sdir.mkdir()
        margs = {"cmd": "true"} if args.module == "command" else {}
        (sdir / "main.py").write_text(OURS.format(n=args.calls, module=args.module, args=margs))
        (tmp / "ftl2_local.py").write_text(FTL2.format(n=args.calls, module=args.module, args=margs))
        inv = "localhost ansible_connection=local\n"
        ours, theirs = [], []
        for i in range(args.runs):
            stream = make_stream({"ident": "local", "inventory": "inventory/hosts"},
                                 make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inv.encode())]))
            ours.append(measure([str(BIN), "worker", f"--private-data-dir={tmp / f'w{i}'}", "--delete"],
                                stream, worker_env(FTL2_SCRIPT=sdir / "main.py"), sample_rss=False))
            theirs.append(measure([str(ftl2_py), str(tmp / "ftl2_local.py")], env=dict(os.environ), cwd=tmp,
                                  sample_rss=False))
        assert all(r[2] == 0 for r in ours + theirs), (ours, theirs)
        w, wf = statistics.median(r[0] for r in ours), statistics.median(r[0] for r in theirs)
        c, cf = statistics.median(r[3] for r in ours), statistics.median(r[3] for r in theirs)
        print(f"{args.calls} sequential local {args.module} calls: ftl2-runner {w:.2f} s, FTL2 0.4.7 {wf:.2f} s "
              f"({wf / w:.1f}x); CPU (with the {args.module} processes) {c:.2f} s vs {cf:.2f} s ({cf / c:.1f}x)")


if __name__ == "__main__":
    main()
