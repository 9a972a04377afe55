"""Action plugins that work with controller files or the connection itself (`script`,
`unarchive`/`assemble` of controller files, `uri` with a `src`, `reboot`): ansible-core's own
plugin code, with every touch of the host made over our connection. Each step runs with the same
arguments through a script (the worker) and through real ansible-playbook on the same host, and
the `event_data.res` AWX receives is compared after normalising only what must differ: times,
temp paths, the directory each run used, where each looked for controller files, and OpenSSH's
own chatter (Ansible's transport, not the plugin)."""

import io
import re
import shutil
import sys
import tarfile
import uuid

import pytest

from test_ansible_modules import (SETUP, VOLATILE, ansible_playbook_results, http_root,  # noqa: F401
                                  normalise, our_results, step_differences)
from testbed import Testbed

HELLO = "#!/bin/sh\necho out $1\necho err >&2\nexit ${2:-0}\n"


def archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in [("site/index.html", "<h1>hi</h1>\n"), ("site/about.txt", "about\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


FILES = [("hello.sh", HELLO), ("files/site.tar", archive()), ("frags/01", "one\n"), ("frags/02", "two\n"),
         ("files/body.txt", "a body\n")]


def steps_for(p: str, web: str):
    return [
        ("script", {"cmd": "hello.sh A"}),
        ("script", {"cmd": "hello.sh B 3"}),
        ("script", {"cmd": "hello.sh C", "creates": "/etc/passwd"}),
        ("script", {"cmd": "hello.sh D", "removes": f"{p}/none"}),
        ("ansible.builtin.script", {"cmd": "hello.sh E", "chdir": "/tmp", "executable": "/bin/bash"}),
        ("script", {"cmd": "nothere.sh"}),
        ("file", {"path": f"{p}/x", "state": "directory"}, SETUP),
        ("unarchive", {"src": "site.tar", "dest": f"{p}/x"}),
        ("unarchive", {"src": "site.tar", "dest": f"{p}/x"}),
        ("unarchive", {"src": "site.tar", "dest": f"{p}/x/missing"}),
        ("unarchive", {"src": "nothere.tar", "dest": f"{p}/x"}),
        ("assemble", {"src": "frags", "dest": f"{p}/assembled", "remote_src": False}),
        ("assemble", {"src": "frags", "dest": f"{p}/assembled", "remote_src": False}),
        ("assemble", {"src": "frags", "dest": f"{p}/assembled2", "remote_src": False, "delimiter": "# --"}),
        ("uri", {"url": f"{web}/hello.txt", "src": "body.txt", "return_content": True}),
        ("reboot", {"reboot_command": "true", "boot_time_command": "date +%s%N"}),
        # fetch: a port of its plugin (relative destinations: the script's scratch directory
        # against the playbook's directory).
        ("fetch", {"src": f"{p}/x/site/index.html", "dest": "fetched/", "flat": True}),
        ("fetch", {"src": f"{p}/x/site/index.html", "dest": "fetched/", "flat": True}),
        ("fetch", {"src": f"{p}/x/site/about.txt", "dest": "tree"}),
        ("fetch", {"src": f"{p}/x/site/index.html", "dest": "fetched", "flat": True}),
        ("fetch", {"src": f"{p}/x/site/index.html", "dest": "v/", "flat": True, "validate_checksum": False}),
        ("fetch", {"src": f"{p}/nope", "dest": "fetched/", "flat": True}),
        ("fetch", {"src": f"{p}/nope", "dest": "fetched/", "fail_on_missing": False}),
        ("fetch", {"src": f"{p}/x/site", "dest": "fetched/"}),
        ("fetch", {"src": f"{p}/x/site", "dest": "fetched/", "fail_on_missing": "no"}),
        ("fetch", {"src": f"{p}/x/site/about.txt"}),
        # A source the become user cannot read (the plugin's become answer, through slurp).
        ("copy", {"content": "secret\n", "dest": f"{p}/x/secret", "mode": "0600"}, SETUP),
        ("fetch", {"src": f"{p}/x/secret", "dest": "fetched/", "flat": True, **AS_NOBODY}),
        ("fetch", {"src": f"{p}/x/secret", "dest": "fetched/", "fail_on_missing": False, **AS_NOBODY}),
    ]


AS_NOBODY = {"_become": True, "_become_user": "nobody"}


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("testbed"), 1).start()
    yield tb
    tb.stop()


def clean(value, p: str, files_dir: str):
    """normalise(), and what differs between a playbook's and a script's run by construction."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in VOLATILE:
                continue
            if k == "exception" and isinstance(v, str) and v.startswith("Traceback"):
                v = "<traceback of the plugin>"
            out[k] = clean(v, p, files_dir)
        return out
    if isinstance(value, list):
        return [clean(v, p, files_dir) for v in value
                if not (isinstance(v, str) and v.startswith("Shared connection to "))]
    value = normalise(value, p, "\0")
    if isinstance(value, str):
        # OpenSSH's ControlMaster says so on stderr after every `ssh -tt` command.
        value = re.sub(r"Shared connection to [\d.]+ closed\.\r?\n", "", value)
        value = re.sub(r"ansible-tmp-[\d.]+-\d+-\d+", "ansible-tmp-<x>", value)
        value = value.replace(files_dir, "<files>")
        value = re.sub(r"/\S*/ftl2-scratch-\w+", "<files>", value)
        # Ansible's search stack lists the playbook's directories twice; a script has one.
        if "Searched in:" in value:
            head, _, tail = value.partition("Searched in:\n")
            paths, _, rest = tail.partition(" on the Ansible Controller.")
            seen = list(dict.fromkeys(paths.split("\n")))
            value = head + "Searched in:\n" + "\n".join(seen) + " on the Ansible Controller." + rest
    return value


def side_by_side(testbed, tmp_path, core, mode, make_steps, files, tag, clean_result=clean):
    """Run make_steps(dir) through a script (the worker) and through ansible-playbook on node0
    (mode: run, check_diff, become, or local: the local connection); each non-setup step's
    difference after clean_result(res, dir, files dir)."""
    cmdline = "--check --diff" if mode == "check_diff" else None
    become = mode == "become"
    inventory = testbed.ini_inventory()
    if mode == "local":
        inventory = f"node0 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    run_id = uuid.uuid4().hex[:6]
    ours_dir, ans_dir = f"/tmp/ftl2-{tag}-o{run_id}", f"/tmp/ftl2-{tag}-a{run_id}"
    try:
        ours, res = our_results(tmp_path / "ours", inventory, make_steps(ours_dir), cmdline, core, become,
                                files=files)
        theirs = ansible_playbook_results(inventory, make_steps(ans_dir), cmdline, tmp_path, core=core,
                                          become=become, files=files, pipelining=(core, mode) != ("newest", "run"))
    finally:
        for d in (ours_dir, ans_dir):
            shutil.rmtree(d, ignore_errors=True)
    steps = make_steps("<dir>")
    assert len(ours) == len(steps), (len(ours), res.stdout[-4000:])
    assert len(theirs) == len(steps)
    return step_differences(steps, ours, theirs,
                            lambda r: clean_result(r, ours_dir, str(tmp_path / "ours" / "scripts")),
                            lambda r: clean_result(r, ans_dir, str(tmp_path / "ans-pdd" / "project")))


@pytest.mark.parametrize("core,mode", [("newest", "run"), ("newest", "check_diff"), ("2.15", "run"),
                                       ("2.19", "become"), ("newest", "local")])
def test_action_plugins_match_ansible_playbook(testbed, http_root, tmp_path, core, mode):  # noqa: F811
    diffs = side_by_side(testbed, tmp_path, core, mode, lambda p: steps_for(p, http_root), FILES, "act")
    assert not diffs, "\n".join(diffs)
    # Only staged copies of the script's own files were ever handed to the plugin: none is left.
    assert not list(tmp_path.glob("**/ftl2-stage-*"))
