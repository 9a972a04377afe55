"""Options a script job cannot honour are never silently dropped: `play` refuses them as
ansible-playbook refuses unknown options (rc 2, usage error, nothing run), and in worker mode
AWX's job output says so; tags and --start-at-task, whose loss would run more than asked, stop the
job before anything runs."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import BIN, make_stream, make_zip, run_worker, worker_env

SCRIPT = """
async def run(inventory_path, extravars, runner):
    async with runner.automation() as ftl:
        await ftl.run_on("localhost", "command", cmd="touch {mark}")
    return 0
"""


def script(tmp_path):
    mark = Path(f"/tmp/ftl2-options-{uuid.uuid4().hex[:8]}")
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(SCRIPT.format(mark=mark))
    (tmp_path / "inv").write_text("localhost ansible_connection=local\n")
    return sdir / "main.py", mark


@pytest.mark.parametrize("option,message", [
    (["--chek"], "unrecognized arguments: --chek"),
    (["--frobnicate", "-C"], "unrecognized arguments: --frobnicate"),
    (["--list-tasks"], "--list-tasks: it does not apply to a script"),
    (["--start-at-task", "x"], "--start-at-task x: a script has no tasks to start at"),
])
def test_play_refuses_options_it_cannot_honour_and_runs_nothing(tmp_path, option, message):
    main, mark = script(tmp_path)
    p = subprocess.run([str(BIN), "play", str(main), "-i", str(tmp_path / "inv"), *option],
                       capture_output=True, text=True, env=worker_env(), timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("usage: ftl2-runner play"), p.stderr
    assert message in p.stderr, p.stderr
    assert p.stdout == ""
    assert not mark.exists()


def test_syntax_check_compiles_the_script_and_runs_nothing(tmp_path):
    main, mark = script(tmp_path)
    p = subprocess.run([str(BIN), "play", str(main), "-i", str(tmp_path / "inv"), "--syntax-check"],
                       capture_output=True, text=True, env=worker_env(), timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert f"playbook: {main}" in p.stdout and "TASK [" not in p.stdout, p.stdout
    assert not mark.exists(), "--syntax-check ran the script"
    main.write_text("async def run(a, b, c)\n    return 0\n")
    p = subprocess.run([str(BIN), "play", str(main), "--syntax-check"], capture_output=True, text=True,
                       env=worker_env(), timeout=60)
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "SyntaxError" in p.stdout and "has a syntax error" in p.stdout, p.stdout


def test_play_runs_with_the_options_it_honours(tmp_path):
    main, mark = script(tmp_path)
    p = subprocess.run([str(BIN), "play", str(main), "-i", str(tmp_path / "inv"), "-C", "-D", "-v", "-f", "2"],
                       capture_output=True, text=True, env=worker_env(), timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert not mark.exists(), "--check ran the command for real"


def worker(tmp_path, cmdline):
    main, mark = script(tmp_path)
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, b"localhost ansible_connection=local\n"),
               ("env/cmdline", 0o600, cmdline.encode())]
    res = run_worker(make_stream({"ident": "opt", "inventory": "inventory/hosts"}, make_zip(entries)),
                     tmp_path / "runner", env=worker_env(FTL2_SCRIPT=main))
    return res, mark


def test_worker_says_which_awx_options_it_does_not_honour(tmp_path):
    res, mark = worker(tmp_path, "--vault-id prod@prompt --force-handlers -v")
    out = res.stdout.decode()
    assert "[WARNING]: ftl2-runner does not honour --vault-id / --ask-vault-pass: scripts get secrets" in out
    assert "[WARNING]: ftl2-runner does not honour --force-handlers: scripts have no handlers" in out
    assert res.final_status == "successful"
    assert mark.exists()
    mark.unlink()


def test_worker_refuses_start_at_task_before_anything_runs(tmp_path):
    res, mark = worker(tmp_path, "--start-at-task x")
    out = res.stdout.decode()
    assert res.final_status == "failed"
    assert "ftl2-runner cannot honour these options, so nothing was run" in out
    assert "--start-at-task x: a script has no tasks to start at" in out
    assert not mark.exists()
    assert not any(e["event"] == "runner_on_start" for e in res.events)


# (name, tags) of calls and of the same playbook's tasks.
TAGGED = [("plain", []), ("web", ["web"]), ("db", ["db"]), ("both", ["web", "db"]), ("always", ["always"]),
          ("never", ["never"]), ("never-web", ["never", "web"])]


@pytest.mark.parametrize("cmdline", ["", "--tags web", "--skip-tags db", "--tags tagged --skip-tags web",
                                     "--tags untagged", "--skip-tags all", "--tags never,db", "-t all --skip-tags always"])
def test_tags_select_calls_as_ansible_selects_tasks(tmp_path, cmdline):
    import ansible_runner

    sdir = tmp_path / "scripts"
    sdir.mkdir()
    calls = "\n".join(f"        await ftl.run_on('localhost', 'ping', _name={n!r}, _tags={t!r})" for n, t in TAGGED)
    (sdir / "main.py").write_text("async def run(inventory_path, extravars, runner):\n"
                                  "    async with runner.automation() as ftl:\n" + calls + "\n    return 0\n")
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, b"localhost ansible_connection=local\n")]
    if cmdline:
        entries.append(("env/cmdline", 0o600, cmdline.encode()))
    res = run_worker(make_stream({"ident": "tags", "inventory": "inventory/hosts"}, make_zip(entries)),
                     tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    assert res.final_status == "successful", res.stdout[-2000:]
    ran = [e["event_data"]["task"] for e in res.events if e["event"] == "runner_on_ok"]
    skipped = [e["event_data"]["task"] for e in res.events if e["event"] == "runner_on_skipped"]
    assert sorted(ran + skipped) == sorted(n for n, _ in TAGGED)

    pdd = tmp_path / "ans"
    (pdd / "project").mkdir(parents=True)
    tasks = [{"name": n, "ping": None, **({"tags": t} if t else {})} for n, t in TAGGED]
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    from conftest import VENV_BIN

    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True,
                                     inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                                     cmdline=cmdline or None,
                                     envvars={"PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
    assert r.status == "successful", r.stdout.read()[-2000:]
    theirs = [e["event_data"]["task"] for e in r.events if e["event"] == "runner_on_ok"]
    assert ran == theirs, (cmdline, ran, theirs)


def test_adhoc_says_which_options_it_does_not_honour(tmp_path):
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, b"localhost ansible_connection=local\n"),
               ("env/cmdline", 0o600, b"-o all")]
    stream = make_stream({"ident": "adhoc", "inventory": "inventory/hosts", "module": "command",
                          "module_args": "echo hi"}, make_zip(entries))
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=""))
    out = res.stdout.decode()
    assert "[WARNING]: ftl2-runner does not honour -o: ftl2-runner prints ad hoc results in full" in out
    assert res.final_status == "successful"


def test_adhoc_background_and_poll_run_as_ansibles_async(tmp_path):
    """`-B 30 -P 1`: the module runs in the background and is polled, and the result reads as
    the real ad hoc command shows it (JSON, with the job id), not as a plain command's text."""
    import ansible_runner
    from conftest import VENV_BIN

    inv = f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inv.encode()),
               ("env/cmdline", 0o600, b"-B 30 -P 1 all")]
    # cryptography 51 warns (on stderr, a `verbose` event) when ansible-core 2.19 imports it.
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONWARNINGS": "ignore"}
    stream = make_stream({"ident": "bg", "inventory": "inventory/hosts", "module": "shell",
                          "module_args": "sleep 2; echo done", "envvars": env}, make_zip(entries))
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=""), timeout=120)
    assert res.final_status == "successful", res.stdout[-2000:]
    assert b"does not honour -B" not in res.stdout and b"does not honour -P" not in res.stdout
    (tmp_path / "ans").mkdir()
    r = ansible_runner.interface.run(private_data_dir=str(tmp_path / "ans"), host_pattern="all", module="shell",
                                     module_args="sleep 2; echo done", inventory=inv, cmdline="-B 30 -P 1",
                                     quiet=True, envvars=env)
    assert r.status == "successful"
    volatile = {"ansible_job_id", "results_file", "start", "end", "delta"}

    def final(events):
        (ok,) = [e for e in events if e["event"] == "runner_on_ok"]
        head = re.sub(r"\x1b\[[0-9;]*m", "", ok["stdout"].split(" => ")[0])  # colour is the job's choice
        return head, {k: v for k, v in ok["event_data"]["res"].items() if k not in volatile}

    assert final(res.events) == final(r.events), (final(res.events), final(r.events))
    assert final(res.events)[0] == "localhost | CHANGED"
    polls = [e for e in res.events if e["event"] == "runner_on_async_poll"]
    assert polls and {e["event"] for e in r.events} == {e["event"] for e in res.events}


def test_play_list_hosts_lists_what_inventory_and_limit_select_and_runs_nothing(tmp_path):
    from conftest import VENV_BIN

    main, mark = script(tmp_path)
    inv = tmp_path / "inv"
    inv.write_text("localhost ansible_connection=local\n[web]\nw1 ansible_host=127.0.0.1\n"
                   "w2 ansible_host=127.0.0.1\n[db]\nd1 ansible_host=127.0.0.1\n")
    play = tmp_path / "site.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
    for limit in ([], ["-l", "web"]):
        ours = subprocess.run([str(BIN), "play", str(main), "-i", str(inv), "--list-hosts", *limit],
                              capture_output=True, text=True, env=worker_env(), timeout=60)
        theirs = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(play), "--list-hosts", *limit],
                                capture_output=True, text=True, timeout=120)
        assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
        o, t = ours.stdout.splitlines(), theirs.stdout.splitlines()
        assert o[1] == f"playbook: {main}" and t[1] == f"playbook: {play}"
        # The same text but the file name; hosts in inventory order (Ansible's order is its own).
        assert o[2:6] == t[2:6], (o, t)
        assert sorted(o[6:]) == sorted(t[6:]), (o, t)
    assert not mark.exists()
