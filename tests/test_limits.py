"""Process limits: a job over more hosts than the soft descriptor limit allows at once still
reaches every host (the worker raises its soft RLIMIT_NOFILE to the hard limit at start, as
containers often start at a soft 1,024 under a far higher hard limit)."""

import os
import re
import resource
import subprocess

from conftest import BIN, VENV_BIN, WorkerResult, make_stream, make_zip, worker_env
from testbed import Testbed

HOSTS = 52
SOFT = 48  # below what HOSTS connections need


def ping_job(tmp_path, tb, soft, hard, calls, *worker_args, **env):
    """A worker, under descriptor limits (soft, hard), whose script runs `calls` on every host."""
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    body = "".join(f"        await ftl.run_on('all', {m!r}{a})\n" for m, a in calls)
    (sdir / "main.py").write_text(
        "async def run(inventory_path, extravars, runner):\n"
        "    async with runner.automation(fail_fast=False) as ftl:\n" + body + "    return 0\n")
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, tb.ini_inventory().encode())]
    # The EE's ansible-core on the job's PATH, for the modules that are not native.
    envvars = {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    stream = make_stream({"ident": "limits", "inventory": "inventory/hosts", "envvars": envvars},
                         make_zip(entries))
    proc = subprocess.run([str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}", *worker_args], input=stream,
                          capture_output=True, env=worker_env(FTL2_SCRIPT=sdir / "main.py", **env), timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    assert proc.stderr == b""
    return WorkerResult(proc.returncode, proc.stdout, proc.stderr)


def test_a_low_soft_descriptor_limit_does_not_make_hosts_unreachable(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard > 4 * HOSTS, f"the hard limit here ({hard}) is too low to test"
    tb = Testbed(tmp_path / "tb", HOSTS).start()
    try:
        res = ping_job(tmp_path, tb, SOFT, hard, [("ping", ""), ("command", ", cmd='true'")])
        unreachable = [e["event_data"]["res"].get("msg") for e in res.events if e["event"] == "runner_on_unreachable"]
        assert not unreachable, unreachable[:3]
        assert sum(e["event"] == "runner_on_ok" for e in res.events) == 2 * HOSTS
        assert res.final_status == "successful"
    finally:
        tb.stop()


def test_more_hosts_than_descriptors_all_succeed_within_the_connection_budget(tmp_path):
    """With a hard limit too low for every host's connection at once, connections idle the
    longest are closed for the hosts that need one (and reopened when needed again): every host
    succeeds, none is reported unreachable, and no call fails for the controller's limit."""
    tb = Testbed(tmp_path / "tb", HOSTS).start()
    log = tmp_path / "worker.log"
    try:
        getent = ("getent", ", database='passwd', key='root'")  # a real module: resident runners
        calls = [("ping", ""), getent, ("command", ", cmd='true'"), getent]
        res = ping_job(tmp_path, tb, SOFT, SOFT, calls, "--debug", FTL2_LOG_FILE=str(log))
        bad = [e["event_data"]["res"].get("msg") for e in res.events
               if e["event"] in ("runner_on_unreachable", "runner_on_failed")]
        assert not bad, bad[:3]
        assert sum(e["event"] == "runner_on_ok" for e in res.events) == len(calls) * HOSTS
        assert res.final_status == "successful"
        text = log.read_text()
        budget = int(re.search(rf"connection budget: (\d+) \(descriptor limit {SOFT}\)", text)[1])
        assert budget < HOSTS, budget
        # Each of the three calls needs every host: connections were closed and reopened, each
        # opened beyond the budget after one closed, never more open than the budget.
        closed = text.count("closing the idle connection to ")
        connects = len(re.findall(r"ssh \S+ connected in", text))
        assert connects == budget + closed and HOSTS < connects <= len(calls) * HOSTS, (budget, closed, connects)
    finally:
        tb.stop()


def test_connections_stay_open_for_the_whole_job_when_the_budget_allows(tmp_path):
    """Within the budget, one handshake per host for the whole job."""
    tb = Testbed(tmp_path / "tb", 6).start()
    log = tmp_path / "worker.log"
    try:
        res = ping_job(tmp_path, tb, 1024, 1024, [("ping", ""), ("command", ", cmd='true'"), ("ping", "")],
                       "--debug", FTL2_LOG_FILE=str(log))
        assert res.final_status == "successful"
        text = log.read_text()
        assert len(re.findall(r"ssh \S+ connected in", text)) == 6, text[-2000:]
        assert "closing the idle connection" not in text
    finally:
        tb.stop()
