"""`synchronize` (ansible.posix): its action plugin ported, the real module run on the
controller, rsync reaching the host through our own connection (`rsync_ssh`). Each step runs with
the same arguments through a script and through real ansible-playbook on the same host; the
`event_data.res` AWX receives is compared after normalising what must differ: times, the
directories each run used, and the program rsync starts as its ssh (ours relays over the task's
connection; Ansible's is OpenSSH)."""

import os
import random
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from test_action_plugins import clean, side_by_side
from test_ansible_modules import SETUP
from testbed import Testbed

# A file larger than a pipe's buffer in both directions: rsync leaves its ssh's stdout
# non-blocking, which a relay must cope with.
BLOB = random.Random(7).randbytes(3 * 1024 * 1024)
FILES = [("files/site/index.html", "<h1>hi</h1>\n"), ("files/site/about.txt", "about\n"), ("files/site/blob.bin", BLOB),
         ("files/site/sub/deep.txt", "deep\n"), ("other/x.conf", "x=1\n")]


def steps_for(p: str):
    return [
        ("file", {"path": p, "state": "directory"}, SETUP),
        ("synchronize", {"src": "site/", "dest": f"{p}/push/"}),
        ("synchronize", {"src": "site/", "dest": f"{p}/push/"}),
        ("ansible.posix.synchronize", {"src": "site", "dest": f"{p}/push2", "rsync_opts": ["--exclude=*.txt"]}),
        ("synchronize", {"src": "other/", "dest": f"{p}/push/", "delete": True, "checksum": True}),
        ("synchronize", {"src": "site/", "dest": f"{p}/push3", "archive": False, "recursive": True,
                         "rsync_opts": "--chmod=F600,--omit-dir-times"}),
        ("synchronize", {"src": "nothere/", "dest": f"{p}/push4/"}),
        ("synchronize", {"src": f"{p}/push2/", "dest": "pulled/", "mode": "pull"}),
        ("synchronize", {"src": f"{p}/nothere/", "dest": "pulled/", "mode": "pull"}),
        ("synchronize", {"src": "site/", "dest": f"{p}/push5/", "dest_port": None, "partial": True,
                         "use_ssh_args": True}),
    ]


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("testbed"), 1).start()
    yield tb
    tb.stop()


def sync_clean(value, p, files_dir):
    value = clean(value, p, files_dir)
    if isinstance(value, dict):
        return {k: sync_clean(v, p, files_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [sync_clean(v, p, files_dir) for v in value]
    if isinstance(value, str):
        # The program rsync starts as its ssh: OpenSSH for Ansible, our relay for us.
        value = re.sub(r"--rsh='\S+/ssh ", "--rsh='<ssh> ", value)
    return value


@pytest.mark.parametrize("mode", ["run", "check_diff", "become", "local"])
def test_synchronize_matches_ansible_playbook(testbed, tmp_path, mode):
    diffs = side_by_side(testbed, tmp_path, "newest", mode, steps_for, FILES, "sync", sync_clean)
    assert not diffs, "\n".join(diffs)


def test_synchronize_keeps_the_controller_side_to_the_scripts_files(testbed, tmp_path):
    """What rsync does on the controller stays within the script's directories and scratch, and
    rsync reaches only the task's host, through our connection: each refusal is a failed task
    that names the reason, and nothing reaches the host."""
    from test_ansible_modules import env_for
    from test_engine import engine_calls

    dest = f"/tmp/ftl2-sync-r{uuid.uuid4().hex[:6]}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the script's\n")
    (tmp_path / "scripts" / "files").mkdir(parents=True)
    (tmp_path / "scripts" / "files" / "leak").symlink_to(outside)
    refused = [
        ({"src": str(outside) + "/", "dest": dest}, "is outside the directories this job may use"),
        ({"src": "leak/", "dest": dest}, "is outside the directories this job may use"),
        ({"src": "site/", "dest": dest, "rsync_opts": ["--rsh=sh -c 'id > /tmp/pwned'"]},
         "rsync reaches the host through ftl2-runner's connection"),
        ({"src": "site/", "dest": dest, "rsync_opts": ["--files-from=/etc/passwd"]},
         "reads or writes controller files outside the script's directories"),
        ({"src": "site/", "dest": dest, "rsync_opts": "-avL"}, "follows links out of the source"),
        ({"src": "site/", "dest": dest, "copy_links": True}, "would follow links out of the source"),
        ({"src": "site/", "dest": "otherhost:/tmp/x"}, "names a host or an rsync daemon"),
        ({"src": "site/", "dest": dest, "dest_port": 1}, "differs from the port ftl2-runner reaches node0 on"),
        ({"src": "/etc/hostname", "dest": dest, "mode": "pull"}, "is outside the directories this job may use"),
        ({"src": "/etc/hostname", "dest": str(outside) + "/", "mode": "pull"},
         "is outside the directories this job may use"),
    ]
    calls = [("node0", "synchronize", args) for args, _ in refused]
    calls.append(("node0", "synchronize", {"src": "site/", "dest": dest}))
    files = [("files/site/index.html", "<h1>hi</h1>\n")]
    started = time.time()
    try:
        results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls, extra_files=files,
                                    kwargs={"envvars": env_for("newest")})
        for (args, why), [r] in zip(refused, results):
            assert r["status"] == "failed", (args, r)
            assert why in r["output"]["msg"], (args, r["output"]["msg"])
        # Nothing of the refused calls reached the host; the allowed one did.
        [ok] = results[-1]
        assert ok["status"] == "changed", ok
        assert sorted(p.name for p in Path(dest).iterdir()) == ["index.html"]
        assert not Path("/tmp/pwned").exists()
        # The bridge's private directory (its `ssh` and socket) is gone with the job.
        assert not [p for p in Path(tempfile.gettempdir()).glob("ftl2-rsync-*") if p.stat().st_uid == os.getuid()
                    and p.stat().st_mtime >= started], "the rsync bridge directory was left behind"
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_a_script_swapping_scratch_for_a_link_cannot_lead_rsync_out(testbed, tmp_path):
    """rsync opens the controller's paths itself, so they cannot be opened beneath scratch as every
    other controller file is. A script that keeps swapping its pull destination in scratch
    between a directory and a link out, while pulls into it run, must never get rsync to write
    outside: the script is held still from the check of the path until rsync is done."""
    from conftest import make_stream, make_zip, run_worker, worker_env
    from test_ansible_modules import env_for

    outside = tmp_path / "outside"
    outside.mkdir()
    src = Path(f"/tmp/ftl2-syncrace-{uuid.uuid4().hex[:6]}")
    (src / "data").mkdir(parents=True)
    (src / "data" / "payload.txt").write_text("pulled\n")
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(f"""
import asyncio, json, os, shutil, tempfile

async def run(inventory_path, extravars, runner):
    d = os.path.join(tempfile.gettempdir(), "d")
    os.mkdir(d)
    out = "../" * 12 + {str(outside).lstrip('/')!r}
    state = {{"stop": False, "swaps": 0}}

    def restore():
        # A pull held between two of our steps (d missing) made d anew: start from a directory.
        if os.path.islink(d):
            os.unlink(d)
        elif os.path.isdir(d):
            shutil.rmtree(d)
        if os.path.isdir(d + ".real"):
            os.rename(d + ".real", d)
        else:
            os.mkdir(d)

    async def swapper():
        while not state["stop"]:
            try:
                os.rename(d, d + ".real")
                os.symlink(out, d)
                await asyncio.sleep(0)  # d leads out while the loop turns
                os.unlink(d)
                os.rename(d + ".real", d)
                state["swaps"] += 1
            except OSError:
                restore()
            await asyncio.sleep(0)

    async with runner.automation(fail_fast=False) as ftl:
        task = asyncio.ensure_future(swapper())
        outcomes = []
        for _ in range(10):
            [r] = await ftl.run_on("node0", "synchronize", src={str(src / 'data')!r} + "/", dest=d + "/", mode="pull")
            outcomes.append([r.status, r.output.get("msg", "")])
        state["stop"] = True
        await task
    print("OUTCOMES " + json.dumps({{"outcomes": outcomes, "swaps": state["swaps"]}}))
    return 0
""")
    kw = {"ident": "race", "inventory": "inventory/hosts", "envvars": env_for("newest")}
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, testbed.ini_inventory().encode())]
    try:
        res = run_worker(make_stream(kw, make_zip(entries)), tmp_path / "runner",
                         env=worker_env(FTL2_SCRIPT=sdir / "main.py"), timeout=300)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    # Without the hold, rsync wrote payload.txt here within a few pulls (and the script's own
    # renames then failed).
    assert not list(outside.iterdir()), list(outside.iterdir())
    lines = [e["stdout"] for e in res.events if e["event"] == "verbose" and e["stdout"].startswith("OUTCOMES ")]
    assert len(lines) == 1, "\n".join(e.get("stdout", "") for e in res.events)[-3000:]
    got = __import__("json").loads(lines[0][len("OUTCOMES "):])
    assert got["swaps"] >= 3, got  # the swapper ran between the pulls (held during each)
    for status, msg in got["outcomes"]:
        assert status in ("changed", "ok") or "outside the directories this job may use" in msg, (status, msg)
