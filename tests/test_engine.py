"""The execution engine over real SSH (one sshd per host on loopback) and local, compared with
what Ansible's own modules (ansible-core, run through the real ansible-runner) report for the
same call."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import BIN, GUEST, VENV_BIN, make_stream, make_zip, run_worker, worker_env
from testbed import Testbed, free_port

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("testbed"), 3).start()
    yield tb
    tb.stop()


def engine_calls(tmp_path, inventory: str, calls, *, cmdline=None, kwargs=None, extra_files=(), user=None,
                 worker_args=(), worker_vars=None):
    """Run `calls` [(target, module, args)] in one job; returns (results per call, WorkerResult).

    With `user`, the worker runs as that unprivileged user, from copies of the binary and guest
    in `tmp_path` (which that user must be able to reach)."""
    sdir = tmp_path / "scripts"
    sdir.mkdir(parents=True, exist_ok=True)
    for name, content in extra_files:
        (sdir / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (sdir / name).write_bytes(content)
        else:
            (sdir / name).write_text(content)
    (sdir / "main.py").write_text(textwrap.dedent(f"""
        import json
        CALLS = json.loads({json.dumps(json.dumps(calls))})
        async def run(inventory_path, extravars, runner):
            async with runner.automation(fail_fast=False) as ftl:
                for target, module, args in CALLS:
                    rs = await ftl.run_on(target, module, **args)
                    print("RESULT " + json.dumps([{{"host": r.host, "status": r.status, "output": r.output}} for r in rs]))
            return 0
    """))
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, inventory.encode())]
    if cmdline:
        entries.append(("env/cmdline", 0o600, cmdline.encode()))
    kw = {"ident": "eng", "inventory": "inventory/hosts", "envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False"}}
    kw.update(kwargs or {})
    env, binary = worker_env(FTL2_SCRIPT=sdir / "main.py", **(worker_vars or {})), None
    if user:
        binary, guest = tmp_path / "ftl2-runner", tmp_path / "guest.cwasm"
        for src, dst in [(BIN, binary), (GUEST, guest)]:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy(src, dst)
        env.update(FTL2_GUEST=str(guest), HOME=str(tmp_path))
        shutil.chown(tmp_path, user, user)
    res = run_worker(make_stream(kw, make_zip(entries)), tmp_path / "runner", *worker_args,
                     env=env, timeout=180, binary=binary, user=user)
    results = [json.loads(e["stdout"][len("RESULT "):]) for e in res.events
               if e["event"] == "verbose" and e["stdout"].startswith("RESULT ")]
    return results, res


def ansible_call(inventory_path: Path, host: str, module: str, args: dict, check=False):
    """The same call through real Ansible (ansible-runner -> ansible); returns (status, res)."""
    import ansible_runner

    env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    cmdline = "--check" if check else None
    r = ansible_runner.interface.run(
        private_data_dir=tempfile.mkdtemp(), host_pattern=host, module=module,
        module_args=json.dumps(args) if args else None, inventory=str(inventory_path), quiet=True, envvars=env,
        cmdline=cmdline,
    )
    for e in r.events:
        ev = e["event"]
        if ev in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
            res = e["event_data"]["res"]
            status = {"runner_on_ok": "changed" if res.get("changed") else "ok", "runner_on_failed": "failed",
                      "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}[ev]
            return status, res
    raise AssertionError(f"no result from ansible: {r.status} {[e['event'] for e in r.events]}")


COMPARED = ("changed", "failed", "rc", "state", "mode", "checksum", "msg", "stdout", "ping", "content", "dest")


def compare(ours, theirs, keys=COMPARED):
    (ostatus, ores), (tstatus, tres) = ours, theirs
    assert ostatus == tstatus, (ours, theirs)
    for k in keys:
        if k in tres and k in ("changed", "failed", "rc", "state", "mode", "checksum", "ping", "content"):
            assert ores.get(k) == tres.get(k), (k, ores, tres)
        if k == "stdout" and k in tres:
            assert ores.get(k) == tres.get(k), (k, ores, tres)


def test_native_modules_match_ansible_over_ssh(testbed, tmp_path):
    inv = tmp_path / "inv.ini"
    inv.write_text(testbed.ini_inventory())
    base = f"/tmp/ftl2-cmp-{uuid.uuid4().hex[:8]}"
    # Each step runs twice, ours on {base}-ours, Ansible's on {base}-ans, so the results (and the
    # state they leave) can be compared side by side. Steps build on each other.
    steps = [
        ("ping", {}),
        ("command", {"cmd": "echo hello world"}),
        ("command", {"cmd": "false"}),
        ("command", {"cmd": "echo never", "creates": "/etc/hostname"}),
        ("shell", {"cmd": "echo one | tr a-z A-Z"}),
        ("raw", {"_raw_params": "echo raw"}),
        ("file", {"path": "{p}", "state": "directory", "mode": "0750"}),
        ("file", {"path": "{p}", "state": "directory", "mode": "0750"}),
        ("file", {"path": "{p}/touched", "state": "touch"}),
        ("file", {"path": "{p}/missing", "state": "file"}),
        ("copy", {"content": "hello\n", "dest": "{p}/copied", "mode": "0640"}),
        ("copy", {"content": "hello\n", "dest": "{p}/copied", "mode": "0640"}),
        ("copy", {"content": "changed\n", "dest": "{p}/copied"}),
        ("stat", {"path": "{p}/copied"}),
        ("stat", {"path": "{p}/nope"}),
        ("slurp", {"src": "{p}/copied"}),
        ("lineinfile", {"path": "{p}/copied", "line": "second"}),
        ("lineinfile", {"path": "{p}/copied", "line": "second"}),
        ("lineinfile", {"path": "{p}/copied", "regexp": "^chan", "line": "first"}),
        ("lineinfile", {"path": "{p}/copied", "regexp": "^sec", "state": "absent"}),
        ("file", {"path": "{p}/link", "src": "{p}/copied", "state": "link"}),
        ("file", {"path": "{p}/link", "src": "{p}/copied", "state": "link"}),
        ("file", {"path": "{p}/copied", "mode": "u+x,g-r"}),
        ("file", {"path": "{p}/touched", "state": "absent"}),
        ("file", {"path": "{p}/touched", "state": "absent"}),
    ]
    def fill(args, p):
        return {k: v.replace("{p}", p) if isinstance(v, str) else v for k, v in args.items()}
    ours_calls = [("node0", m, fill(a, base + "-ours")) for m, a in steps]
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), ours_calls)
    assert len(results) == len(steps), res.stdout[-3000:]
    for (module, args), got in zip(steps, results):
        theirs = ansible_call(inv, "node0", module, fill(args, base + "-ans"))
        ours = (got[0]["status"], got[0]["output"])
        if module == "stat":
            st_o, st_t = ours[1]["stat"], theirs[1]["stat"]
            assert ours[0] == theirs[0] and st_o["exists"] == st_t["exists"]
            for k in ("mode", "checksum", "isreg", "isdir", "size", "pw_name"):
                assert st_o.get(k) == st_t.get(k), (k, st_o, st_t)
            continue
        if module == "raw":
            # Ansible runs raw in a pty over SSH (\r\n endings, "Shared connection closed"); we do not.
            assert ours[0] == theirs[0] and ours[1]["stdout_lines"] == theirs[1]["stdout_lines"]
            continue
        compare(ours, theirs)
        if module == "file":  # which key names the path (touch and links say `dest`)
            assert [k in ours[1] for k in ("path", "dest")] == [k in theirs[1] for k in ("path", "dest")], \
                (args, ours[1], theirs[1])
    # Both left the same files behind.
    listing = lambda p: subprocess.run(f"cd {p} && find . \\( -type l -printf '%p %y %l\\n' \\) -o -printf '%p %y %m %s\\n' | sed 's/-ours/-X/; s/-ans/-X/' | sort", shell=True,
                                       capture_output=True, text=True).stdout
    assert listing(base + "-ours") == listing(base + "-ans")
    assert Path(base + "-ours/copied").read_text() == Path(base + "-ans/copied").read_text()


def test_check_mode_changes_nothing_anywhere(testbed, tmp_path):
    p = f"/tmp/ftl2-check-{uuid.uuid4().hex[:8]}"
    calls = [("node0", "file", {"path": p, "state": "directory"}),
             ("node0", "copy", {"content": "x", "dest": p + "-file"}),
             ("localhost", "file", {"path": p + "-local", "state": "touch"}),
             ("node0", "command", {"cmd": f"touch {p}-cmd"}),
             ("node0", "lineinfile", {"path": p + "-lif", "line": "x", "create": True})]
    results, _ = engine_calls(tmp_path, testbed.ini_inventory(), calls, cmdline="--check")
    assert [r[0]["status"] for r in results] == ["changed", "changed", "changed", "skipped", "changed"]
    for suffix in ("", "-file", "-local", "-cmd", "-lif"):
        assert not Path(p + suffix).exists(), suffix
    inv = tmp_path / "inv.ini"
    inv.write_text(testbed.ini_inventory())
    assert ansible_call(inv, "node0", "file", {"path": p, "state": "directory"}, check=True)[0] == "changed"


def test_fan_out_is_concurrent_and_in_inventory_order(testbed, tmp_path):
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), [("nodes", "command", {"cmd": "sleep 1"})])
    assert [r["host"] for r in results[0]] == ["node0", "node1", "node2"]
    ok = [e["event_data"] for e in res.events if e["event"] == "runner_on_ok"]
    starts = sorted(e["start"] for e in ok)
    ends = sorted(e["end"] for e in ok)
    assert starts[-1] < ends[0], "the hosts did not run at the same time"


def test_one_ssh_connection_per_host_for_the_whole_job(testbed, tmp_path):
    log = tmp_path / "worker.log"
    calls = [("nodes", "ping", {}), ("nodes", "command", {"cmd": "true"}), ("node1", "stat", {"path": "/"})]
    engine_calls(tmp_path, testbed.ini_inventory(), calls, worker_args=("--debug", f"--logfile={log}"))
    text = log.read_text()
    connected = sorted(re.findall(r"ssh root@127\.0\.0\.1:(\d+) connected", text))
    assert connected == sorted(str(h.port) for h in testbed.hosts), text
    assert len(re.findall(r"node1: \w+ ok in", text)) == 2 and "node1: command changed in" in text


def test_forks_cap_concurrency(testbed, tmp_path):
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), [("nodes", "command", {"cmd": "sleep 0.5"})],
                                cmdline="--forks=1")
    ok = sorted((e["event_data"]["start"], e["event_data"]["end"]) for e in res.events if e["event"] == "runner_on_ok")
    assert all(a[1] <= b[0] for a, b in zip(ok, ok[1:])), ok


def test_unreachable_hosts_are_reported_while_others_succeed(testbed, tmp_path):
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    from testbed import free_port
    inv = testbed.ini_inventory() + textwrap.dedent(f"""
        [bad]
        closed ansible_host=127.0.0.1 ansible_port={free_port()} ansible_user=root ansible_ssh_private_key_file={testbed.key}
        wrongkey ansible_host=127.0.0.1 ansible_port={testbed.hosts[0].port} ansible_user=root ansible_ssh_private_key_file={wrong}
        nokey ansible_host=127.0.0.1 ansible_port={testbed.hosts[0].port} ansible_user=root
    """)
    results, res = engine_calls(tmp_path, inv, [("all:!localhost", "ping", {})])
    by_host = {r["host"]: r for r in results[0]}
    assert {h: by_host[h]["status"] for h in by_host} == {
        "node0": "ok", "node1": "ok", "node2": "ok", "closed": "unreachable", "wrongkey": "unreachable",
        "nokey": "unreachable"}
    assert "Connection refused" in by_host["closed"]["output"]["msg"]
    assert "Permission denied" in by_host["wrongkey"]["output"]["msg"]
    assert "no SSH key or password" in by_host["nokey"]["output"]["msg"]
    assert res.final_status == "failed" and res.rc == 4
    stats = next(e for e in res.events if e["event"] == "playbook_on_stats")["event_data"]
    assert stats["dark"] == {"closed": 1, "wrongkey": 1, "nokey": 1}
    assert sum(e["event"] == "runner_on_unreachable" for e in res.events) == 3


def test_awx_machine_credential_key_user_and_passphrase(testbed, tmp_path):
    # The key as AWX sends it (kwargs ssh_key, passphrase in the prompt map), user from -u.
    enc = tmp_path / "enc_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret-phrase", "-f", str(enc)], check=True)
    for h in testbed.hosts:
        with open(h.dir / "authorized_keys", "a") as f:
            f.write((tmp_path / "enc_key.pub").read_text())
    inv = "\n".join(f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}" for h in testbed.hosts) + "\n"
    kwargs = {"ssh_key": enc.read_text(), "passwords": {"Enter passphrase for .*:\\s*?$": "s3cret-phrase"}}
    results, res = engine_calls(tmp_path, inv, [("all", "command", {"cmd": "id -un"})], cmdline="-u root", kwargs=kwargs)
    assert [(r["host"], r["output"]["stdout"]) for r in results[0]] == [(h.name, "root") for h in testbed.hosts]
    assert b"s3cret-phrase" not in res.stdout and b"PRIVATE KEY" not in res.stdout
    # A wrong passphrase makes every host unreachable with a clear reason.
    kwargs["passwords"] = {"Enter passphrase for .*:\\s*?$": "wrong"}
    results, _ = engine_calls(tmp_path / "b", inv, [("all", "ping", {})], cmdline="-u root", kwargs=kwargs)
    assert all(r["status"] == "unreachable" and "SSH private key" in r["output"]["msg"] for r in results[0])


def test_host_key_checking_when_turned_on(testbed, tmp_path):
    h = testbed.hosts[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    base = f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user=root ansible_ssh_private_key_file={testbed.key} ansible_ssh_known_hosts_file={known}\n"
    kw = {"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "True"}}
    results, _ = engine_calls(tmp_path, base, [(h.name, "ping", {})], kwargs=kw)
    assert results[0][0]["status"] == "unreachable"
    assert "Host key verification failed" in results[0][0]["output"]["msg"]
    key = (h.dir / "host_key.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{h.port} {key[0]} {key[1]}\n")
    results, _ = engine_calls(tmp_path / "b", base, [(h.name, "ping", {})], kwargs=kw)
    assert results[0][0]["status"] == "ok"


def test_one_connection_per_host_is_reused(tmp_path):
    tb = Testbed(tmp_path / "tb", 2, log_level="INFO").start()
    try:
        calls = [(h.name, "command", {"cmd": "true"}) for h in tb.hosts] * 10
        calls += [("nodes", "copy", {"content": "x", "dest": f"/tmp/ftl2-reuse-{uuid.uuid4().hex[:6]}"})]
        results, _ = engine_calls(tmp_path, tb.ini_inventory(), calls)
        assert all(r[0]["status"] in ("changed", "ok") for r in results)
        for h in tb.hosts:
            log = (h.dir / "sshd.log").read_text()
            assert log.count("Accepted publickey") == 1, log
    finally:
        tb.stop()


def test_template_renders_host_vars_and_extravars(testbed, tmp_path):
    p = f"/tmp/ftl2-tpl-{uuid.uuid4().hex[:8]}"
    inv = testbed.ini_inventory().replace("[nodes:vars]", "[nodes:vars]\nrole=web")
    results, _ = engine_calls(tmp_path, inv, [("node1", "template", {"src": "app.conf.j2", "dest": p})],
                              extra_files=[("app.conf.j2", "host={{ inventory_hostname }} role={{ role }}\n{% for g in group_names %}group={{ g }}\n{% endfor %}")])
    assert results[0][0]["status"] == "changed", results
    assert Path(p).read_text() == "host=node1 role=web\ngroup=nodes\n"


@pytest.fixture(scope="module")
def become_user():
    """A login user with a password and sudo rights (password required)."""
    assert os.geteuid() == 0, "the become tests need root to create their user"
    assert Path("/usr/bin/sudo").exists(), "sudo is not installed (.ci/run installs it)"
    name, pw = "ftl2test", "ftl2-Pw-9"
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{pw}\n", text=True, check=True)
    Path(f"/etc/sudoers.d/{name}").write_text(f"{name} ALL=(ALL) ALL\n")
    os.chmod(f"/etc/sudoers.d/{name}", 0o440)
    return name, pw


def test_password_login_and_sudo_become_with_password(become_user, tmp_path):
    name, pw = become_user
    tb = Testbed(tmp_path / "pw", 1, password_auth=True).start()
    try:
        h = tb.hosts[0]
        inv = f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}\n"
        prompts = {"SSH password:\\s*?$": pw, "BECOME password.*:\\s*?$": pw}
        calls = [(h.name, "command", {"cmd": "id -un"})]
        # SSH password and become password from AWX's prompt map, with the flags AWX adds.
        results, res = engine_calls(tmp_path / "a", inv, calls, kwargs={"passwords": prompts},
                                    cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert results[0][0]["output"]["stdout"] == "root", results
        assert pw.encode() not in res.stdout
        # Ansible modules too: the host's resident module runner starts through sudo (answering
        # its prompt) and runs each module as root, and so does async_wrapper.
        ansible_env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        probe = [(h.name, "getent", {"database": "passwd", "key": "root"}),
                 (h.name, "shell", {"cmd": "id -un; ps -o user= -p $PPID", "_async": 10, "_poll": 1}),
                 (h.name, "getent", {"database": "shadow", "key": "root"})]
        results, res = engine_calls(tmp_path / "m", inv, probe, kwargs={"passwords": prompts, "envvars": ansible_env},
                                    cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert results[0][0]["status"] == "ok", results[0]
        assert results[1][0]["output"]["stdout_lines"][0] == "root", results[1]
        assert results[2][0]["status"] == "ok", results[2]  # only root may read shadow
        assert pw.encode() not in res.stdout
        # synchronize's rsync logs in as this connection does, by password, without sshpass.
        from test_ansible_modules import env_for
        dest = Path(tempfile.mkdtemp(prefix="ftl2-sync-pw-"))
        dest.chmod(0o777)
        try:
            results, res = engine_calls(tmp_path / "s", inv, [(h.name, "synchronize", {"src": "site", "dest": f"{dest}/"})],
                                        kwargs={"passwords": prompts, "envvars": env_for("newest")},
                                        cmdline=f"-u {name} --ask-pass", extra_files=[("files/site/f.txt", "synced\n")])
            assert results[0][0]["status"] == "changed", results[0][0]["output"]["msg"]
            assert (dest / "site" / "f.txt").read_text() == "synced\n"
            assert (dest / "site" / "f.txt").owner() == name
            assert pw.encode() not in res.stdout
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        # Without become: the login user.
        results, _ = engine_calls(tmp_path / "b", inv, calls, kwargs={"passwords": prompts},
                                  cmdline=f"-u {name} --ask-pass")
        assert results[0][0]["output"]["stdout"] == name
        # A become password AWX did not ask for (no --ask-become-pass) is not used.
        results, _ = engine_calls(tmp_path / "c", inv, calls, kwargs={"passwords": prompts},
                                  cmdline=f"-u {name} --ask-pass --become")
        assert results[0][0]["status"] == "failed"
        assert "Missing sudo password" in results[0][0]["output"]["stderr"]
        # A wrong one is reported as such.
        bad = dict(prompts, **{"BECOME password.*:\\s*?$": "nope"})
        results, _ = engine_calls(tmp_path / "d", inv, calls, kwargs={"passwords": bad},
                                  cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert "Incorrect sudo password" in results[0][0]["output"]["stderr"]
        # File modules work through become too (writing where only root may).
        p = f"/root/ftl2-become-{uuid.uuid4().hex[:6]}"
        results, _ = engine_calls(tmp_path / "e", inv, [(h.name, "copy", {"content": "as root\n", "dest": p})],
                                  kwargs={"passwords": prompts}, cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert results[0][0]["status"] == "changed", results
        assert Path(p).read_text() == "as root\n" and Path(p).stat().st_uid == 0
        Path(p).unlink()
    finally:
        tb.stop()


def test_more_modules_over_ssh(testbed, tmp_path):
    base = Path(f"/tmp/ftl2-more-{uuid.uuid4().hex[:8]}")
    src = tmp_path / "scripts" / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A\n")
    (src / "sub" / "b.txt").write_text("B\n")
    calls = [
        ("node0", "copy", {"src": "tree/", "dest": f"{base}/copied/"}),
        ("node0", "copy", {"src": "tree/", "dest": f"{base}/copied/"}),
        ("node0", "copy", {"content": "v1\n", "dest": f"{base}/cfg"}),
        ("node0", "copy", {"content": "v2\n", "dest": f"{base}/cfg", "backup": True}),
        ("node0", "file", {"path": f"{base}/cfg", "owner": "nobody", "group": "nogroup"}),
        ("node0", "file", {"path": f"{base}/hard", "src": f"{base}/cfg", "state": "hard"}),
        ("node0", "file", {"path": f"{base}", "state": "directory", "recurse": True, "mode": "u+rwX,go-rwx"}),
        ("node0", "wait_for_connection", {"timeout": 5}),
        ("node0", "setup", {}),
        ("node1", "fetch", {"src": f"{base}/cfg", "dest": "fetched/", "flat": True}),
        ("node1", "fetch", {"src": f"{base}/cfg", "dest": "fetched/", "flat": True}),
        ("node2", "fetch", {"src": f"{base}/cfg", "dest": "tree-by-host"}),
    ]
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls)
    st = [r[0]["status"] for r in results]
    out = [r[0]["output"] for r in results]
    assert st[:2] == ["changed", "ok"], out[:2]
    assert (base / "copied" / "a.txt").read_text() == "A\n" and (base / "copied" / "sub" / "b.txt").read_text() == "B\n"
    assert st[3] == "changed" and Path(out[3]["backup_file"]).read_text() == "v1\n"
    assert (base / "cfg").read_text() == "v2\n"
    assert st[4] == "changed" and out[4]["owner"] == "nobody" and out[4]["group"] == "nogroup"
    assert st[5] == "changed" and os.stat(base / "hard").st_ino == os.stat(base / "cfg").st_ino
    assert st[6] == "changed" and oct(os.stat(base / "copied" / "a.txt").st_mode & 0o777) == "0o600"
    assert st[7] == "ok" and "elapsed" in out[7]
    facts = out[8]["ansible_facts"]
    theirs = ansible_call(tmp_path / "inv.ini" if (tmp_path / "inv.ini").write_text(testbed.ini_inventory()) else None,
                          "node0", "setup", {"gather_subset": ["min", "hardware"]})[1]["ansible_facts"]
    for k in ("ansible_hostname", "ansible_distribution", "ansible_distribution_major_version", "ansible_os_family",
              "ansible_kernel", "ansible_architecture", "ansible_system", "ansible_processor_vcpus", "ansible_memtotal_mb"):
        assert facts[k] == theirs[k], (k, facts[k], theirs[k])
    assert (st[9], st[10]) == ("changed", "ok"), out[9:11]
    # Relative fetch destinations land in the job's scratch dir (removed with the job).
    assert "/ftl2-scratch-" in out[11]["dest"] and out[11]["dest"].endswith(f"tree-by-host/node2{base}/cfg")
    assert out[11]["checksum"] == out[9]["checksum"]
    subprocess.run(["rm", "-rf", str(base)])


def test_ssh_handshake_timeout_is_unreachable(testbed, tmp_path):
    import socket
    import threading

    # A port that accepts connections but never speaks SSH: a hung host.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        port = srv.getsockname()[1]
        inv = testbed.ini_inventory() + f"[hung]\nhung ansible_host=127.0.0.1 ansible_port={port} ansible_user=root ansible_timeout=2 ansible_ssh_private_key_file={testbed.key}\n"
        results, res = engine_calls(tmp_path, inv, [("nodes:hung", "ping", {})])
        by = {r["host"]: r for r in results[0]}
        assert by["hung"]["status"] == "unreachable" and "timed out" in by["hung"]["output"]["msg"]
        assert all(by[f"node{i}"]["status"] == "ok" for i in range(3))
        hung = next(e for e in res.events if e["event"] == "runner_on_unreachable")
        assert hung["event_data"]["duration"] < 10
    finally:
        stop.set()
        srv.close()


def test_sudo_with_requiretty_runs_in_a_terminal(become_user, tmp_path):
    """A sudoers `requiretty` refuses sudo without a terminal before running anything: the
    command runs again through one (with its input typed there), as Ansible's -tt does."""
    name, pw = become_user
    rule = Path(f"/etc/sudoers.d/{name}")
    rule.write_text(f"Defaults:{name} requiretty\n{name} ALL=(ALL) ALL\n")
    tb = Testbed(tmp_path / "pw", 1, password_auth=True).start()
    try:
        h = tb.hosts[0]
        inv = f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}\n"
        prompts = {"SSH password:\\s*?$": pw, "BECOME password.*:\\s*?$": pw}
        calls = [(h.name, "command", {"cmd": "id -un"}),
                 (h.name, "command", {"cmd": "cat", "stdin": "typed\nthrough the terminal"}),
                 (h.name, "getent", {"database": "passwd", "key": "root"})]
        ansible_env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        results, res = engine_calls(tmp_path / "a", inv, calls, kwargs={"passwords": prompts, "envvars": ansible_env},
                                    cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert results[0][0]["output"]["stdout"] == "root", results
        assert results[1][0]["output"]["stdout"] == "typed\nthrough the terminal", results[1]
        assert results[2][0]["output"]["ansible_facts"]["getent_passwd"]["root"][4] == "/root", results[2]
        assert pw.encode() not in res.stdout
    finally:
        rule.write_text(f"{name} ALL=(ALL) ALL\n")
        tb.stop()


def su_or_doas_target(method, name, pw):
    """Who `name` becomes with `method`, with which password: (target, password)."""
    if method == "su":
        # su asks for the *target* user's password: become a second user.
        target, target_pw = "ftl2target", "ftl2-Tg-7"
        if subprocess.run(["id", target], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", target], check=True)
        subprocess.run(["chpasswd"], input=f"{target}:{target_pw}\n", text=True, check=True)
        return target, target_pw
    assert Path("/usr/bin/doas").exists(), "doas is not installed (.ci/run installs it)"
    Path("/etc/doas.conf").write_text(f"permit {name} as root\n")
    os.chmod("/etc/doas.conf", 0o600)
    return "root", pw


@pytest.mark.parametrize("method", ["su", "doas"])
def test_su_and_doas_become_with_password(become_user, tmp_path, method):
    name, pw = become_user
    target, become_pw = su_or_doas_target(method, name, pw)
    expected = target
    tb = Testbed(tmp_path / "pw", 1, password_auth=True).start()
    try:
        h = tb.hosts[0]
        inv = f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port} ansible_become_method={method} ansible_become_user={target}\n"
        prompts = {"SSH password:\\s*?$": pw, "BECOME password.*:\\s*?$": become_pw}
        p = f"/tmp/ftl2-{method}-{uuid.uuid4().hex[:6]}"
        # getent: an Ansible module, whose ~170 KB payload must reach the become user's Python
        # through su/doas's terminal (never the command line: over Linux's 128 KiB limit).
        calls = [(h.name, "command", {"cmd": "id -un"}), (h.name, "copy", {"content": "line1\nline2\n", "dest": p}),
                 (h.name, "getent", {"database": "passwd", "key": "root"})]
        ansible_env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        results, res = engine_calls(tmp_path / "a", inv, calls, kwargs={"passwords": prompts, "envvars": ansible_env},
                                    cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert results[0][0]["output"]["stdout"] == expected, results
        assert results[1][0]["status"] == "changed", results[1]
        assert results[2][0]["output"]["ansible_facts"]["getent_passwd"]["root"][4] == "/root", results[2]
        assert Path(p).read_text() == "line1\nline2\n"
        assert Path(p).owner() == expected
        assert become_pw.encode() not in res.stdout
        Path(p).unlink()
        bad = dict(prompts, **{"BECOME password.*:\\s*?$": "wrong-one"})
        results, _ = engine_calls(tmp_path / "b", inv, calls[:1], kwargs={"passwords": bad},
                                  cmdline=f"-u {name} --ask-pass --become --ask-become-pass")
        assert results[0][0]["status"] == "failed", results
    finally:
        tb.stop()


@pytest.mark.parametrize("method", ["su", "doas"])
def test_su_and_doas_with_a_password_on_the_local_connection(become_user, method):
    """The EE user (not root) becomes another user on the controller: su and doas read the
    password from a terminal, so the local connection runs them in a pseudo-terminal."""
    name, pw = become_user
    target, become_pw = su_or_doas_target(method, name, pw)
    work = Path(tempfile.mkdtemp(prefix="ftl2-local-become-"))  # pytest's tmp dirs are root-only
    try:
        os.chmod(work, 0o755)
        inv = f"localhost ansible_connection=local ansible_become_method={method} ansible_become_user={target}\n"
        prompts = {"BECOME password.*:\\s*?$": become_pw}
        p = f"/tmp/ftl2-local-{method}-{uuid.uuid4().hex[:6]}"
        calls = [("localhost", "command", {"cmd": "id -un"}),
                 ("localhost", "copy", {"content": "line1\nline2\n", "dest": p}),
                 ("localhost", "command", {"cmd": "cat", "stdin": "fed through the terminal"})]
        results, res = engine_calls(work / "a", inv, calls, kwargs={"passwords": prompts},
                                    cmdline="--become --ask-become-pass", user=name)
        assert results[0][0]["output"]["stdout"] == target, results
        assert results[1][0]["status"] == "changed", results[1]
        assert Path(p).read_text() == "line1\nline2\n" and Path(p).owner() == target
        assert results[2][0]["output"]["stdout"] == "fed through the terminal", results[2]
        assert become_pw.encode() not in res.stdout
        Path(p).unlink()
        # Without become, the EE user itself.
        results, _ = engine_calls(work / "b", inv, calls[:1], user=name)
        assert results[0][0]["output"]["stdout"] == name, results
        bad = {"BECOME password.*:\\s*?$": "wrong-one"}
        results, _ = engine_calls(work / "c", inv, calls[:1], kwargs={"passwords": bad},
                                  cmdline="--become --ask-become-pass", user=name)
        assert results[0][0]["status"] == "failed", results
        assert "Incorrect" in results[0][0]["output"]["msg"] + results[0][0]["output"].get("stderr", ""), results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_awx_fact_cache(testbed, tmp_path):
    from conftest import process
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), [("nodes", "setup", {})],
                                kwargs={"fact_cache_type": "jsonfile"})
    names = res.artifacts().namelist()
    assert {f"fact_cache/{h.name}" for h in testbed.hosts} <= set(names), names
    _, _, _ = process(res.stdout, tmp_path / "api", ident="eng")
    facts = json.loads((tmp_path / "api" / "artifacts" / "eng" / "fact_cache" / "node1").read_text())
    assert facts["ansible_distribution"] == results[0][1]["output"]["ansible_facts"]["ansible_distribution"]
    # Without fact caching AWX gets no cache.
    _, res = engine_calls(tmp_path / "b", testbed.ini_inventory(), [("nodes", "setup", {})], kwargs={"fact_cache_type": ""})
    assert not [n for n in res.artifacts().namelist() if n.startswith("fact_cache/")]


def test_jump_host_from_ssh_common_args(tmp_path):
    tb = Testbed(tmp_path / "tb", 2, log_level="DEBUG").start()
    try:
        bastion, target = tb.hosts
        inv = (f"{target.name} ansible_host=127.0.0.1 ansible_port={target.port} ansible_user=root "
               f"ansible_ssh_private_key_file={tb.key} "
               f"ansible_ssh_common_args='-o StrictHostKeyChecking=no -o ProxyJump=root@127.0.0.1:{bastion.port}'\n")
        results, _ = engine_calls(tmp_path, inv, [(target.name, "command", {"cmd": "echo through the bastion"})])
        assert results[0][0]["output"]["stdout"] == "through the bastion", results
        # The bastion's sshd forwarded a TCP connection to the target's port.
        log = (bastion.dir / "sshd.log").read_text()
        assert "direct-tcpip" in log and str(target.port) in log
        # A jump host that is down makes the target unreachable, saying which hop failed.
        bad = inv.replace(f"127.0.0.1:{bastion.port}", f"127.0.0.1:{free_port()}")
        results, _ = engine_calls(tmp_path / "b", bad, [(target.name, "ping", {})])
        assert results[0][0]["status"] == "unreachable" and "jump host" in results[0][0]["output"]["msg"]
    finally:
        tb.stop()


def test_passwordless_sudo_become(testbed, tmp_path):
    inv = testbed.ini_inventory().replace("[nodes:vars]", "[nodes:vars]\nansible_become=true\nansible_become_user=nobody")
    results, _ = engine_calls(tmp_path, inv, [("nodes", "command", {"cmd": "id -un"}),
                                              ("node0", "command", {"cmd": "cat", "stdin": "fed to nobody"})])
    assert [r["output"]["stdout"] for r in results[0]] == ["nobody"] * 3, results
    assert results[1][0]["output"]["stdout"] == "fed to nobody"


def test_local_commands_run_without_a_shell_and_report_as_over_ssh(testbed, tmp_path):
    """On the controller a `command` starts its program directly (no /bin/sh in between): the
    same results as the same commands over SSH, the job's environment and stdin included."""
    inv = "ctl ansible_connection=local\n" + testbed.ini_inventory()
    not_a_program = tmp_path / "noshebang"
    not_a_program.write_text("echo ran as a script\n")
    not_a_program.chmod(0o755)
    steps = [
        ("command", {"argv": ["sh", "-c", "echo in; cat; echo err >&2; exit 3"], "stdin": "fed"}),
        ("command", {"cmd": "printf '%s|' 'a b' c", "strip_empty_ends": False}),
        ("command", {"cmd": "no-such-program-ftl2 x"}),
        ("command", {"cmd": "pwd", "chdir": "/tmp"}),
        ("command", {"argv": [str(not_a_program)]}),
    ]
    calls = [(host, m, a) for host in ("node0", "ctl") for m, a in steps]
    calls.append(("ctl", "command", {"argv": ["sh", "-c", "echo $FTL2_T_VAR"]}))
    results, res = engine_calls(tmp_path, inv, calls,
                                kwargs={"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False", "FTL2_T_VAR": "from-job"}})
    assert len(results) == 2 * len(steps) + 1, res.stdout[-3000:]
    volatile = ("start", "end", "delta")
    over_ssh = [{k: v for k, v in r[0]["output"].items() if k not in volatile} for r in results[:len(steps)]]
    local = [{k: v for k, v in r[0]["output"].items() if k not in volatile} for r in results[len(steps):-1]]
    assert local == over_ssh, (local, over_ssh)
    first = local[0]
    assert (first["rc"], first["stdout"], first["stderr"]) == (3, "in\nfed", "err"), first
    assert local[1]["stdout"] == "a b|c|", local[1]
    # A program that cannot be started fails as the command module's run_command says it: errno.
    assert (local[2]["rc"], local[2]["msg"]) == (2, "Error executing command."), local[2]
    # An executable file that is not a program is not run as a shell script: exec's ENOEXEC.
    assert (local[4]["rc"], local[4]["msg"], local[4]["stdout"]) == (8, "Error executing command.", ""), local[4]
    # The job's environment reaches commands on the controller (not over SSH, as in Ansible).
    assert results[-1][0]["output"]["stdout"] == "from-job", results[-1]
