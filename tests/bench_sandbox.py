"""Benchmark: the sandbox's cost per job and per host call (not a test; run it by hand or in CI logs).

    FTL2_RUNNER_BIN=target/release/ftl2-runner FTL2_GUEST=<release .cwasm> \
        $FTL2_VENV/bin/python tests/bench_sandbox.py [--runs N]

Measures, for a no-op job streamed through the real `ansible-runner transmit` stream format:
  - ftl2-runner worker: wall time from the first stdin byte to the eof line, split into guest load /
    instantiate / run (from the worker's log), and peak RSS;
  - the peer, the real ansible-runner 2.4.3 worker running an empty playbook, measured in the same
    run, so the numbers are ratios rather than absolutes on a loaded 2-core machine;
  - inside the sandbox: 10,000 host calls (list-hosts) and 1,000 module calls (ping on localhost),
    sequential and gathered, as per-call latency.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ANSIBLE_RUNNER, BIN, GUEST, make_stream, make_zip, worker_env  # noqa: E402

NOOP = "async def run(inventory_path, extravars, runner):\n    return 0\n"
CALLS = """
import time
from ftl2 import _host
import asyncio
async def run(inventory_path, extravars, runner):
    t = time.perf_counter()
    for _ in range(10_000):
        _host.list_hosts("all")
    host_call = (time.perf_counter() - t) / 10_000
    async with runner.automation() as ftl:
        t = time.perf_counter()
        for _ in range(1_000):
            await ftl.ping()
        seq = (time.perf_counter() - t) / 1_000
        t = time.perf_counter()
        await asyncio.gather(*[ftl.ping() for _ in range(1_000)])
        par = (time.perf_counter() - t) / 1_000
    print(f"BENCH host_call_us={host_call*1e6:.1f} module_seq_us={seq*1e6:.1f} module_gather_us={par*1e6:.1f}")
    return 0
"""


def run_measured(cmd, stdin: bytes, env, cwd=None):
    """Run cmd feeding stdin; returns (wall seconds until eof line, peak RSS KiB, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd)
    proc.stdin.write(stdin)
    proc.stdin.close()
    out = b""
    wall = None
    while True:
        chunk = proc.stdout.read1(1 << 16)
        if not chunk:
            break
        out += chunk
        if wall is None and b'{"eof": true}\n' in out:
            wall = time.perf_counter() - t0
    _, status, rusage = os.wait4(proc.pid, 0)
    return wall or (time.perf_counter() - t0), rusage.ru_maxrss, out


def ours(tmp: Path, script: str, runs: int):
    sdir = tmp / "scripts"
    sdir.mkdir(exist_ok=True)
    (sdir / "main.py").write_text(script)
    zip_bytes = make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o644, b"localhost ansible_connection=local\n")])
    stream = make_stream({"ident": "bench", "inventory": "inventory/hosts"}, zip_bytes)
    results = []
    for i in range(runs):
        log = tmp / f"log{i}"
        env = worker_env(FTL2_SCRIPT=sdir / "main.py", FTL2_LOG_FILE=log)
        wall, rss, out = run_measured([str(BIN), "worker", f"--private-data-dir={tmp / f'r{i}'}", "--delete"], stream, env)
        text = log.read_text()
        load = float(re.search(r"guest load ([\d.]+) ms", text).group(1))
        inst, run = map(float, re.search(r"instantiate ([\d.]+) ms, run ([\d.]+) ms", text).groups())
        results.append({"wall_ms": wall * 1e3, "rss_mib": rss / 1024, "load_ms": load, "inst_ms": inst,
                        "run_ms": run, "out": out})
    return results


def peer(tmp: Path, runs: int):
    pdd = tmp / "peer-src"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts").write_text("localhost ansible_connection=local ansible_python_interpreter=" + sys.executable + "\n")
    (pdd / "project" / "noop.yml").write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    stream = subprocess.run([str(ANSIBLE_RUNNER), "transmit", str(pdd), "-p", "noop.yml"], capture_output=True, check=True).stdout
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    results = []
    for i in range(runs):
        wall, rss, _ = run_measured([str(ANSIBLE_RUNNER), "worker", f"--private-data-dir={tmp / f'p{i}'}", "--delete"], stream, env)
        results.append({"wall_ms": wall * 1e3, "rss_mib": rss / 1024})
    return results


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    print(f"binary {BIN}\nguest  {GUEST}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        mine = ours(tmp, NOOP, args.runs)
        theirs = peer(tmp, max(3, args.runs // 3))
        (tmp / "calls").mkdir()
        calls = ours(tmp / "calls", CALLS, 1)[0]
    w, pw = med(mine, "wall_ms"), med(theirs, "wall_ms")
    r, pr = med(mine, "rss_mib"), med(theirs, "rss_mib")
    print(f"no-op job, median of {len(mine)} (ftl2-runner) / {len(theirs)} (ansible-runner 2.4.3 worker, empty playbook):")
    print(f"  wall, first stdin byte to eof: {w:8.1f} ms  vs {pw:8.1f} ms  -> {pw / w:5.1f}x faster")
    print(f"  peak RSS:                      {r:8.1f} MiB vs {pr:8.1f} MiB -> {pr / r:5.1f}x smaller")
    print(f"  split: guest load {med(mine, 'load_ms'):.1f} ms, instantiate {med(mine, 'inst_ms'):.1f} ms, "
          f"run {med(mine, 'run_ms'):.1f} ms")
    line = next(l for l in calls["out"].decode().splitlines() if "BENCH" in l)
    ev = json.loads(line)["stdout"]
    print(f"  inside the sandbox: {ev.split('BENCH ')[1]}")


if __name__ == "__main__":
    main()
