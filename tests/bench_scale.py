"""Benchmark: one job over 100, 300 and 1,000 real sshd hosts (not a test).

    $FTL2_VENV/bin/python tests/bench_scale.py [--sizes 100,300,1000] [--runs 1] [--limits 1024,512]

The worker alone (ping + command + file touch on every host, default forks) against FTL2 0.4.7
with the same tasks in the same run: wall time, peak RSS of the process tree and peak open
descriptors of the worker; then the largest job again under each `ulimit -n` in --limits (soft
and hard), which must succeed on every host (connections beyond the budget the limit leaves
are closed least-recently-used and reopened).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import FTL2_VENV, TASKS, ftl2_script, inventories, script, tree_rss_kib  # noqa: E402
from conftest import BIN, WorkerResult, make_stream, make_zip, worker_env  # noqa: E402
from testbed import Testbed  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def run(cmd, stdin=None, env=None, cwd=None, nofile=None, timeout=None):
    """Wall time, peak tree RSS (MiB), peak descriptors of the process itself, rc (None: killed
    after `timeout` s), stdout."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=cwd, preexec_fn=limit)
    if stdin:
        proc.stdin.write(stdin)
        proc.stdin.close()
    chunks, peak, fds = [], 0, 0
    os.set_blocking(proc.stdout.fileno(), False)
    while proc.poll() is None:
        if timeout and time.perf_counter() - t0 > timeout:
            proc.kill()
            proc.wait()
            return time.perf_counter() - t0, peak / 1024, fds, None, b""
        peak = max(peak, tree_rss_kib(proc.pid))
        try:
            fds = max(fds, len(os.listdir(f"/proc/{proc.pid}/fd")))
        except OSError:
            pass
        data = proc.stdout.read()
        if data:
            chunks.append(data)
        time.sleep(0.02)
    rest = proc.stdout.read()
    if rest:
        chunks.append(rest)
    return time.perf_counter() - t0, peak / 1024, fds, proc.returncode, b"".join(chunks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,300,1000")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--limits", default="1024,512")
    ap.add_argument("--ftl2-sizes", default="100", help="sizes FTL2 0.4.7 also runs (it is slow here)")
    ap.add_argument("--ftl2-timeout", type=int, default=600)
    args = ap.parse_args()
    tasks = TASKS["native"]
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        tb = Testbed(tmp / "tb", max(sizes)).start()
        print(f"{max(sizes)} sshd hosts started in {time.perf_counter() - t0:.0f} s", flush=True)
        try:
            inv, inv_ftl2 = inventories(tb, sizes)
            (tmp / "inv-ftl2.ini").write_text(inv_ftl2)
            sdir = tmp / "scripts"
            sdir.mkdir()
            (sdir / "main.py").write_text(script(tasks))
            (tmp / "ftl2_bench.py").write_text(ftl2_script(tasks))
            # FTL2 0.4.7's `ping` over SSH fails on every host with any ansible-core ("Failed to
            # decode JSON module parameters": a call without arguments); its command and file
            # are its own and succeed. The table says when its tasks failed.
            ftl2_py = FTL2_VENV / "bin" / "python"
            assert ftl2_py.is_file(), f"FTL2 0.4.7 is not installed at {FTL2_VENV} (run .ci/run)"
            aenv = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_HOST_KEY_CHECKING="False")

            def ours(n, i, nofile=None):
                zip_bytes = make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inv.encode()),
                                      ("env/extravars", 0o600, f"target: g{n}\n".encode())])
                stream = make_stream({"ident": "scale", "inventory": "inventory/hosts",
                                      "envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False"}}, zip_bytes)
                wall, rss, fds, rc, out = run([str(BIN), "worker", f"--private-data-dir={tmp / f'w{n}-{i}'}",
                                               "--delete"], stream, worker_env(FTL2_SCRIPT=sdir / "main.py"),
                                              nofile=nofile)
                res = WorkerResult(rc, out, b"")
                ok = sum(e["event"] == "runner_on_ok" for e in res.events)
                return wall, rss, fds, res.final_status, ok

            print(f"{'hosts':>5} | {'ftl2-runner':>34} | {'FTL2 0.4.7':>22} | vs FTL2", flush=True)
            base = None
            for n in sizes:
                for i in range(args.runs):
                    wall, rss, fds, status, ok = ours(n, i)
                    assert status == "successful" and ok == 3 * n, (n, status, ok)
                    base = base or (n, wall, rss)
                    col, ratio = f"{'-':>22}", ""
                    if str(n) in args.ftl2_sizes.split(","):
                        fw, frss, _, frc, _ = run([str(ftl2_py), str(tmp / "ftl2_bench.py"),
                                                   str(tmp / "inv-ftl2.ini"), f"g{n}"], env=dict(aenv), cwd=tmp,
                                                  timeout=args.ftl2_timeout)
                        if frc is None:
                            col = f"{f'> {args.ftl2_timeout} s, killed':>22}"
                        else:
                            col = f"{fw:7.2f} s {frss:8.1f} MiB"
                            ratio = f"{fw / wall:.1f}x faster, {frss / rss:.1f}x less memory"
                            if frc != 0:
                                ratio += " (FTL2: some tasks failed)"
                    per_host = (f", {(rss - base[2]) * 1024 / (n - base[0]):.0f} KiB more per host"
                                if n > base[0] else "")
                    print(f"{n:>5} | {wall:7.2f} s {rss:8.1f} MiB {fds:6d} fds | {col} | {ratio}"
                          f"  (vs {base[0]} hosts: time per host {wall / n / (base[1] / base[0]):.2f}x{per_host})",
                          flush=True)
            n = max(sizes)
            for limit in [int(x) for x in args.limits.split(",") if x]:
                wall, rss, fds, status, ok = ours(n, f"l{limit}", nofile=limit)
                print(f"{n} hosts under ulimit -n {limit}: {status}, {ok}/{3 * n} ok, {wall:.2f} s, "
                      f"{rss:.1f} MiB, {fds} fds at most", flush=True)
        finally:
            tb.stop()


if __name__ == "__main__":
    main()
