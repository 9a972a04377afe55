"""What AWX shows: the event tree, job output text, host summaries and statuses, checked with
AWX's rules (awx_checker) and against real ansible-playbook output for equivalent tasks."""

import json
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import awx_checker
from conftest import make_stream, make_zip, process, run_worker, worker_env
from testbed import free_port

VENV_BIN = Path(sys.executable).parent
# Not in name order: the recap lists hosts sorted, as ansible-playbook does.
LOCAL3 = "[all:vars]\nansible_connection=local\nansible_python_interpreter=/usr/bin/python3\n[web]\nh3\nh1\nh2\n"


def job(tmp_path, script, inventory=LOCAL3, cmdline=None, envvars=None, kwargs=None):
    sdir = tmp_path / "scripts"
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "main.py").write_text(textwrap.dedent(script))
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inventory.encode())]
    if cmdline:
        entries.append(("env/cmdline", 0o600, cmdline.encode()))
    kw = {"ident": "4242", "inventory": "inventory/hosts", "playbook": "golden.yml",
          "envvars": dict({"JOB_ID": "4242"}, **(envvars or {}))}
    kw.update(kwargs or {})
    return run_worker(make_stream(kw, make_zip(entries)), tmp_path / "runner",
                      env=worker_env(FTL2_SCRIPT=sdir / "main.py"), timeout=120)


def test_concurrent_mixed_job_satisfies_awx(tmp_path):
    inv = LOCAL3 + f"[bad]\ndead ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={free_port()} ansible_user=root\n"
    res = job(tmp_path, """
        import asyncio
        async def run(inventory_path, extravars, runner):
            async with runner.automation(name="all", fail_fast=False) as ftl:
                await asyncio.gather(
                    ftl.web.ping(_name="ping them"),
                    ftl.web.command(cmd="sleep 0.3", _name="slow change"),
                    ftl.run_on("h2", "command", cmd="false", _name="h2 fails"),
                    ftl.run_on("dead", "ping", _name="unreachable one"),
                    ftl.web.command(cmd="true", creates="/etc/hostname", _name="skip-ish"),
                )
                print("between tasks")
                await ftl.web.ping(_name="after")
            return 0
    """, inventory=inv)
    awx_checker.check(res.events, job_id="4242")
    stats = res.events[-1]["event_data"]
    assert stats["failures"] == {"h2": 1} and stats["dark"] == {"dead": 1}
    assert stats["changed"] == {"h1": 1, "h2": 1, "h3": 1}
    assert res.final_status == "failed" and res.rc == 2
    r, _, events = process(res.stdout, tmp_path / "api", ident="4242")
    assert r.status == "failed" and len(events) == len(res.events)


def test_adhoc_command_output_and_tree(tmp_path):
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, LOCAL3.encode()),
               ("env/cmdline", 0o600, b"-u root --forks=5 web")]
    stream = make_stream({"ident": "77", "inventory": "inventory/hosts", "module": "shell",
                          "module_args": "echo hi from $0"}, make_zip(entries))
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=""))
    awx_checker.check(res.events, adhoc=True)
    texts = sorted(e["stdout"] for e in res.events if e["event"] == "runner_on_ok")
    assert texts == [f"{h} | CHANGED | rc=0 >>\r\nhi from /bin/sh" for h in ("h1", "h2", "h3")]
    assert res.statuses[0]["command"][-1] == "web"
    assert res.final_status == "successful" and res.rc == 0
    # A failing ad hoc module: rc 2, FAILED! with the indented result.
    stream = make_stream({"ident": "78", "inventory": "inventory/hosts", "module": "file",
                          "module_args": "path=/nonexistent/x state=file"}, make_zip(entries))
    res = run_worker(stream, tmp_path / "r2", env=worker_env(FTL2_SCRIPT=""))
    awx_checker.check(res.events, adhoc=True)
    failed = [e["stdout"] for e in res.events if e["event"] == "runner_on_failed"]
    assert len(failed) == 3 and failed[0].split(" | ")[1].startswith("FAILED! => {\r\n    \"changed\": false,")
    assert res.rc == 2


def test_check_mode_job(tmp_path):
    marker = tmp_path / "must-not-exist"
    res = job(tmp_path, f"""
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.web.file(path="{marker}", state="touch")
                await ftl.web.command(cmd="touch {marker}")
            return 0
    """, cmdline="--check --diff")
    awx_checker.check(res.events, job_id="4242")
    assert not marker.exists()
    assert [e["event"] for e in res.events].count("runner_on_skipped") == 3
    assert res.final_status == "successful"


def test_script_that_raises(tmp_path):
    res = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.web.ping()
                raise RuntimeError("the script broke")
    """)
    awx_checker.check(res.events, job_id="4242")
    text = "\n".join(e["stdout"] for e in res.events)
    assert "RuntimeError: the script broke" in text and "Traceback" in text
    assert res.final_status == "failed" and res.rc == 1


def test_no_log_and_huge_results(tmp_path):
    res = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.run_on("h1", "shell", cmd="head -c 2000000 /dev/zero | tr '\\\\0' x")
            return 0
    """)
    awx_checker.check(res.events, job_id="4242")
    ok = next(e for e in res.events if e["event"] == "runner_on_ok")
    assert len(json.dumps(ok["event_data"]["res"])) < 800_000


# --- golden comparison with ansible-playbook ----------------------------------------------------

GOLDEN_PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - name: ping it
      ansible.builtin.ping:
    - name: echo it
      ansible.builtin.command: echo hello
    - name: fails but ignored
      ansible.builtin.command: /bin/false
      ignore_errors: true
    - name: will fail
      ansible.builtin.command: /bin/false
"""

GOLDEN_SCRIPT = """
async def run(inventory_path, extravars, runner):
    async with runner.automation(name="all", fail_fast=False) as ftl:
        await ftl.run_on("all", "ansible.builtin.ping", _name="ping it")
        await ftl.run_on("all", "ansible.builtin.command", cmd="echo hello", _name="echo it")
        await ftl.run_on("all", "ansible.builtin.command", cmd="/bin/false", _name="fails but ignored", _ignore_errors=True)
        await ftl.run_on("all", "ansible.builtin.command", cmd="/bin/false", _name="will fail")
    return 0
"""


def ansible_playbook_events(tmp_path, envvars, cmdline=None):
    import ansible_runner

    pdd = tmp_path / "real"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project" / "golden.yml").write_text(GOLDEN_PLAYBOOK)
    (pdd / "inventory" / "hosts").write_text(LOCAL3)
    env = dict(envvars, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_DEPRECATION_WARNINGS="False")
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="golden.yml", quiet=True,
                                     envvars=env, cmdline=cmdline, ident="real")
    return r, list(r.events)


def normalise(events):
    """Text per section: banners, then per-task sets of host lines (hosts finish in any order)."""
    out = []
    for e in events:
        if e["event"] in ("playbook_on_play_start", "playbook_on_task_start", "playbook_on_stats"):
            out.append(e["stdout"])
        elif e["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
            text = e["stdout"].split("\r\n")[-1]  # ansible-core 2.19+ prefixes fatal lines with [ERROR] details
            # Timings differ from run to run: compare the keys of dumped results, not their values.
            m = re.match(r"^(.*? => )(\{.*\})(\x1b\[0m)?$", text)
            if m:
                keys = sorted(json.loads(m.group(2)))
                text = m.group(1) + ",".join(keys) + (m.group(3) or "")
            if out and isinstance(out[-1], set):
                out[-1].add(text)
            else:
                out.append({text})
    return out


@pytest.mark.parametrize("color,cmdline", [(False, None), (True, None), (False, "-v")])
def test_golden_output_matches_ansible_playbook(tmp_path, color, cmdline):
    envvars = {"ANSIBLE_FORCE_COLOR": "True"} if color else {"ANSIBLE_NOCOLOR": "True"}
    real, real_events = ansible_playbook_events(tmp_path, envvars, cmdline)
    ours = job(tmp_path, GOLDEN_SCRIPT, envvars=envvars, cmdline=cmdline)
    assert normalise(ours.events) == normalise(real_events)
    assert (ours.final_status, ours.rc) == (real.status, real.rc) == ("failed", 2)
    ours_stats = ours.events[-1]["event_data"]
    real_stats = next(e for e in real_events if e["event"] == "playbook_on_stats")["event_data"]
    for key in ("changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped"):
        assert ours_stats[key] == real_stats[key], key
    awx_checker.check(real_events)  # the checker accepts the real thing too


def test_diff_output_matches_ansible_playbook(tmp_path):
    import uuid
    base = f"/tmp/ftl2-diff-{uuid.uuid4().hex[:8]}"
    playbook = textwrap.dedent(f"""\
        - hosts: h1
          gather_facts: false
          tasks:
            - name: new file
              ansible.builtin.copy: {{content: "one\\ntwo\\n", dest: "{base}-PFX/f"}}
            - name: edit it
              ansible.builtin.lineinfile: {{path: "{base}-PFX/f", line: three}}
            - name: a directory
              ansible.builtin.file: {{path: "{base}-PFX/d", state: directory}}
        """)
    import ansible_runner
    for side in ("ans", "ours"):
        Path(f"{base}-{side}").mkdir()
    pdd = tmp_path / "real"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project" / "golden.yml").write_text(playbook.replace("PFX", "ans"))
    (pdd / "inventory" / "hosts").write_text(LOCAL3)
    real = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="golden.yml", quiet=True, cmdline="--diff",
                                        envvars={"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "True"})
    ours = job(tmp_path, f"""
        async def run(inventory_path, extravars, runner):
            async with runner.automation(name="h1") as ftl:
                await ftl.h1.copy(content="one\\ntwo\\n", dest="{base}-ours/f", _name="new file")
                await ftl.h1.lineinfile(path="{base}-ours/f", line="three", _name="edit it")
                await ftl.h1.file(path="{base}-ours/d", state="directory", _name="a directory")
            return 0
    """, cmdline="--diff")
    awx_checker.check(ours.events, job_id="4242")
    diffs = lambda evs: [e["stdout"].replace("-ans", "-X").replace("-ours", "-X") for e in evs if e["event"] == "runner_on_file_diff"]
    assert diffs(ours.events) == diffs(real.events)
    assert len(diffs(ours.events)) == 3


def test_awx_fixture_job_with_a_script(tmp_path):
    """The AWX-shaped fixture (JOB_ID, ANSIBLE_FORCE_COLOR, `-u root --forks=5 -v`, AWX's
    inventory script) run with a script: what AWX would show for it."""
    from conftest import FIXTURES
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(textwrap.dedent("""
        async def run(inventory_path, extravars, runner):
            async with runner.automation(name="all") as ftl:
                await ftl.run_on("all", "ping", _name="ping it")
                await ftl.run_on("all", "command", cmd="echo " + extravars["greeting"], _name="echo it")
            return 0
    """))
    stream = (FIXTURES / "transmit-awxlike.stream").read_bytes()
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    awx_checker.check(res.events, job_id="4242")
    assert all(e.get("job_id") == 4242 for e in res.events if e["event"] != "verbose")
    text = {e["event"]: e["stdout"] for e in res.events}
    assert text["runner_on_ok"].startswith("\x1b[0;33mchanged: [localhost] => {")  # colour and -v
    assert '"stdout": "awx-extravars"' in text["runner_on_ok"]
    assert text["playbook_on_stats"].endswith(
        "\x1b[0;33mlocalhost\x1b[0m                  : \x1b[0;32mok=2   \x1b[0m \x1b[0;33mchanged=1   \x1b[0m unreachable=0    failed=0    skipped=0    rescued=0    ignored=0   ")
    r, statuses, _ = process(res.stdout, tmp_path / "api", ident=4242)
    assert r.status == "successful" and [s["status"] for s in statuses] == ["starting", "running", "successful"]
