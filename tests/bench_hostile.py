"""Benchmark: peak memory and time of the worst inventories a job can bring (not a test).

    $FTL2_VENV/bin/python tests/bench_hostile.py

Each case is a job through the real worker (a trivial script): the largest inventory the caps
accept (100,000 hosts), ranges and alias bombs the caps refuse, an endless inventory file, a
10,000-deep group chain, 30 overlapping groups, YAML nested past the parser's limit. Prints the
final status, wall time and the worker's peak RSS, and the ratio to a one-host job in the same run.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_sandbox import run_measured  # noqa: E402
from conftest import BIN, make_stream, make_zip, worker_env  # noqa: E402


def overlapping(groups=30):
    lines = ["h0"]
    for i in range(groups):
        lines.append(f"[g{i}:children]")
        lines += [f"g{j}" for j in range(i + 1, min(i + 4, groups))]
    return "\n".join(lines + ["[g29]", "h1"]) + "\n"


CASES = [
    ("one host (baseline)", "hosts", "localhost ansible_connection=local\n"),
    ("100,000 hosts (the cap), with vars", "hosts", "[web]\nweb[0:99999] ansible_user=deploy tier=front\n"),
    ("web[0:99999999] (refused)", "hosts", "[web]\nweb[0:99999999]\n"),
    ("billion laughs (refused)", "hosts.yml", "all:\n  vars:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 12))),
    ("10,000-deep group chain", "hosts", "".join(f"[c{i}:children]\nc{i + 1}\n" for i in range(10_000))
     + "[c10000]\nbottom\n"),
    ("30 overlapping groups", "hosts", overlapping()),
    ("YAML nested 5,000 deep (refused)", "hosts.yml", "all:\n  vars:\n    deep: " + "[" * 5000 + "]" * 5000 + "\n"),
    ("/dev/zero as inventory (refused at 64 MiB)", "/dev/zero", None),
]


def main():
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sdir = tmp / "scripts"
        sdir.mkdir()
        (sdir / "main.py").write_text("async def run(a, b, c):\n    return 0\n")
        env = worker_env(FTL2_SCRIPT=sdir / "main.py")
        rows = []
        for i, (label, name, text) in enumerate(CASES):
            if text is None:
                stream = make_stream({"ident": "h", "inventory": name}, make_zip([("inventory/", 0o755, b"")]))
            else:
                stream = make_stream({"ident": "h", "inventory": f"inventory/{name}"},
                                     make_zip([("inventory/", 0o755, b""), (f"inventory/{name}", 0o644, text.encode())]))
            wall, rss_kib, out = run_measured([str(BIN), "worker", f"--private-data-dir={tmp / f'r{i}'}"], stream, env)
            status = next((line.split(b'"')[3].decode() for line in reversed(out.split(b"\n"))
                           if line.startswith(b'{"status"')), "none")
            rows.append((label, status, wall, rss_kib / 1024))
        base_wall, base_rss = rows[0][2], rows[0][3]
        print(f"{'case':45} {'status':10} {'wall s':>8} {'x':>6} {'peak MB':>8} {'x':>6}")
        for label, status, wall, mb in rows:
            print(f"{label:45} {status:10} {wall:8.2f} {wall / base_wall:6.1f} {mb:8.1f} {mb / base_rss:6.1f}")


if __name__ == "__main__":
    main()
