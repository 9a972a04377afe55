"""copy with what only Ansible's copy action and module handle (validate, directory_mode, ...):
our port of the action plugin against real ansible-playbook on the same sshd host, with the same
arguments: each result AWX gets, after normalising temp paths and which directory each run used;
in run mode and in check+diff mode, on the newest ansible-core and the 2.15 line."""

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import make_stream, make_zip, run_worker, worker_env
from test_ansible_modules import env_for, normalise
from testbed import Testbed

RESULTS = ("runner_on_ok", "runner_on_failed")


def tasks(d: str, src: str):
    return [
        ("copy", {"content": "hello\n", "dest": f"{d}/a.conf", "validate": "grep -q hello %s", "mode": "0640"}),
        ("copy", {"content": "hello\n", "dest": f"{d}/a.conf", "validate": "grep -q hello %s", "mode": "0640"}),
        ("copy", {"content": "bye\n", "dest": f"{d}/a.conf", "validate": "grep -q hello %s"}),
        ("copy", {"src": src, "dest": f"{d}/sub/", "directory_mode": "0750", "validate": "test -s %s"}),
        ("copy", {"content": "x\n", "dest": f"{d}/a.conf", "force": False, "validate": "true %s"}),
    ]


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("tb"), 1).start()
    yield tb
    tb.stop()


def clean(res, d, src):
    text = json.dumps(normalise(res, d, "\0"))
    text = text.replace(src, "<src>")
    text = re.sub(r"/[^\"]*/\.ansible/tmp/ansible-tmp-[^\"/]+/\.?source(\.\w+)?", "<tmp-src>", text)
    text = re.sub(r"/[^\"]*/\.ansible/tmp/ansible-local-\w+/(\.|tmp)\w+", "<content-file>", text)
    text = re.sub(r"\"_original_basename\": \"(\.|tmp)\w{8}\"", "\"_original_basename\": \"<content-file>\"", text)
    return json.loads(text)


@pytest.mark.parametrize("core,cmdline", [("newest", None), ("newest", "--check --diff"), ("2.15", None)])
def test_copy_action_matches_ansible_playbook(testbed, tmp_path, core, cmdline):
    import ansible_runner

    ours_dir, theirs_dir = f"/tmp/ftl2-copy-o{uuid.uuid4().hex[:6]}", f"/tmp/ftl2-copy-a{uuid.uuid4().hex[:6]}"
    for d in (ours_dir, theirs_dir):
        Path(d).mkdir()
    inv = testbed.ini_inventory()
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "motd.txt").write_text("message of the day\n")
    our_src = str(sdir / "motd.txt")
    their_src = str(tmp_path / "motd.txt")
    shutil.copy(our_src, their_src)
    try:
        calls = [(m, a) for m, a in tasks(ours_dir, our_src)]
        (sdir / "main.py").write_text(
            "import json\n"
            f"CALLS = json.loads({json.dumps(json.dumps(calls))})\n"
            "async def run(inventory_path, extravars, runner):\n"
            "    async with runner.automation(fail_fast=False) as ftl:\n"
            "        for module, args in CALLS:\n"
            "            await ftl.run_on('node0', module, **args)\n"
            "    return 0\n")
        entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inv.encode())]
        if cmdline:
            entries.append(("env/cmdline", 0o600, cmdline.encode()))
        stream = make_stream({"ident": "copy", "inventory": "inventory/hosts", "envvars": env_for(core)},
                             make_zip(entries))
        res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"), timeout=180)
        ours = [(e["event"], e["event_data"]["res"]) for e in res.events if e["event"] in RESULTS]

        pdd = tmp_path / "ans"
        (pdd / "project").mkdir(parents=True)
        play = [{"hosts": "all", "gather_facts": False,
                 "tasks": [{m: a, "ignore_errors": True} for m, a in tasks(theirs_dir, their_src)]}]
        (pdd / "project" / "site.yml").write_text(yaml.safe_dump(play))
        r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True, inventory=inv,
                                         envvars=env_for(core), cmdline=cmdline)
        theirs = [(e["event"], e["event_data"]["res"]) for e in r.events if e["event"] in RESULTS]
        assert len(ours) == len(theirs) == 5, res.stdout[-3000:]
        for i, ((oe, o), (te, t)) in enumerate(zip(ours, theirs)):
            o, t = clean(o, ours_dir, our_src), clean(t, theirs_dir, their_src)
            assert (oe, o) == (te, t), f"step {i}: ours {oe} {json.dumps(o)[:1500]}\ntheirs {te} {json.dumps(t)[:1500]}"
        if not cmdline:
            assert Path(f"{ours_dir}/a.conf").read_text() == "hello\n"
            assert oct(Path(f"{ours_dir}/sub").stat().st_mode & 0o777) == "0o750"
    finally:
        for d in (ours_dir, theirs_dir):
            shutil.rmtree(d, ignore_errors=True)
