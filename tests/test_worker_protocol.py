"""The worker protocol against the real ansible-runner 2.4.3 peer (transmit and process)."""

import io
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import (
    ANSIBLE_RUNNER, BIN, FIXTURES, make_stream, make_zip, parse_worker_stream, process, process_cli,
    read_until, run_worker, simple_pdd, transmit, transmit_api, worker_env, WorkerResult,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- round trips -------------------------------------------------------------------------------

def test_transmit_worker_process_round_trip_without_a_script(tmp_path):
    """A YAML playbook and no baked script: a clear failed job, never a fake success."""
    stream = transmit(simple_pdd(tmp_path), "-p", "ping.yml", "--ident", "rt-0001")
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=""))
    assert res.rc == 1
    assert [s["status"] for s in res.statuses] == ["starting", "running", "failed"]
    starting = res.statuses[0]
    assert starting["runner_ident"] == "rt-0001"
    assert isinstance(starting["env"], dict) and isinstance(starting["cwd"], str)
    assert isinstance(starting["command"], list)
    assert "ping.yml is a YAML playbook" in res.statuses[-1]["job_explanation"]

    out = tmp_path / "out"
    cli = process_cli(res.stdout, out, "rt-0001")
    assert cli.returncode == 0 and cli.stderr == b""
    art = out / "artifacts" / "rt-0001"
    assert (art / "status").read_text() == "failed"
    assert (art / "rc").read_text() == "1"
    for name in ("status", "rc", "command", "stdout"):
        assert mode_of(art / name) == 0o600, name
    events = sorted((art / "job_events").iterdir())
    assert len(events) == len(res.events) == 1
    ev = json.loads(events[0].read_text())
    assert ev["event"] == "verbose" and "no automation script" in ev["stdout"]
    assert "no automation script" in (art / "stdout").read_text()
    # What AWX sees through the Python API.
    r, statuses, seen = process(res.stdout, tmp_path / "api", ident="rt-0001")
    assert r.status == "failed"
    assert [s["status"] for s in statuses] == ["starting", "running", "failed"]
    assert [e["counter"] for e in seen] == [1]


def test_present_script_runs_and_succeeds(tmp_path):
    script = tmp_path / "scripts" / "main.py"
    script.parent.mkdir()
    script.write_text("async def run(inventory_path, extravars, runner):\n    print('ran', extravars['greeting'])\n    return 0\n")
    stream = transmit(simple_pdd(tmp_path), "-p", "ping.yml", "--ident", "rt-0002")
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=script))
    assert res.rc == 0 and res.final_status == "successful"
    assert res.statuses[0]["command"][1] == str(script)
    assert [e["stdout"] for e in res.events] == ["ran hello-from-extravars"]
    r, _, _ = process(res.stdout, tmp_path / "api", ident="rt-0002")
    assert r.status == "successful"


def test_awx_shaped_fixture_round_trip(tmp_path):
    stream = (FIXTURES / "transmit-awxlike.stream").read_bytes()
    pdd = tmp_path / "runner"
    res = run_worker(stream, pdd)
    # The AWX script inventory stays executable, the env files private.
    assert mode_of(pdd / "inventory" / "hosts") == 0o700
    assert mode_of(pdd / "env" / "extravars") == 0o600
    starting = res.statuses[0]
    assert starting["runner_ident"] == "4242"
    assert starting["env"]["JOB_ID"] == "4242"
    assert "-i" in starting["command"] and str(pdd / "inventory" / "hosts") in starting["command"]
    # suppress_output_file: no stdout/stderr artifacts, like the real worker.
    names = res.artifacts().namelist()
    assert "stdout" not in names and {"rc", "status", "command", "job_events/"} <= set(names)
    r, statuses, events = process(res.stdout, tmp_path / "api", ident=4242)
    assert r.status == "failed"
    assert statuses[-1]["status"] == "failed"


def test_artifacts_zip_has_unix_modes_and_no_duplicate_events(tmp_path):
    stream = transmit(simple_pdd(tmp_path), "-p", "ping.yml", "--ident", "zip-0001")
    res = run_worker(stream, tmp_path / "runner")
    z = res.artifacts()
    infos = {i.filename: i for i in z.infolist()}
    assert stat.S_IMODE(infos["rc"].external_attr >> 16) == 0o600
    assert stat.S_IMODE(infos["job_events/"].external_attr >> 16) == 0o700
    assert not any(n.startswith("job_events/") and n != "job_events/" for n in infos)
    assert z.read("rc") == b"1" and z.read("status") == b"failed"
    command = json.loads(z.read("command"))
    assert set(command) == {"command", "cwd", "env"}


def test_secrets_never_reach_the_stream_or_artifacts(tmp_path):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nS3CRETKEYMATERIAL\n-----END OPENSSH PRIVATE KEY-----\n"
    kwargs = {
        "ident": 77,
        "ssh_key": key,
        "passwords": {"SSH password:\\s*?$": "hunter2-ssh", "BECOME password.*:\\s*?$": "hunter2-become"},
        "envvars": {"MY_API_TOKEN": "tok-123-secret", "PROXY_URL": "http://u:pw-secret@proxy:3128"},
    }
    zip_bytes = make_zip([("env/cmdline", 0o600, b"-u root --ask-pass --ask-become-pass")])
    pdd = tmp_path / "runner"
    res = run_worker(make_stream(kwargs, zip_bytes), pdd)
    assert res.statuses[0]["env"]["MY_API_TOKEN"] == "**********"
    everything = res.stdout + b"".join(
        p.read_bytes() for p in (pdd / "artifacts").rglob("*") if p.is_file()
    )
    for secret in (b"S3CRETKEYMATERIAL", b"hunter2-ssh", b"hunter2-become", b"tok-123-secret", b"pw-secret"):
        assert secret not in everything, secret


# --- transmit stream decoding ------------------------------------------------------------------

def test_stream_without_zip_and_with_unknown_lines(tmp_path):
    stream = b'{"hello": "ignored"}\n' + make_stream({"ident": "nozip", "unknown_kwarg": [1, 2]}, None)
    res = run_worker(stream, tmp_path / "runner")
    assert res.statuses[0]["runner_ident"] == "nozip"
    assert res.final_status == "failed"


def test_eof_ends_reading_without_waiting_for_stdin_to_close(tmp_path):
    proc = subprocess.Popen(
        [str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=worker_env(),
    )
    proc.stdin.write(make_stream({"ident": "open-stdin"}, None))
    proc.stdin.flush()  # stdin stays open
    try:
        rc = proc.wait(timeout=20)
    finally:
        proc.kill()
    out = proc.stdout.read()
    lines, _ = parse_worker_stream(out)
    assert rc == 1 and lines[-1] == {"eof": True}


def test_relative_inventory_is_resolved_against_the_private_data_dir(tmp_path):
    zip_bytes = make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o644, b"localhost\n")])
    pdd = tmp_path / "runner"
    res = run_worker(make_stream({"ident": "inv", "inventory": "inventory/hosts"}, zip_bytes), pdd)
    cmd = res.statuses[0]["command"]
    assert cmd[cmd.index("-i") + 1] == str(pdd / "inventory" / "hosts")


def test_inventory_sync_job_is_refused_not_faked(tmp_path):
    """AWX sends an inventory sync as a pdd `args` file (`ansible-inventory --list ...`) with no
    playbook. Running the baked script would report success and import nothing."""
    pdd = tmp_path / "src"
    (pdd / "inventory").mkdir(parents=True)
    (pdd / "inventory" / "aws_ec2.yml").write_text("plugin: amazon.aws.aws_ec2\n")
    (pdd / "args").write_text(
        "ansible-inventory --list --export -i /runner/inventory/aws_ec2.yml "
        "--output /runner/artifacts/7/output.json --playbook-dir /runner/inventory"
    )
    script = tmp_path / "main.py"
    script.write_text("async def run(a, b, c):\n    print('the script ran')\n    return 0\n")
    # AWX's own parameters for an inventory update (playbook and inventory are None, so absent).
    stream = transmit_api(pdd, ident=7, envvars={"INVENTORY_SOURCE_ID": "3"},
                          settings={"job_timeout": 0, "suppress_ansible_output": True, "suppress_output_file": True},
                          fact_cache_type="")
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=script, FTL2_FALLBACK_RUNNER="none"))
    _assert_clean_error(res, tmp_path, r"runs FTL2 automation scripts.*`ansible-inventory`.*ansible-runner\.orig")
    assert not res.events


def test_project_update_is_refused_not_faked(tmp_path):
    """A project update (AWX's project_update.yml) run by the script would mark the project
    synced while nothing was fetched."""
    pdd = simple_pdd(tmp_path)
    (pdd / "project" / "project_update.yml").write_text("- hosts: localhost\n  tasks: []\n")
    stream = transmit_api(pdd, ident=9, playbook="project_update.yml", inventory="localhost,",
                          envvars={"PROJECT_UPDATE_ID": "9"})
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=tmp_path / "none.py", FTL2_FALLBACK_RUNNER="none"))
    _assert_clean_error(res, tmp_path, r"not AWX project updates.*standard")


def _with_original_runner(**extra):
    """The worker's environment in an image that kept its original runner (the real
    ansible-runner 2.4.3 here), with real Ansible on PATH as in an EE."""
    return worker_env(FTL2_FALLBACK_RUNNER=ANSIBLE_RUNNER, PATH=f"{ANSIBLE_RUNNER.parent}:{os.environ['PATH']}",
                      **extra)


def test_inventory_sync_is_handed_to_the_original_runner(tmp_path):
    """With the original runner kept, an AWX inventory sync works: real ansible-inventory runs
    and AWX finds artifacts/<id>/output.json in what comes back."""
    src = tmp_path / "src"
    pdd = tmp_path / "runner"  # AWX writes the worker's absolute pdd path into the command
    (src / "inventory").mkdir(parents=True)
    (src / "inventory" / "hosts.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        web1: {port: 8080}\n        web2:\n"
    )
    (src / "args").write_text(
        f"ansible-inventory --list --export -i {pdd}/inventory/hosts.yml "
        f"--output {pdd}/artifacts/7/output.json --playbook-dir {pdd}/inventory"
    )
    stream = transmit_api(src, ident=7, envvars={"INVENTORY_SOURCE_ID": "3"},
                          settings={"job_timeout": 0, "suppress_ansible_output": True, "suppress_output_file": True},
                          fact_cache_type="")
    res = run_worker(stream, pdd, env=_with_original_runner(FTL2_SCRIPT=tmp_path / "none.py"))
    assert res.lines[-1] == {"eof": True} and res.rc == 0
    r, statuses, _ = process(res.stdout, tmp_path / "awx", ident=7)
    assert r.status == "successful", statuses
    exported = json.loads((tmp_path / "awx" / "artifacts" / "7" / "output.json").read_text())
    assert sorted(exported["web"]["hosts"]) == ["web1", "web2"]
    assert exported["_meta"]["hostvars"]["web1"] == {"port": 8080}


def _project_update(tmp_path, ident: int, task: str) -> bytes:
    """An AWX project update whose project_update.yml runs `task` on localhost."""
    pdd = simple_pdd(tmp_path)
    (pdd / "project" / "project_update.yml").write_text(
        f"- hosts: localhost\n  gather_facts: false\n  tasks:\n    - {task}\n"
    )
    return transmit_api(pdd, ident=ident, playbook="project_update.yml", inventory="localhost,",
                        envvars={"PROJECT_UPDATE_ID": str(ident), "ANSIBLE_PYTHON_INTERPRETER": sys.executable})


def test_project_update_is_handed_to_the_original_runner(tmp_path):
    stream = _project_update(tmp_path, 9, "debug: {msg: synced}")
    res = run_worker(stream, tmp_path / "runner", env=_with_original_runner(FTL2_SCRIPT=tmp_path / "none.py"))
    r, _, events = process(res.stdout, tmp_path / "awx", ident=9)
    assert r.status == "successful" and res.rc == 0
    assert any(e["event"] == "runner_on_ok" and e["event_data"]["res"].get("msg") == "synced" for e in events)


def test_a_job_carrying_project_update_id_is_still_a_script_job(tmp_path):
    """A credential can inject PROJECT_UPDATE_ID into any job: only AWX's project_update.yml
    with it is a project update; anything else stays in the sandbox."""
    script = tmp_path / "scripts" / "main.py"
    script.parent.mkdir()
    script.write_text("async def run(a, b, c):\n    print('sandboxed')\n    return 0\n")
    stream = transmit_api(simple_pdd(tmp_path), ident=11, playbook="ping.yml", inventory="inventory/hosts",
                          envvars={"PROJECT_UPDATE_ID": "11"})
    res = run_worker(stream, tmp_path / "runner", env=_with_original_runner(FTL2_SCRIPT=script))
    assert res.final_status == "successful" and [e["stdout"] for e in res.events] == ["sandboxed"]


def test_cancel_reaches_the_original_runner(tmp_path):
    stream = _project_update(tmp_path, 10, "pause: {seconds: 60}")
    proc = subprocess.Popen([str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_with_original_runner(FTL2_SCRIPT=tmp_path / "none.py"))
    proc.stdin.write(stream)
    proc.stdin.close()
    buf = read_until(proc.stdout, b"runner_on_start")
    proc.send_signal(signal.SIGTERM)
    buf += proc.stdout.read()
    assert proc.wait(timeout=30) == 254 and proc.stderr.read() == b""
    r, _, _ = process(buf, tmp_path / "awx", ident=10)
    assert r.status == "canceled"
    # Nothing of the job is left running on the node (ansible-playbook under the original
    # runner's pexpect used to outlive it, paused, for good).
    pdd = str(tmp_path / "runner").encode()
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, pdd)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, [(p.name, (p / "cmdline").read_bytes()) for p in left]


def _cmdline_has(proc_dir: Path, needle: bytes) -> bool:
    try:
        return needle in (proc_dir / "cmdline").read_bytes()
    except OSError:
        return False


# --- malformed input: every path ends in a clean error the real Processor accepts ----------------

def _assert_clean_error(res: WorkerResult, tmp_path, words):
    assert res.rc == 0
    assert res.lines[-1] == {"eof": True}
    err = res.statuses[-1]
    assert err["status"] == "error"
    assert re.search(words, err["job_explanation"], re.I), err
    r, statuses, _ = process(res.stdout, tmp_path / "api")
    assert r.status == "error" and statuses[-1]["job_explanation"] == err["job_explanation"]


def test_empty_stdin(tmp_path):
    _assert_clean_error(run_worker(b"", tmp_path / "runner"), tmp_path, "Failed to JSON parse")


def test_non_json_line(tmp_path):
    _assert_clean_error(run_worker(b"this is not json\n", tmp_path / "runner"), tmp_path, "not a JSON line")


def test_stream_cut_before_eof(tmp_path):
    stream = make_stream({"ident": "x"}, None, tail=b"")
    _assert_clean_error(run_worker(stream, tmp_path / "runner"), tmp_path, "ended before")


def test_zipfile_length_too_long_and_too_short(tmp_path):
    z = make_zip([("env/extravars", 0o600, b"a: 1\n")])
    _assert_clean_error(run_worker(make_stream({}, z, zip_len=len(z) + 10), tmp_path / "a"), tmp_path, "zip")
    _assert_clean_error(run_worker(make_stream({}, z, zip_len=len(z) - 10), tmp_path / "b"), tmp_path, "zip|JSON")


def test_truncated_base64(tmp_path):
    z = make_zip([("env/extravars", 0o600, b"a: 1\n" * 100)])
    stream = make_stream({}, z, tail=b"")[:-40]
    _assert_clean_error(run_worker(stream, tmp_path / "runner"), tmp_path, "ended inside the zip")


def test_bad_zip(tmp_path):
    stream = make_stream({}, b"this is thirty bytes, no zip!!")
    _assert_clean_error(run_worker(stream, tmp_path / "runner"), tmp_path, "not a valid zip")


def test_zip_slip_entries_are_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    for name in ("../victim.txt", str(victim)):
        z = make_zip([(name, 0o644, b"pwned")])
        _assert_clean_error(run_worker(make_stream({}, z), tmp_path / "runner"), tmp_path, "refusing")
        assert not victim.exists()


def test_symlink_escape_is_refused_and_never_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    z = make_zip([
        ("project/evil", 0o120777, str(outside).encode()),
        ("project/evil/planted", 0o644, b"pwned"),
    ])
    _assert_clean_error(run_worker(make_stream({}, z), tmp_path / "runner"), tmp_path, "outside the private data dir")
    assert list(outside.iterdir()) == []
    # A symlink that stays inside is restored.
    z = make_zip([("env/extravars", 0o600, b"a: 1\n"), ("project/vars.yml", 0o120777, b"../env/extravars")])
    pdd = tmp_path / "ok"
    run_worker(make_stream({"ident": "ln"}, z), pdd)
    assert os.readlink(pdd / "project" / "vars.yml") == "../env/extravars"


def test_zip_bomb_is_refused_without_unpacking(tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("project/bomb.bin", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 24)
            for _ in range(128):  # 2 GiB of zeros
                f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 8 << 20
    pdd = tmp_path / "runner"
    _assert_clean_error(run_worker(make_stream({}, data), pdd), tmp_path, "zip bomb")
    assert not (pdd / "project" / "bomb.bin").exists()


def test_unzip_caps_are_configurable(tmp_path):
    z = make_zip([("project/data.txt", 0o644, os.urandom(4096))])
    env = worker_env(FTL2_UNZIP_MAX_BYTES=1000)
    _assert_clean_error(run_worker(make_stream({}, z), tmp_path / "runner", env=env), tmp_path, "over the limit")


def test_unwritable_private_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    _assert_clean_error(run_worker(make_stream({"ident": "x"}, None), blocker / "runner"), tmp_path, "private data dir")


def test_broken_job_settings_are_an_error_not_a_crash(tmp_path):
    z = make_zip([("env/extravars", 0o600, b"a: [unclosed\n")])
    _assert_clean_error(run_worker(make_stream({"ident": "y"}, z), tmp_path / "runner"), tmp_path, "env/extravars")


# --- keepalive, cancel, delete -----------------------------------------------------------------

def _slow_worker(tmp_path, *args, env=None):
    proc = subprocess.Popen(
        [str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or worker_env(),
    )
    proc.stdin.write(b'{"kwargs": {"ident": "slow"}}\n')
    proc.stdin.flush()
    return proc


@pytest.mark.parametrize("how", ["flag", "env"])
def test_keepalive_while_stdin_is_read(tmp_path, how):
    args, env = (["--keepalive-seconds", "1"], None) if how == "flag" else ([], worker_env(ANSIBLE_RUNNER_KEEPALIVE_SECONDS="0.5"))
    proc = _slow_worker(tmp_path, *args, env=env)
    # Wait for two keepalives while stdin stays open (no fixed sleep: a loaded machine starts
    # the worker late), then finish the stream.
    seen = b""
    deadline = time.monotonic() + 30
    while seen.count(b'"keepalive"') < 2 and time.monotonic() < deadline:
        if not select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        chunk = proc.stdout.read1(65536)
        if not chunk:
            break
        seen += chunk
    out, err = proc.communicate(b'{"eof": true}\n', timeout=20)
    out = seen + out
    assert err == b""
    lines, _ = parse_worker_stream(out)
    first_status = next(i for i, l in enumerate(lines) if "status" in l)
    keepalives = [l for l in lines[:first_status] if l.get("event") == "keepalive"]
    assert len(keepalives) >= 2, lines[:first_status]
    assert all(l == {"event": "keepalive", "counter": 0, "uuid": 0} for l in keepalives)
    # The real Processor ignores them.
    r, _, events = process(out, tmp_path / "api")
    assert r.status == "failed" and all(e["event"] != "keepalive" for e in events)


def test_no_keepalive_by_default(tmp_path):
    proc = _slow_worker(tmp_path)
    time.sleep(1.5)
    out, _ = proc.communicate(b'{"eof": true}\n', timeout=20)
    lines, _ = parse_worker_stream(out)
    assert not [l for l in lines if l.get("event") == "keepalive"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cancel_while_receiving(tmp_path, sig):
    proc = _slow_worker(tmp_path)
    # The worker creates its private data dir after installing its signal handlers.
    deadline = time.monotonic() + 30
    while not (tmp_path / "runner").is_dir() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    start = time.monotonic()
    out = proc.stdout.read()  # stdin still open: the worker must end on its own
    proc.stdin.close()
    err = proc.stderr.read()
    proc.wait(timeout=10)
    elapsed = time.monotonic() - start
    assert err == b""
    assert proc.returncode == 254
    assert elapsed < 2.0, f"cancel took {elapsed:.1f}s"
    lines, zipped = parse_worker_stream(out)
    assert [l for l in lines if "status" in l][-1]["status"] == "canceled"
    r, _, _ = process(out, tmp_path / "api", ident="slow")
    assert r.status == "canceled"
    # The artifacts AWX reads exist even though the job never fully arrived.
    names = set(zipfile.ZipFile(io.BytesIO(zipped)).namelist())
    assert {"status", "rc", "stdout"} <= names, names
    assert (tmp_path / "api" / "artifacts" / "slow" / "status").read_text() == "canceled"
    assert (tmp_path / "api" / "artifacts" / "slow" / "rc").read_text() == "254"


def test_delete_removes_the_dir_before_and_after(tmp_path):
    pdd = tmp_path / "runner"
    (pdd / "project").mkdir(parents=True)
    # A stale script from an earlier job would be picked up as the playbook if it survived.
    (pdd / "project" / "main.py").write_text("async def run(i, e, r):\n    return 0\n")
    stream = make_stream({"ident": "del", "playbook": "main.py"}, None)
    kept = run_worker(stream, pdd)
    assert kept.final_status == "successful"
    assert pdd.exists()
    deleted = run_worker(stream, pdd, "--delete")
    assert "main.py does not exist" in deleted.statuses[-1]["job_explanation"]
    assert not pdd.exists()


# --- worker --worker-info ----------------------------------------------------------------------

def test_worker_info_is_what_awx_parses(tmp_path):
    import re
    import yaml

    env = worker_env(HOME=tmp_path)
    out = subprocess.run([str(BIN), "worker", "--worker-info"], capture_output=True, env=env, timeout=30)
    assert out.returncode == 0 and out.stderr == b""
    text = out.stdout.decode()
    fixture = (FIXTURES / "worker-info.txt").read_text()
    shape = r"\{cpu_count: \d+, errors: \[\], mem_in_bytes: \d+, runner_version: 2\.4\.3, uuid: [0-9a-f-]{36}\}\n\n"
    assert re.fullmatch(shape, fixture) and re.fullmatch(shape, text), text
    info = yaml.safe_load(text)  # as AWX does
    assert info["runner_version"] == "2.4.3" and isinstance(info["runner_version"], str)
    assert info["cpu_count"] == os.cpu_count()
    assert info["mem_in_bytes"] > 0 and info["errors"] == []
    saved = (tmp_path / ".ansible_runner_uuid")
    assert saved.read_text() == info["uuid"]
    assert mode_of(saved) == 0o600
    again = subprocess.run([str(BIN), "worker", "--worker-info"], capture_output=True, env=env, timeout=30)
    assert yaml.safe_load(again.stdout)["uuid"] == info["uuid"]


# --- worker cleanup ----------------------------------------------------------------------------

def _age(path: Path, minutes: int):
    t = time.time() - minutes * 60
    os.utime(path, (t, t))


def cleanup(*args):
    return subprocess.run([str(BIN), "worker", "cleanup", *args], capture_output=True, text=True, timeout=60)


def test_cleanup_removes_old_dirs_only(tmp_path):
    old, recent, keep, live = (tmp_path / f"awx_{i}_{n}" for i, n in enumerate(["old", "new", "keepme", "live"]))
    for d in (old, recent, keep, live):
        (d / "artifacts").mkdir(parents=True)
    (live / "pid").write_text(str(os.getpid()))
    for d in (old, keep, live):
        _age(d, 120)
    pattern = str(tmp_path / "awx_*_*")
    # AWX passes all exclude strings as one argument containing spaces.
    out = cleanup(f"--file-pattern={pattern}", "--exclude-strings=keepme otherjob", "--grace-period=60")
    assert out.returncode == 0, out.stderr
    assert not old.exists() and recent.exists() and keep.exists() and live.exists()
    assert f"Removed 1 private data dir(s) in pattern {pattern}" in out.stdout
    assert "Excluding running project" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "(changed: True)"
    again = cleanup(f"--file-pattern={pattern}", "--exclude-strings", "keepme", "otherjob")
    assert again.stdout.strip().splitlines()[-1] == "(changed: False)"
    # Grace period 0: recent dirs go too; a dead job's pid file does not protect it.
    (live / "pid").write_text("999999")
    zero = cleanup(f"--file-pattern={pattern}", "--exclude-strings=keepme", "--grace-period=0")
    assert not recent.exists() and not live.exists() and keep.exists()
    assert zero.stdout.strip().endswith("(changed: True)")


def test_cleanup_refuses_system_dirs():
    for pattern in ("/", "/et?", "/usr"):
        out = cleanup(f"--file-pattern={pattern}")
        assert out.returncode == 1, pattern
        assert "Refusing to continue" in out.stderr
    assert Path("/etc").exists()


def test_cleanup_images_through_the_given_executable(tmp_path):
    # podman cannot run here; a recording stand-in shows which commands we would run.
    log = tmp_path / "calls"
    exe = tmp_path / "podman"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {log}\n[ "$1 $2" = "image prune" ] && echo "deadbeef"\nexit 0\n')
    exe.chmod(0o755)
    out = cleanup("--remove-images", "quay.io/x/ee:1", "quay.io/x/ee:2", "--image-prune",
                  f"--process-isolation-executable={exe}")
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == ["untag quay.io/x/ee:1", "untag quay.io/x/ee:2", "image prune -f"]
    assert "Removed 2 image(s)" in out.stdout and "Pruned images" in out.stdout
    assert out.stdout.strip().endswith("(changed: True)")


# --- CLI ---------------------------------------------------------------------------------------

def test_invoked_as_ansible_runner(tmp_path):
    link = tmp_path / "ansible-runner"
    link.symlink_to(BIN)
    out = subprocess.run([str(link), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "2.4.3\n"
    out = subprocess.run([str(link), "worker", "--version"], capture_output=True, text=True)
    assert out.stdout == "2.4.3\n"
    own = subprocess.run([str(BIN), "--version"], capture_output=True, text=True)
    assert own.stdout.startswith("ftl2-runner ")
    # The symlinked binary runs jobs the same way.
    res = run_worker_via(link, tmp_path)
    assert res.final_status == "failed"


def run_worker_via(exe, tmp_path):
    proc = subprocess.run([str(exe), "worker", f"--private-data-dir={tmp_path / 'r'}"],
                          input=make_stream({"ident": "ln"}, None), capture_output=True, env=worker_env())
    return WorkerResult(proc.returncode, proc.stdout, proc.stderr)


def test_unknown_flags_are_usage_errors_like_argparse():
    for args in (["worker", "--bogus"], ["--bogus"], ["worker", "cleanup", "--bogus"]):
        out = subprocess.run([str(BIN), *args], capture_output=True, text=True)
        assert out.returncode == 2, args
        assert "unrecognized arguments: --bogus" in out.stderr, out.stderr
        assert out.stdout == ""
    out = subprocess.run([str(BIN)], capture_output=True, text=True)
    assert out.returncode == 2 and "required" in out.stderr
    out = subprocess.run([str(BIN), "transmit", "x"], capture_output=True, text=True)
    assert out.returncode == 2 and "worker" in out.stderr
    # A mistyped command names every command there is.
    out = subprocess.run([str(BIN), "modulez"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert "invalid choice: 'modulez' (choose from 'worker', 'compile', 'play', 'modules', 'doc')" in out.stderr


def test_help_at_every_level():
    for args in ([], ["worker"], ["worker", "cleanup"]):
        out = subprocess.run([str(BIN), *args, "-h"], capture_output=True, text=True)
        assert out.returncode == 0 and "--help" in out.stdout, args
    out = subprocess.run([str(BIN), "worker", "-h"], capture_output=True, text=True)
    for flag in ("--private-data-dir", "--worker-info", "--delete", "--keepalive-seconds"):
        assert flag in out.stdout
    out = subprocess.run([str(BIN), "worker", "cleanup", "-h"], capture_output=True, text=True)
    for flag in ("--file-pattern", "--exclude-strings", "--remove-images", "--grace-period",
                 "--image-prune", "--process-isolation-executable"):
        assert flag in out.stdout


def test_debug_and_logfile_keep_stdout_clean(tmp_path):
    log = tmp_path / "runner.log"
    res = run_worker(make_stream({"ident": "dbg"}, None), tmp_path / "runner", "--debug", f"--logfile={log}")
    assert res.final_status == "failed"
    assert "dbg" in log.read_text()


@pytest.mark.parametrize("debug", [True, False])
def test_debug_logs_each_host_call_to_the_logfile(tmp_path, debug):
    script = tmp_path / "scripts" / "main.py"
    script.parent.mkdir()
    script.write_text(
        "async def run(inventory_path, extravars, runner):\n"
        "    async with runner.automation() as ftl:\n"
        "        await ftl.localhost.ping()\n"
        "        await ftl.localhost.command(cmd='echo hi')\n"
    )
    log = tmp_path / "runner.log"
    stream = make_stream({"ident": "dbg2"}, make_zip([("project/", 0o755, b"")]))
    args = ["--debug"] if debug else []
    res = run_worker(stream, tmp_path / "runner", *args, f"--logfile={log}", env=worker_env(FTL2_SCRIPT=script))
    assert res.final_status == "successful" and res.stderr == b""
    text = log.read_text()
    calls = re.findall(r"localhost: (\w+) (\w+) in [0-9.]+ s", text)
    assert calls == ([("ping", "ok"), ("command", "changed")] if debug else []), text
    assert "job dbg2 ended: successful" in text


def test_mutated_job_streams_all_end_as_awx_needs(tmp_path):
    """Seeded mutations of a whole job (kwargs, zip length, base64, the zip's inventory, settings
    and script, eof) through the real worker: each ends with only JSON lines, a status and eof,
    nothing on stderr (`tests/mutate_worker.py` runs more cases)."""
    from mutate_worker import base_stream, problem, run_cases

    # The unmutated job succeeds, so the mutations start from a stream that works.
    res = run_worker(base_stream(), tmp_path / "base", env=worker_env(FTL2_SCRIPT=""))
    assert res.final_status == "successful" and problem(res.rc, res.stdout, res.stderr) is None, res.stdout[-2000:]
    problems = run_cases(60, 2026, tmp_path)
    assert not problems, "\n".join(problems)
