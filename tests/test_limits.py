"""Process limits: a job over more hosts than the soft descriptor limit allows at once still
reaches every host (the worker raises its soft RLIMIT_NOFILE to the hard limit at start, as
containers often start at a soft 1,024 under a far higher hard limit)."""

import resource
import subprocess

from conftest import BIN, WorkerResult, make_stream, make_zip, worker_env
from testbed import Testbed

HOSTS = 80
SOFT = 64  # below what HOSTS connections need


def ping_job(tmp_path, tb, soft, hard, calls):
    """A worker, under descriptor limits (soft, hard), whose script runs `calls` on every host."""
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    body = "".join(f"        await ftl.run_on('all', {m!r}{a})\n" for m, a in calls)
    (sdir / "main.py").write_text(
        "async def run(inventory_path, extravars, runner):\n"
        "    async with runner.automation(fail_fast=False) as ftl:\n" + body + "    return 0\n")
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, tb.ini_inventory().encode())]
    stream = make_stream({"ident": "limits", "inventory": "inventory/hosts",
                          "envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False"}}, make_zip(entries))
    proc = subprocess.run([str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}"], input=stream,
                          capture_output=True, env=worker_env(FTL2_SCRIPT=sdir / "main.py"), timeout=300,
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


def test_running_out_of_descriptors_is_never_blamed_on_the_hosts(tmp_path):
    """With a hard limit too low for every host at once (connections are kept for the job), the
    hosts beyond it fail with a controller-side explanation, never as unreachable."""
    tb = Testbed(tmp_path / "tb", HOSTS).start()
    try:
        res = ping_job(tmp_path, tb, SOFT, SOFT, [("ping", "")])
        assert not any(e["event"] == "runner_on_unreachable" for e in res.events)
        failed = [e["event_data"]["res"]["msg"] for e in res.events if e["event"] == "runner_on_failed"]
        ok = sum(e["event"] == "runner_on_ok" for e in res.events)
        assert failed and ok and len(failed) + ok == HOSTS, (len(failed), ok)
        assert "the controller ran out of file descriptors" in failed[0] and f"the limit is {SOFT}" in failed[0]
        assert res.final_status == "failed"
    finally:
        tb.stop()
