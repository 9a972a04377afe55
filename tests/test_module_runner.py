"""The resident module runner: Ansible modules run in a child forked from one long-lived Python
per host instead of a new interpreter each, and behave exactly as under ansible-playbook: each
task its own process (no state carried between tasks, stdin at EOF, exit handlers and threads
finished before the result), with plain pipelining when the runner cannot start, and a clear
failure (never a hang) when it dies under a module."""

import shutil
import textwrap
import uuid
from pathlib import Path

import pytest

from test_ansible_modules import ansible_playbook_results, normalise, our_results
from testbed import Testbed

# A module that shows what a task's process inherits and does at exit.
PROBE = '''
import os, sys, threading, atexit, time
import ansible.module_utils.basic as basic
from ansible.module_utils.basic import AnsibleModule

def main():
    m = AnsibleModule(argument_spec=dict(mark=dict(type="str", required=True),
                                         dir=dict(type="path", required=True),
                                         kill_parent=dict(type="bool", default=False)))
    mark, d = m.params["mark"], m.params["dir"]
    seen = getattr(basic, "_ftl2_probe_mark", None)
    basic._ftl2_probe_mark = mark
    os.environ["FTL2_PROBE"] = mark
    stdin = sys.stdin.read()
    atexit.register(lambda: open(os.path.join(d, "atexit-" + mark), "w").close())

    def late():
        time.sleep(0.3)
        open(os.path.join(d, "thread-" + mark), "w").close()

    threading.Thread(target=late).start()
    if m.params["kill_parent"]:
        os.kill(os.getppid(), 9)
    m.exit_json(changed=False, seen=seen, stdin=stdin, pid=os.getpid(), ppid=os.getppid())

if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("tb"), 1).start()
    yield tb
    tb.stop()


@pytest.fixture()
def probe(tmp_path):
    """A collection holding the probe module, and a directory it may write to."""
    coll = tmp_path / "coll"
    mod = coll / "ansible_collections" / "ftl2test" / "iso" / "plugins" / "modules"
    mod.mkdir(parents=True)
    (mod / "probe.py").write_text(PROBE)
    out = Path(f"/tmp/ftl2-probe-{uuid.uuid4().hex[:8]}")
    out.mkdir()
    yield {"ANSIBLE_COLLECTIONS_PATH": str(coll)}, out
    shutil.rmtree(out, ignore_errors=True)


def steps(out: Path, marks, **extra):
    return [("ftl2test.iso.probe", {"mark": m, "dir": str(out), **extra}) for m in marks]


def test_each_task_is_its_own_process_as_under_ansible_playbook(testbed, probe, tmp_path):
    env, out = probe
    inv = testbed.ini_inventory()
    ours, res = our_results(tmp_path / "ours", inv, steps(out, ["o1", "o2", "o3"]), None, extra_env=env)
    # Pipelined, as we run modules: without it a module reading stdin waits on OpenSSH's pty.
    theirs = ansible_playbook_results(inv, steps(out, ["a1", "a2", "a3"]), None, tmp_path,
                                      extra_env={**env, "ANSIBLE_PIPELINING": "True"})
    assert [e for e, _ in ours] == [e for e, _ in theirs] == ["runner_on_ok"] * 3, res.stdout[-3000:]
    for (_, o), (_, t) in zip(ours, theirs):
        # Nothing from an earlier task's process (a module_utils global, the environment).
        assert o["seen"] is None and t["seen"] is None, (o, t)
        assert o["stdin"] == t["stdin"] == "", (o, t)
        strip = lambda r: {k: v for k, v in normalise(r, "\0", "\0").items() if k not in ("pid", "ppid")}
        assert strip(o) == strip(t)
    # Exit handlers ran and non-daemon threads finished, as when Python exits normally.
    for mark in ("o1", "o2", "o3", "a1", "a2", "a3"):
        assert (out / f"atexit-{mark}").exists() and (out / f"thread-{mark}").exists(), sorted(out.iterdir())
    # One new process per task, each forked from the same resident runner on the host.
    pids = {r["pid"] for _, r in ours}
    parents = {r["ppid"] for _, r in ours}
    assert len(pids) == 3 and len(parents) == 1, ours
    try:
        cmdline = Path(f"/proc/{parents.pop()}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    assert b"sys.stdin.buffer.read" not in cmdline, "the resident runner outlived its job"


def test_without_a_runner_modules_are_pipelined(testbed, probe, tmp_path):
    """An interpreter the runner cannot start under (here one that refuses `-c`) still runs every
    module, as plain pipelining, one process per task."""
    env, out = probe
    wrapper = tmp_path / "python-stdin-only"
    wrapper.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$1" in -c) echo "this python runs scripts from stdin only" >&2; exit 1;; esac
        exec /usr/bin/python3 "$@"
    """))
    wrapper.chmod(0o755)
    inv = testbed.ini_inventory().replace("ansible_python_interpreter=/usr/bin/python3",
                                          f"ansible_python_interpreter={wrapper}")
    ours, res = our_results(tmp_path / "ours", inv, steps(out, ["p1", "p2"]), None, extra_env=env)
    assert [e for e, _ in ours] == ["runner_on_ok"] * 2, res.stdout[-3000:]
    assert ours[0][1]["ppid"] != ours[1][1]["ppid"], ours


def test_a_runner_killed_under_a_module_fails_that_task_and_the_job_goes_on(testbed, probe, tmp_path):
    env, out = probe
    calls = steps(out, ["k1"], kill_parent=True) + steps(out, ["k2"])
    before = set(Path("/tmp").glob("ftl2-resident-*"))
    ours, res = our_results(tmp_path / "ours", testbed.ini_inventory(), calls, None, extra_env=env)
    # A runner killed with SIGKILL cannot remove its work dir (the testbed host is this machine).
    for d in set(Path("/tmp").glob("ftl2-resident-*")) - before:
        shutil.rmtree(d, ignore_errors=True)
    assert [e for e, _ in ours] == ["runner_on_unreachable", "runner_on_ok"], res.stdout[-3000:]
    assert "lost the resident module runner" in ours[0][1]["msg"], ours[0]
    assert res.final_status == "failed"


def test_a_canceled_job_leaves_no_module_running_on_the_controller(tmp_path):
    """The local connection's resident runner and the module it is running end with the job
    (SIGTERM, as AWX cancels), and the runner removes its work dir."""
    import os
    import signal
    import subprocess
    import time

    from conftest import BIN, VENV_BIN, make_stream, make_zip, read_until, worker_env

    mark = f"/nonexistent-ftl2-{os.getpid()}-{time.monotonic_ns()}"
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(textwrap.dedent(f"""
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.run_on("localhost", "getent", database="passwd", key="root")
                print("started", flush=True)
                await ftl.run_on("localhost", "wait_for", path="{mark}", timeout=60)
            return 0
    """))
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, b"localhost ansible_connection=local\n")]
    stream = make_stream({"ident": "cancel", "inventory": "inventory/hosts",
                          "envvars": {"PATH": f"{VENV_BIN}:{os.environ['PATH']}"}}, make_zip(entries))
    before = set(Path("/tmp").glob("ftl2-resident-*"))
    proc = subprocess.Popen([str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    proc.stdin.write(stream)
    proc.stdin.close()
    read_until(proc.stdout, b"started")

    def below(pid):
        """Pids of every process below pid, from /proc."""
        parent = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        found, todo = [], [pid]
        while todo:
            p = todo.pop()
            kids = [c for c, pp in parent.items() if pp == p]
            found += kids
            todo += kids
        return found

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    # The resident runner and its forked child (the module): two Pythons below the worker.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pythons = [p for p in below(proc.pid) if b"sys.stdin.buffer.read" in Path(f"/proc/{p}/cmdline").read_bytes()]
        if len(pythons) >= 2:
            break
        time.sleep(0.2)
    assert len(pythons) >= 2, "the module never started"
    time.sleep(2)  # well into its wait
    everything = below(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    proc.wait(timeout=20)
    time.sleep(0.5)
    assert [p for p in everything if alive(p)] == [], "processes outlived the job"
    assert set(Path("/tmp").glob("ftl2-resident-*")) <= before, "the runner left its work dir"
