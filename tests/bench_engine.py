"""Benchmark: three modules on 1, 10 and 50 real sshd hosts (not a test).

    $FTL2_VENV/bin/python tests/bench_engine.py [--sizes 1,10,50] [--runs 3] [--modules native|ansible]

`native`: ping + command + file touch (our Rust modules). `ansible`: getent + find + wait_for,
which are not native, so they run as Ansible modules built by the EE's ansible-core (also run
with the resident module runner off, to show what it saves). With `ansible` all three runners use
ansible-core 2.18 (its venv from .ci/run), the newest whose modules FTL2 0.4.7 can pass
arguments to: ours finds it on the job's PATH, as in an EE.
Runs the same three tasks through ftl2-runner (a job through the worker, the script doing
`run_on` for each module) and through ansible-playbook (ansible-core, forks = N, no fact
gathering, pipelining on and off) on the same hosts in the same run, and prints wall time and
peak RSS of the whole process tree, with the ratios, and the controller's own CPU time: the
testbed's hosts share the controller's cores, so the wall time also holds the hosts' work (an sshd
and a Python per host), which on real hosts runs elsewhere. OpenSSH's ControlPersist masters
detach, so ansible-playbook's connection encryption is not in its CPU figure; ours is.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import BIN, make_stream, make_zip, worker_env  # noqa: E402
from testbed import Testbed  # noqa: E402

VENV_BIN = Path(sys.executable).parent

TASKS = {
    "native": [("ping", {}), ("command", {"cmd": "echo hello"}),
               ("file", {"path": "/tmp/ftl2-bench-touch", "state": "touch"})],
    "ansible": [("getent", {"database": "passwd", "key": "root"}),
                ("find", {"paths": "/etc", "patterns": "host*"}),
                ("wait_for", {"path": "/etc/hostname", "timeout": 5})],
}


def script(tasks) -> str:
    calls = "\n".join(f"        await ftl.run_on(target, {m!r}, **{a!r})" for m, a in tasks)
    return f"""
async def run(inventory_path, extravars, runner):
    target = extravars["target"]
    async with runner.automation(fail_fast=False) as ftl:
{calls}
    return 0
"""


def playbook(tasks) -> str:
    import json

    body = "\n".join(f"    - ansible.builtin.{m}: {json.dumps(a)}" for m, a in tasks)
    return f"""- hosts: "{{{{ target }}}}"
  gather_facts: false
  tasks:
{body}
"""


# FTL2 0.4.7 itself (Python >= 3.13 venv, see .ci/run), run on the same hosts and tasks.
FTL2_VENV = Path(os.environ.get("FTL2_VENV_NEWEST", Path.home() / ".cache/ftl2-runner/venv-newest"))
# FTL2 0.4.7 with ansible-core 2.18: with 2.19+ its SSH runs of Ansible modules fail ("Failed to
# decode JSON module parameters").
FTL2_218_VENV = Path(os.environ.get("FTL2_VENV_FTL2_218", Path.home() / ".cache/ftl2-runner/venv-ftl2-218"))


def ftl2_script(tasks) -> str:
    calls = "\n".join(f"        for r in await ftl.run_on(target, {m!r}, **{a!r}):\n"
                      f"            failed += not r.success" for m, a in tasks)
    return f"""
import asyncio, sys
from ftl2 import automation

async def main(inventory, target):
    failed = 0
    async with automation(inventory=inventory, quiet=True, fail_fast=False) as ftl:
{calls}
    return failed

sys.exit(1 if asyncio.run(main(sys.argv[1], sys.argv[2])) else 0)
"""


def inventories(tb, sizes) -> tuple[str, str]:
    """The testbed's inventory with a group `g<n>` of the first n hosts for each size, for us and
    for FTL2 0.4.7 (which keeps only a host's last inventory line: each group gets full lines)."""
    inv = tb.ini_inventory()
    for n in sizes:
        inv += f"[g{n}]\n" + "\n".join(h.name for h in tb.hosts[:n]) + "\n"
    full = {h.name: f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user=root "
                    f"ansible_ssh_private_key_file={tb.key} ansible_python_interpreter=/usr/bin/python3 "
                    f"disable_host_key_checking=true ssh_private_key_file={tb.key}"
            for h in tb.hosts}
    inv_ftl2 = "".join(f"[g{n}]\n" + "\n".join(full[h.name] for h in tb.hosts[:n]) + "\n" for n in sizes)
    return inv, inv_ftl2


def tree_rss_kib(pid: int) -> int:
    """Resident memory of pid and all its descendants."""
    total = 0
    todo = [pid]
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


def measure(cmd, stdin=None, env=None, cwd=None, sample_rss=True):
    """(wall s, peak RSS MiB of the process tree, exit code, CPU s). Sampling the RSS walks /proc
    every 20 ms, which takes CPU from what is measured: off for runs of a fraction of a second."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    if stdin:
        proc.stdin.write(stdin)
        proc.stdin.close()
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if not sample_rss else os.WNOHANG)
        if pid:
            break
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # CPU of the process and every descendant it waited for: the controller's own work. The
    # testbed's sshd and the modules they run are not its descendants (on real hosts that work
    # runs on the hosts, here it shares the same cores and is in the wall time).
    return wall, peak / 1024, proc.returncode, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10,50")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modules", choices=sorted(TASKS), default="native")
    args = ap.parse_args()
    tasks = TASKS[args.modules]
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tb = Testbed(tmp / "tb", max(sizes)).start()
        try:
            inv, inv_ftl2 = inventories(tb, sizes)
            (tmp / "inv.ini").write_text(inv)
            (tmp / "inv-ftl2.ini").write_text(inv_ftl2)
            (tmp / "play.yml").write_text(playbook(tasks))
            sdir = tmp / "scripts"
            sdir.mkdir()
            (sdir / "main.py").write_text(script(tasks))
            (tmp / "ftl2_bench.py").write_text(ftl2_script(tasks))
            venv = FTL2_218_VENV if args.modules == "ansible" else FTL2_VENV
            ftl2_py = venv / "bin" / "python"
            assert ftl2_py.is_file(), f"FTL2 0.4.7 is not installed at {venv} (run .ci/run)"
            # ansible-playbook (and, for `ansible`, the EE's ansible-core that builds our payloads).
            ansible_bin = venv / "bin" if args.modules == "ansible" else VENV_BIN
            core = subprocess.run([str(ansible_bin / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            print(f"ansible-core {core} ({ansible_bin})")
            aenv = dict(os.environ, PATH=f"{ansible_bin}:{os.environ['PATH']}", ANSIBLE_HOST_KEY_CHECKING="False")
            print(f"{'hosts':>5} | {'ftl2-runner':>22} | {'ansible-playbook':>22} | {'+pipelining':>22} | "
                  f"{'FTL2 0.4.7':>22} | speedup vs ansible (piped) | vs FTL2 | memory")
            for n in sizes:
                ours, ours_piped, theirs, piped, ftl2 = [], [], [], [], []
                for i in range(args.runs):
                    zip_bytes = make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inv.encode()),
                                          ("env/extravars", 0o600, f"target: g{n}\n".encode())])
                    stream = make_stream({"ident": "bench", "inventory": "inventory/hosts",
                                          "envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False",
                                                      "PATH": f"{ansible_bin}:{os.environ['PATH']}"}}, zip_bytes)
                    ours.append(measure([str(BIN), "worker", f"--private-data-dir={tmp / f'w{n}-{i}'}", "--delete"],
                                        stream, worker_env(FTL2_SCRIPT=sdir / "main.py")))
                    if args.modules == "ansible":
                        ours_piped.append(measure(
                            [str(BIN), "worker", f"--private-data-dir={tmp / f'p{n}-{i}'}", "--delete"],
                            stream, worker_env(FTL2_SCRIPT=sdir / "main.py", FTL2_RESIDENT="0")))
                    base = [str(ansible_bin / "ansible-playbook"), "-i", str(tmp / "inv.ini"), str(tmp / "play.yml"),
                            "-e", f"target=g{n}", "-f", str(n)]
                    theirs.append(measure(base, env=dict(aenv, ANSIBLE_PIPELINING="False")))
                    piped.append(measure(base, env=dict(aenv, ANSIBLE_PIPELINING="True")))
                    ftl2.append(measure([str(ftl2_py), str(tmp / "ftl2_bench.py"), str(tmp / "inv-ftl2.ini"), f"g{n}"],
                                        env=dict(aenv), cwd=tmp))  # FTL2 writes ftl2.log here
                assert all(r[2] == 0 for r in ours + ours_piped + theirs + piped), (ours, ours_piped, theirs, piped)
                # Should FTL2's tasks fail, say so rather than time a failure.
                ftl2_ok = all(r[2] == 0 for r in ftl2)
                w = statistics.median(r[0] for r in ours)
                wa = statistics.median(r[0] for r in theirs)
                wp = statistics.median(r[0] for r in piped)
                m = statistics.median(r[1] for r in ours)
                ma = statistics.median(r[1] for r in theirs)
                wf = statistics.median(r[0] for r in ftl2)
                ftl2_col = (f"{wf:7.2f} s {statistics.median(r[1] for r in ftl2):8.1f} MiB" if ftl2_ok
                            else f"{'its tasks failed':>22}")
                print(f"{n:>5} | {w:7.2f} s {m:8.1f} MiB | {wa:7.2f} s {ma:8.1f} MiB | "
                      f"{wp:7.2f} s {statistics.median(r[1] for r in piped):8.1f} MiB | {ftl2_col} | "
                      f"{wa / w:5.1f}x ({wp / w:.1f}x) | {f'{wf / w:5.1f}x' if ftl2_ok else '  n/a'} | "
                      f"{ma / m:4.1f}x less")
                c, ca, cp, cf = (statistics.median(r[3] for r in runs) for runs in (ours, theirs, piped, ftl2))
                print(f"      controller CPU (user+sys of the command and what it waited for): ftl2-runner "
                      f"{c:.2f} s, ansible-playbook {ca:.2f} s ({ca / c:.1f}x), +pipelining {cp:.2f} s "
                      f"({cp / c:.1f}x), FTL2 0.4.7 {cf:.2f} s ({cf / c:.1f}x)")
                if ours_piped:
                    wo = statistics.median(r[0] for r in ours_piped)
                    print(f"      ftl2-runner without its resident module runner (FTL2_RESIDENT=0): {wo:.2f} s, "
                          f"{wo / w:.1f}x slower than with it")
        finally:
            tb.stop()


if __name__ == "__main__":
    main()
