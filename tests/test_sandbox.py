"""The sandboxed script runtime, end to end: real worker, real guest component, real peer."""

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BIN, make_stream, make_zip, parse_worker_stream, process, read_until, run_worker, worker_env

INVENTORY = b"localhost ansible_connection=local\n"


def job(tmp_path, script: str, *, name="main.py", kwargs=None, settings=None, env=None, extra=(), as_playbook=False):
    """Run `script` as a job; returns (WorkerResult, job output text)."""
    entries = [("inventory/", 0o755, b""), ("inventory/hosts", 0o644, INVENTORY),
               ("env/extravars", 0o600, b"greeting: hello\n"), ("project/", 0o755, b"")]
    if settings:
        entries.append(("env/settings", 0o600, json.dumps(settings).encode()))
    entries.extend(extra)
    env = dict(env or {})
    kw = {"ident": "sbx", "inventory": "inventory/hosts"}
    if as_playbook:
        entries.append((f"project/{name}", 0o644, textwrap.dedent(script).encode()))
        kw["playbook"] = name
        env.setdefault("FTL2_SCRIPT", "")
    else:
        sdir = tmp_path / "scripts"
        sdir.mkdir(parents=True, exist_ok=True)
        (sdir / name).write_text(textwrap.dedent(script))
        env.setdefault("FTL2_SCRIPT", str(sdir / name))
    kw.update(kwargs or {})
    res = run_worker(make_stream(kw, make_zip(entries)), tmp_path / "runner", env=worker_env(**env), timeout=120)
    return res, output_text(res)


def output_text(res):
    return "\n".join(e["stdout"] for e in res.events if e.get("stdout"))


# --- the examples run unchanged -----------------------------------------------------------------

def test_seed_example_ping_on_localhost(tmp_path):
    res, out = job(tmp_path, """
        from ftl2 import automation

        async def run(inventory_path, extravars, on_event):
            async with automation(inventory=inventory_path, on_event=on_event) as ftl:
                result = await ftl.ping()
                print("ping says", result["ping"])
            return 0
    """)
    assert res.final_status == "successful" and res.rc == 0
    assert "ping says pong" in out
    names = [e["event"] for e in res.events]
    assert names.count("runner_on_ok") == 1 and names[-1] == "playbook_on_stats"


def test_runner_api_remote_style_run_on_every_host(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                results = await ftl.run_on("all", "ping")
                for r in results:
                    print(r.host, r.success, r.output["ping"])
                web = await ftl.localhost.command(cmd="echo " + extravars["greeting"])
                runner.emit_event({"msg": "custom: " + web["stdout"]})
                assert not runner.has_failures()
            return 0
    """)
    assert res.final_status == "successful", out
    assert "localhost True pong" in out
    assert "custom: hello" in out


def test_yml_playbook_as_script_with_noqa_trick(tmp_path):
    res, out = job(tmp_path, """
        hosts: all  # noqa
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.command(cmd="true")
            print("the yml ran")
            return 0
    """, name="site.yml", as_playbook=True)
    assert res.final_status == "successful", out
    assert "the yml ran" in out
    play = next(e for e in res.events if e["event"] == "playbook_on_play_start")
    assert play["event_data"]["playbook"] == "site.yml"


def test_sibling_modules_import_from_the_script_dir(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "helpers.py").write_text("def greet(x):\n    return 'hi ' + x\n")
    res, out = job(tmp_path, """
        import helpers
        async def run(inventory_path, extravars, runner):
            print(helpers.greet(extravars["greeting"]))
            return 0
    """)
    assert "hi hello" in out and res.final_status == "successful"


def test_scratch_files_are_shared_with_the_host(tmp_path):
    res, out = job(tmp_path, """
        import tempfile, pathlib
        async def run(inventory_path, extravars, runner):
            d = pathlib.Path(tempfile.mkdtemp())
            f = d / "note.txt"
            f.write_text("written in the sandbox")
            async with runner.automation() as ftl:
                r = await ftl.command(cmd=f"cat {f}")
            print("host read:", r["stdout"])
            return 0
    """)
    assert "host read: written in the sandbox" in out, out


def test_gathered_calls_overlap_and_blocks_stay_contiguous(tmp_path):
    res, out = job(tmp_path, """
        import asyncio
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await asyncio.gather(
                    ftl.command(cmd="sleep 2", _name="slow one"),
                    ftl.command(cmd="sleep 0.1", _name="fast one"),
                )
            return 0
    """)
    assert res.final_status == "successful", out
    ev = res.events
    tasks = [e for e in ev if e["event"] == "playbook_on_task_start"]
    assert [t["event_data"]["task"] for t in tasks] == ["slow one", "fast one"]
    # Each task's host events follow it directly and point at it.
    for t in tasks:
        i = ev.index(t)
        assert [e["event"] for e in ev[i + 1:i + 3]] == ["runner_on_start", "runner_on_ok"]
        assert all(e["parent_uuid"] == t["uuid"] for e in ev[i + 1:i + 3])
    # Both ran at the same time: the fast one started before the slow one ended.
    ok = {e["event_data"]["task"]: e["event_data"] for e in ev if e["event"] == "runner_on_ok"}
    assert ok["fast one"]["start"] < ok["slow one"]["end"]
    assert ok["fast one"]["end"] < ok["slow one"]["end"]
    assert [e["counter"] for e in res.events] == list(range(1, len(res.events) + 1))


# --- escapes are contained --------------------------------------------------------------------

ESCAPES = {
    "etc_passwd": "open('/etc/passwd').read()",
    "list_root": "print(os.listdir('/'))",
    "private_data_dir": "open(inventory_path).read()",
    "pdd_env": "open(os.path.join(os.path.dirname(os.path.dirname(inventory_path)), 'env', 'extravars')).read()",
    "socket": "s = socket.socket(); s.connect(('127.0.0.1', 22))",
    "subprocess": "subprocess.run(['id'])",
    "fork": "os.fork()",
    "write_script_dir": "open(__file__ + '.evil', 'w').write('x')",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_attempts_are_denied(tmp_path, name):
    res, out = job(tmp_path, f"""
        import os, socket, subprocess
        async def run(inventory_path, extravars, runner):
            try:
                {ESCAPES[name]}
            except BaseException as e:
                print("DENIED", type(e).__name__)
                return 0
            print("ESCAPED")
            return 0
    """)
    assert res.final_status == "successful"
    if name == "list_root":
        listing = next(l for l in out.splitlines() if l.startswith("[") or l.startswith("DENIED"))
        assert "etc" not in listing and "root" not in listing and "proc" not in listing, listing
    else:
        assert "DENIED" in out and "ESCAPED" not in out, out
    assert not (tmp_path / "scripts" / "main.py.evil").exists()


def test_links_in_scratch_lead_no_module_out_of_it(tmp_path):
    """A script's symbolic links in its scratch directory (made inside the sandbox) lead no
    controller-side file access out: fetch does not create the directories or the file behind a
    link out (it used to create the parents outside before refusing the final write), copy and
    template do not read through one; links that stay inside still work."""
    outside = tmp_path / "outside"
    res, out = job(tmp_path, f"""
        import os, tempfile
        async def run(inventory_path, extravars, runner):
            scratch = tempfile.gettempdir()
            up = "../" * 12
            os.symlink(up + "{outside.relative_to('/')}", os.path.join(scratch, "out"))
            os.symlink(up + "etc/passwd", os.path.join(scratch, "passwd"))
            with open(os.path.join(scratch, "real.txt"), "w") as f:
                f.write("{{{{ inventory_hostname }}}} inside")
            os.symlink("real.txt", os.path.join(scratch, "inner"))
            async with runner.automation(fail_fast=False) as ftl:
                for dest in ("out/made/", "out/file"):
                    r = await ftl.local.fetch(src="/etc/hostname", dest=os.path.join(scratch, dest), flat=True)
                    print("FETCH", dest, not r.get("failed"), r.get("msg"))
                r = await ftl.local.copy(src=os.path.join(scratch, "passwd"), dest="/tmp/ftl2-leak-{tmp_path.name}")
                print("COPY", not r.get("failed"), r.get("msg"))
                r = await ftl.local.template(src=os.path.join(scratch, "passwd"), dest="/tmp/ftl2-leak-{tmp_path.name}")
                print("TEMPLATE", not r.get("failed"), r.get("msg"))
                r = await ftl.local.copy(src=os.path.join(scratch, "inner"), dest="{tmp_path}/copied")
                print("INNER", not r.get("failed"))
            return 0
    """)
    assert not outside.exists(), list(outside.rglob("*"))
    assert not Path(f"/tmp/ftl2-leak-{tmp_path.name}").exists()
    lines = [line for line in out.splitlines() if line.split(" ")[0] in ("FETCH", "COPY", "TEMPLATE", "INNER")]
    assert len(lines) == 5, out
    assert all(" False " in line for line in lines[:4]), lines
    # Refused for leading out, not for naming a place outside scratch: fetch's own words.
    assert lines[0].endswith("Failed to fetch the file.") and lines[1].endswith("Failed to fetch the file."), lines
    assert "leads outside" in lines[2] and "leads outside" in lines[3], lines
    assert lines[4] == "INNER True" and (tmp_path / "copied").read_text() == "{{ inventory_hostname }} inside"


def test_environment_is_not_inherited(tmp_path):
    res, out = job(tmp_path, """
        import os
        async def run(inventory_path, extravars, runner):
            print("ENV", sorted(os.environ))
            return 0
    """, kwargs={"envvars": {"JOB_ID": "9", "MY_SECRET_TOKEN": "s3cr3t"}}, env={"LEAKME": "x"})
    line = next(l for l in out.splitlines() if l.startswith("ENV"))
    for leaked in ("PATH", "LEAKME", "MY_SECRET_TOKEN", "JOB_ID", "FTL2_GUEST"):
        assert f"'{leaked}'" not in line, line
    assert "s3cr3t" not in res.stdout.decode()


def test_infinite_loop_hits_the_job_timeout(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            while True:
                pass
    """, settings={"job_timeout": 2})
    assert res.final_status == "timeout" and res.rc == 254
    assert "timeout" in res.statuses[-1]["job_explanation"]
    r, _, _ = process(res.stdout, tmp_path / "api")
    assert r.status == "timeout"


def test_sleeping_script_hits_the_job_timeout(tmp_path):
    res, _ = job(tmp_path, """
        import asyncio
        async def run(inventory_path, extravars, runner):
            await asyncio.sleep(3600)
    """, settings={"job_timeout": 1})
    assert res.final_status == "timeout" and res.rc == 254


@pytest.mark.parametrize("text,why", [
    (b'{"job_timeout": 1e400}', "out of range"), (b'{"job_timeout": 18446744073709551616}', "out of range"),
    (b'{"job_timeout": 9223372036854775807}', "out of range"), (b'{"idle_timeout": 1e20}', "out of range"),
    (b'{"job_timeout": -1}', "negative"), (b'{"job_timeout": "soon"}', "not a number"),
    (b'job_timeout: .inf', "out of range"), (b'{"job_timeout": true}', "must be a number"),
])
def test_out_of_range_timeouts_are_a_clear_error_never_a_panic(tmp_path, text, why):
    # Each of these once overflowed the clock arithmetic (a panic, and a blank line AWX could
    # not parse); the stream's framing is checked line by line by the test harness.
    res, _ = job(tmp_path / "j", """
        async def run(inventory_path, extravars, runner):
            return 0
    """, extra=[("env/settings", 0o600, text)])
    assert res.final_status == "error", res.statuses
    explanation = res.statuses[-1].get("job_explanation", "")
    assert why in explanation and "timeout" in explanation, explanation
    assert res.lines[-1] == {"eof": True}


@pytest.mark.parametrize("body,rc,said", [
    ("return 2**200", 1, "run() returned 160693804425899027554196209234116260252220299378279283530..., which is "
                         "out of range for an exit code"),
    ("import sys; sys.exit(2**40)", 1, "the script exited with 1099511627776, which is out of range"),
    ("import os; os._exit(7)", 7, None),
    ("import os; os._exit(2**40)", 1, "os._exit() was given 1099511627776, which is out of range"),
    ("return {'done': True}", 0, "[WARNING]: run() returned dict {'done': True}, not an exit code; the job's rc is 0"),
    ("runner.emit_event({'blob': 'x' * (200 << 20)})", 1, "the event is 200.0 MiB of JSON; an event may be at most 16 MiB"),
])
def test_guest_endings_are_explained_in_words(tmp_path, body, rc, said):
    res, out = job(tmp_path, f"""
        async def run(inventory_path, extravars, runner):
            {body}
    """)
    assert res.final_status == ("successful" if rc == 0 else "failed"), (res.statuses, out[-2000:])
    assert res.statuses[-1].get("rc", res.rc) == rc or f"rc={rc}" in res.statuses[-1].get("job_explanation", ""), \
        res.statuses
    if said:
        assert said in out, out[-2000:]
    text = res.stdout.decode()
    assert "wasm backtrace" not in text and "panicked" not in text, text[-2000:]


def test_memory_bomb_is_stopped_by_the_cap(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            blocks = []
            while True:
                blocks.append(bytearray(64 << 20))
    """, env={"FTL2_MEMORY_LIMIT": "256M"})
    assert res.final_status == "failed" and res.rc != 0
    # Said in words, in the job output and as the explanation: which cap, and how to raise it.
    why = "the script ran out of memory: it reached its cap of 256 MiB (FTL2_MEMORY_LIMIT)"
    assert res.statuses[-1]["job_explanation"] == why and f"ERROR! {why}" in out, out


def test_allocating_4_gib_fails_cleanly(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            data = bytearray(4 * 1024 ** 3)
            return 0
    """)
    assert res.final_status == "failed"
    assert "MemoryError" in out or "OverflowError" in out or "memory" in res.statuses[-1]["job_explanation"], out


def test_printing_100_mb_is_capped(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            line = "x" * 1000
            for _ in range(100_000):
                print(line)
            return 0
    """)
    assert res.final_status == "successful"
    assert len(res.stdout) < 16 << 20, f"stream is {len(res.stdout)} bytes"
    assert "dropped" in out and "lines" in out


def test_a_million_custom_events_are_capped(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            for i in range(1_000_000):
                runner.emit_event({"msg": f"event {i}"})
            return 0
    """, env={"FTL2_MAX_OUTPUT_LINES": "1000"})
    assert res.final_status == "successful"
    assert len(res.stdout) < 16 << 20
    assert "event 999" in out and "event 1000\n" not in out
    assert "dropped 999000 lines" in out


# --- script failures are job failures ----------------------------------------------------------

@pytest.mark.parametrize("source,words,rc", [
    ("async def run(a, b, c)\n    return 0\n", "SyntaxError", 1),
    ("run = 1\n", "defines no run()", 1),
    ("async def run(a, b, c):\n    raise ValueError('kaboom')\n", "ValueError: kaboom", 1),
    ("import sys\nasync def run(a, b, c):\n    sys.exit(3)\n", "rc=3", 3),
    ("import nosuchmodule\nasync def run(a, b, c):\n    return 0\n", "ModuleNotFoundError", 1),
])
def test_script_failures(tmp_path, source, words, rc):
    res, out = job(tmp_path, source)
    assert res.final_status == "failed" and res.rc == rc
    assert words in out + res.statuses[-1].get("job_explanation", ""), out
    r, _, _ = process(res.stdout, tmp_path / "api")
    assert r.status == "failed"


def test_traceback_reaches_the_job_output(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.command(cmd="false")
            return 0
    """)
    assert res.final_status == "failed" and res.rc == 1
    assert "Traceback" in out and "AutomationError" in out, out


def test_non_int_return_means_zero_and_failed_hosts_mean_two(tmp_path):
    res, _ = job(tmp_path, "async def run(a, b, c):\n    return 'done'\n")
    assert res.final_status == "successful" and res.rc == 0
    res, out = job(tmp_path / "b", """
        async def run(inventory_path, extravars, runner):
            async with runner.automation(fail_fast=False) as ftl:
                r = await ftl.command(cmd="false")
                print("failed?", ftl.failed, r["rc"])
            return 0
    """)
    assert res.final_status == "failed" and res.rc == 2, out
    assert "failed? True 1" in out


# --- cancel ------------------------------------------------------------------------------------

def start_running_script(tmp_path, body, ident):
    """A worker whose script prints `started` and then runs `body`; returns once it is running,
    with the worker process and the stream read so far."""
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text(
        f"import asyncio\nasync def run(a, b, c):\n    print('started', flush=True)\n    {body}\n"
    )
    stream = make_stream({"ident": ident}, make_zip([("project/", 0o755, b"")]))
    proc = subprocess.Popen(
        [str(BIN), "worker", f"--private-data-dir={tmp_path / 'runner'}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=worker_env(FTL2_SCRIPT=sdir / "main.py"),
    )
    proc.stdin.write(stream)
    proc.stdin.close()
    return proc, read_until(proc.stdout, b"started")


@pytest.mark.parametrize("body", ["await asyncio.sleep(60)", "while True: pass"])
def test_sigterm_cancels_a_running_script(tmp_path, body):
    proc, buf = start_running_script(tmp_path, body, "cancel")
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rest = proc.stdout.read()
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 254 and proc.stderr.read() == b""
    lines, _ = parse_worker_stream(buf + rest)
    assert [l["status"] for l in lines if "status" in l][-1] == "canceled"


@pytest.mark.parametrize("body", ["await asyncio.sleep(60)", "while True: print('x')"])
def test_closed_output_stream_cancels_the_job(tmp_path, body):
    """If the controller stops reading (Receptor gone), the job stops instead of running blind."""
    proc, _ = start_running_script(tmp_path, body, "orphan")
    proc.stdout.close()
    assert proc.wait(timeout=30) == 254
    assert proc.stderr.read() == b""
    artifacts = tmp_path / "runner" / "artifacts" / "orphan"
    assert (artifacts / "status").read_text() == "canceled"
    assert (artifacts / "rc").read_text() == "254"


def test_idle_timeout_stops_a_silent_job(tmp_path):
    res, out = job(tmp_path, """
        import asyncio
        async def run(inventory_path, extravars, runner):
            print("one line, then silence")
            await asyncio.sleep(3600)
    """, settings={"idle_timeout": 1})
    assert res.final_status == "timeout" and res.rc == 254
    assert "idle" in res.statuses[-1]["job_explanation"]
    assert "one line, then silence" in out


def test_uncompiled_guest_is_compiled_once_into_the_cache(tmp_path):
    from conftest import GUEST
    wasm = GUEST.with_suffix(".wasm")
    assert wasm.is_file(), wasm
    cache = tmp_path / "cache"
    env = {"FTL2_GUEST": str(wasm), "FTL2_CACHE_DIR": str(cache)}
    res, out = job(tmp_path / "a", "async def run(a, b, c):\n    print('ran')\n    return 0\n", env=env)
    assert res.final_status == "successful" and "ran" in out
    artifacts = list(cache.glob("*-wasmtime46.0.3-*.cwasm"))
    assert len(artifacts) == 1, list(cache.iterdir())
    stamp = artifacts[0].stat().st_mtime_ns
    res, _ = job(tmp_path / "b", "async def run(a, b, c):\n    return 0\n", env=env)
    assert res.final_status == "successful"
    assert artifacts[0].stat().st_mtime_ns == stamp and len(list(cache.iterdir())) == 1


def test_scripts_next_to_the_private_data_dir_are_refused(tmp_path):
    # A script whose directory contains the private data dir would expose the credentials.
    (tmp_path / "main.py").write_text("async def run(a, b, c):\n    return 0\n")
    stream = make_stream({"ident": "x"}, None)
    res = run_worker(stream, tmp_path / "runner", env=worker_env(FTL2_SCRIPT=tmp_path / "main.py"))
    assert res.final_status == "failed" and "expose the job's private data" in res.statuses[-1]["job_explanation"]


def test_scratch_directory_is_capped(tmp_path):
    res, out = job(tmp_path, """
        import tempfile, os
        async def run(inventory_path, extravars, runner):
            d = tempfile.mkdtemp()
            block = b"x" * (1 << 20)
            with open(os.path.join(d, "big"), "wb") as f:
                for _ in range(200):
                    f.write(block)
                    f.flush()
            return 0
    """, env={"FTL2_SCRATCH_LIMIT": "20M"})
    assert res.final_status == "failed"
    assert "scratch directory grew over its cap" in res.statuses[-1]["job_explanation"]
    assert "scratch directory grew over its cap" in out


def test_prints_stay_in_order_with_task_events(tmp_path):
    res, _ = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                print("before")
                await ftl.ping()
                print("after")
            return 0
    """)
    seq = [e["stdout"] if e["event"] == "verbose" else e["event"] for e in res.events]
    assert seq.index("before") < seq.index("runner_on_ok") < seq.index("after"), seq


def test_admin_can_deny_the_local_connection(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation(fail_fast=False) as ftl:
                r = await ftl.command(cmd="cat /etc/hostname")
                print("local:", r.get("msg"))
            return 0
    """, env={"FTL2_LOCAL_CONNECTION": "deny"})
    assert "FTL2_LOCAL_CONNECTION=deny" in out
    assert res.final_status == "failed" and res.rc == 4  # the controller is unreachable for the job


def test_credential_files_are_removed_after_reading(tmp_path):
    res, out = job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                import os
                base = os.path.dirname(os.path.dirname(inventory_path))
                r = await ftl.shell(cmd=f"ls {base}/env")
                print("env dir:", r["stdout"].split())
            return 0
    """, extra=[("env/ssh_key", 0o600, b"-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"), ("env/passwords", 0o600, b"{}")])
    line = next(l for l in out.splitlines() if l.startswith("env dir:"))
    assert "ssh_key" not in line and "passwords" not in line and "extravars" in line, line
