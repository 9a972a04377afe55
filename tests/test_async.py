"""Ansible's async: `_async`/`_poll` call options start a module in the background through
ansible-core's own async_wrapper and poll it with async_status, as ansible-playbook does with
`async:`/`poll:`; `async_status` itself is callable. Compared side by side with ansible-playbook
on the same sshd host: the events AWX gets (ASYNC POLL / ASYNC OK / ASYNC FAILED lines, then the
host's result) and each result after normalising job ids, paths and times."""

import re
import textwrap

import pytest
import yaml

from conftest import make_stream, make_zip, run_worker, worker_env
from test_ansible_modules import env_for, normalise
from testbed import Testbed

EVENTS = ("runner_on_async_poll", "runner_on_async_ok", "runner_on_async_failed", "runner_on_ok",
          "runner_on_failed")

# (name, module, args, async, poll): the same tasks in a script and in a playbook.
TASKS = [
    ("polled", "shell", {"cmd": "sleep 3; echo done"}, 20, 1),
    # async_wrapper itself stops it after 1 s; the first status (3 s) finds it timed out.
    ("too slow", "command", {"cmd": "sleep 20"}, 1, 3),
    ("background", "shell", {"cmd": "sleep 1; echo bg"}, 30, 0),
]

SCRIPT = """
import asyncio, json
TASKS = json.loads({tasks!r})

async def run(inventory_path, extravars, runner):
    async with runner.automation(fail_fast=False) as ftl:
        jid = None
        for name, module, args, limit, poll in TASKS:
            r = await ftl.run_on("node0", module, _name=name, _async=limit, _poll=poll, **args)
            jid = r[0].output.get("ansible_job_id")
        await asyncio.sleep(3)
        await ftl.run_on("node0", "async_status", _name="status", jid=jid)
    return 0
"""


def playbook():
    tasks = [{"name": n, m: a, "async": limit, "poll": poll, "ignore_errors": True, "register": "job"}
             for n, m, a, limit, poll in TASKS]
    tasks += [{"name": "wait", "pause": {"seconds": 3}},
              {"name": "status", "async_status": {"jid": "{{ job.ansible_job_id }}"}}]
    return [{"hosts": "all", "gather_facts": False, "tasks": tasks}]


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("tb"), 1).start()
    yield tb
    tb.stop()


def clean(res):
    """Normalise what differs between any two runs: job ids, their files, times, temp paths."""
    res = {k: v for k, v in res.items() if k != "child_pid"}  # the killed job's process
    text = yaml.safe_dump(normalise(res, "\0", "\0"))
    text = re.sub(r"j\d+\.\d+", "<jid>", text)
    return yaml.safe_load(text)


def by_task(events):
    """Events per task; polls (which run as the pseudo-task `async_status`) go with the task
    whose `runner_on_start` came last."""
    out, current = {}, None
    for e in events:
        if e["event"] == "runner_on_start":
            current = e["event_data"]["task"]
        if e["event"] in EVENTS:
            task = current if e["event"] == "runner_on_async_poll" else e["event_data"]["task"]
            out.setdefault(task, []).append(e)
    return out


def test_async_tasks_match_ansible_playbook(testbed, tmp_path):
    import json

    import ansible_runner

    inv = testbed.ini_inventory()
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(SCRIPT.format(tasks=json.dumps(TASKS)))
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inv.encode())]
    # ansible-runner colours its output (as AWX shows it); the job asks us to do the same.
    stream = make_stream({"ident": "async", "inventory": "inventory/hosts",
                          "envvars": {**env_for("newest"), "ANSIBLE_FORCE_COLOR": "True"}},
                         make_zip(entries))
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"), timeout=180)
    ours = by_task(res.events)

    pdd = tmp_path / "ans"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump(playbook()))
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True,
                                     inventory=inv, envvars=env_for("newest"))
    theirs = by_task(r.events)

    for name in ("polled", "too slow", "background", "status"):
        o, t = ours.get(name, []), theirs.get(name, [])
        assert o and t, (name, res.stdout[-3000:])
        # Polls depend on timing; what follows them must not.
        kinds = lambda evs: [e["event"] for e in evs if e["event"] != "runner_on_async_poll"]
        assert kinds(o) == kinds(t), (name, kinds(o), kinds(t))
        assert any(e["event"] == "runner_on_async_poll" for e in o) == \
            any(e["event"] == "runner_on_async_poll" for e in t), name
        # The first poll of each, then everything after the polls.
        first = lambda evs: [e for e in evs if e["event"] == "runner_on_async_poll"][:1] + \
            [e for e in evs if e["event"] != "runner_on_async_poll"]
        for oe, te in zip(first(o), first(t)):
            assert clean(oe["event_data"]["res"]) == clean(te["event_data"]["res"]), (name, oe["event"])
            keys = ("task", "task_action", "resolved_action", "task_args")
            assert [oe["event_data"][k] for k in keys] == [te["event_data"][k] for k in keys], (name, oe["event"])
            if oe["event"].startswith("runner_on_async"):
                jid = lambda e: re.sub(r"j\d+\.\d+", "<jid>", e["stdout"])
                assert jid(oe) == jid(te), (oe["stdout"], te["stdout"])
    polls = [e for e in ours["polled"] if e["event"] == "runner_on_async_poll"]
    assert re.fullmatch(r"\x1b\[1;30mASYNC POLL on node0: jid=j\d+\.\d+ started=True finished=False\x1b\[0m",
                        polls[0]["stdout"]), polls[0]["stdout"]
    assert polls[0]["parent_uuid"] == polls[0]["event_data"]["task_uuid"] != ours["polled"][-1]["parent_uuid"]
    assert ours["status"][-1]["event_data"]["res"]["stdout"] == "bg"


@pytest.mark.parametrize("options,message", [
    ("_async=-1", "_async must be a whole number of seconds"),
    ("_async='10'", "_async must be a whole number of seconds"),
    ("_poll=5", "_poll applies to a call with _async"),
])
def test_bad_async_options_are_refused_before_anything_runs(testbed, tmp_path, options, message):
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(textwrap.dedent(f"""
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.run_on("node0", "command", cmd="touch /tmp/ftl2-async-never", {options})
            return 0
    """))
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, testbed.ini_inventory().encode())]
    stream = make_stream({"ident": "bad", "inventory": "inventory/hosts", "envvars": env_for("newest")},
                         make_zip(entries))
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"), timeout=120)
    assert res.final_status == "failed"
    assert message in res.stdout.decode(), res.stdout[-2000:]
    assert not any(e["event"] == "runner_on_start" for e in res.events)
