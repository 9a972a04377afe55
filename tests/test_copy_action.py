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


def clean(res, d, files):
    if isinstance(res.get("exception"), str) and res["exception"].startswith("Traceback"):
        # 2.15 shows the plugin's traceback: ours passes through the helper's frames.
        res = {**res, "exception": "<traceback of the plugin>"}
    text = json.dumps(normalise(res, d, "\0"))
    text = text.replace(files, "<files>")
    # Where the plugin found a directory: our staged copy of it against the project's.
    text = re.sub(r"/[^\"]*/ftl2-stage-\w+/\d+", "<files>", text)
    # The rendered template's local temp file: <local tmp>/tmpXXXXXXXX/t.j2.
    text = re.sub(r"/[^\"]*/\.ansible/tmp/ansible-local-\w+/tmp\w+/", "<local-tmp>/", text)
    text = re.sub(r"/[^\"]*/\.ansible/tmp/ansible-tmp-[^\"/]+/\.?source(\.\w+)?", "<tmp-src>", text)
    text = re.sub(r"/[^\"]*/\.ansible/tmp/ansible-local-\w+/(\.|tmp)\w+", "<content-file>", text)
    text = re.sub(r"\"_original_basename\": \"(\.|tmp)\w{8}\"", "\"_original_basename\": \"<content-file>\"", text)
    return json.loads(text)


def side_by_side(testbed, tmp_path, core, cmdline, make_tasks):
    """Run make_tasks(dir, files dir) through a script and through ansible-playbook; the files
    (motd.txt, t.j2) are the same in both; return both lists of (event, res) and the two dirs."""
    import ansible_runner

    ours_dir, theirs_dir = f"/tmp/ftl2-copy-o{uuid.uuid4().hex[:6]}", f"/tmp/ftl2-copy-a{uuid.uuid4().hex[:6]}"
    for d in (ours_dir, theirs_dir):
        Path(d).mkdir()
    inv = testbed.ini_inventory()
    sdir, adir = tmp_path / "scripts", tmp_path / "files"
    for d in (sdir, adir):
        d.mkdir()
        (d / "motd.txt").write_text("message of the day\n")
        (d / "t.j2").write_text("name={{ inventory_hostname }}\n{% for i in [1, 2] %}\nitem {{ i }}\n{% endfor %}\n")
        (d / "tree" / "sub").mkdir(parents=True)
        (d / "tree" / "a.txt").write_text("a\n")
        (d / "tree" / "sub" / "b.txt").write_text("b\n")
        (d / "tree" / "empty").mkdir()
        (d / "tree" / "link").symlink_to("a.txt")
    try:
        calls = make_tasks(ours_dir, sdir)
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
                 "tasks": [{m: a, "ignore_errors": True} for m, a in make_tasks(theirs_dir, adir)]}]
        (pdd / "project" / "site.yml").write_text(yaml.safe_dump(play))
        r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True, inventory=inv,
                                         envvars=env_for(core), cmdline=cmdline)
        theirs = [(e["event"], e["event_data"]["res"]) for e in r.events if e["event"] in RESULTS]
        assert len(ours) == len(theirs) == len(calls), res.stdout[-3000:]
        for i, ((oe, o), (te, t)) in enumerate(zip(ours, theirs)):
            o, t = clean(o, ours_dir, str(sdir)), clean(t, theirs_dir, str(adir))
            assert (oe, o) == (te, t), f"step {i}: ours {oe} {json.dumps(o)[:1500]}\ntheirs {te} {json.dumps(t)[:1500]}"
        return ours_dir
    finally:
        for d in (ours_dir, theirs_dir):
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("core,cmdline", [("newest", None), ("newest", "--check --diff"), ("2.15", None)])
def test_copy_action_matches_ansible_playbook(testbed, tmp_path, core, cmdline):
    side_by_side(testbed, tmp_path, core, cmdline, lambda d, files: tasks(d, str(files / "motd.txt")))


def tree_tasks(d: str, files: Path):
    """A directory tree (a link in it, an empty directory) with what only the copy action does."""
    tree = str(files / "tree")
    return [
        ("copy", {"src": tree + "/", "dest": f"{d}/t1/", "directory_mode": "0750", "mode": "0640"}),
        ("copy", {"src": tree + "/", "dest": f"{d}/t1/", "directory_mode": "0750", "mode": "0640"}),
        ("copy", {"src": tree, "dest": f"{d}/t2", "directory_mode": "0700", "local_follow": False}),
        ("copy", {"src": tree + "/", "dest": f"{d}/t3/", "directory_mode": "0755", "force": False}),
        ("copy", {"src": str(files / "nothere") + "/", "dest": f"{d}/t4/", "directory_mode": "0755"}),
    ]


@pytest.mark.parametrize("core,cmdline", [("newest", None), ("newest", "--check --diff"), ("2.15", None)])
def test_copy_of_a_directory_matches_ansible_playbook(testbed, tmp_path, core, cmdline):
    side_by_side(testbed, tmp_path, core, cmdline, tree_tasks)


def template_tasks(d: str, files: Path):
    t = str(files / "t.j2")
    return [
        ("template", {"src": t, "dest": f"{d}/t.conf", "validate": "grep -q name= %s", "mode": "0600"}),
        ("template", {"src": t, "dest": f"{d}/t.conf", "validate": "grep -q name= %s", "mode": "0600"}),
        ("template", {"src": t, "dest": f"{d}/bad.conf", "validate": "grep -q nothere %s"}),
        ("template", {"src": t, "dest": f"{d}/sub/", "validate": "test -s %s", "follow": True}),
    ]


@pytest.mark.parametrize("core,cmdline", [("newest", None), ("newest", "--check --diff"), ("2.15", None)])
def test_template_action_matches_ansible_playbook(testbed, tmp_path, core, cmdline):
    side_by_side(testbed, tmp_path, core, cmdline, template_tasks)


def test_template_rendering_options_we_do_not_have_are_refused(testbed, tmp_path):
    from test_engine import engine_calls

    d = Path(f"/tmp/ftl2-tpl-{uuid.uuid4().hex[:6]}")
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "t.j2").write_text("x\n")
    calls = [("node0", "template", {"src": str(sdir / "t.j2"), "dest": str(d), "newline_sequence": "\r\n"})]
    results, _ = engine_calls(tmp_path, testbed.ini_inventory(), calls, kwargs={"envvars": env_for("newest")})
    out = results[0][0]
    assert out["status"] == "failed", out
    assert "does not support newline_sequence" in out["output"]["msg"], out
    assert not d.exists()
