"""Shared helpers for the end-to-end tests.

Every test drives the real `ftl2-runner` binary and, on the controller side, the real
ansible-runner 2.4.3 from PyPI (`transmit` to build jobs, `process` to read our stream, through
the same Python API AWX calls). Nothing here mocks the peer.
"""

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path(os.environ.get("FTL2_FIXTURES", "/work/shared/fixtures"))


def _binary() -> Path:
    if os.environ.get("FTL2_RUNNER_BIN"):
        return Path(os.environ["FTL2_RUNNER_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "ftl2-runner"


BIN = _binary()
GUEST = Path(os.environ.get("FTL2_GUEST") or BIN.parent.parent / "guest" / "ftl2-guest.cwasm")
VENV_BIN = Path(sys.executable).parent
ANSIBLE_RUNNER = VENV_BIN / "ansible-runner"


@pytest.fixture(scope="session", autouse=True)
def _require_tools():
    # Missing tools fail loudly: a skipped peer test would pass for nothing.
    assert BIN.is_file(), f"ftl2-runner binary not built at {BIN} (run cargo build)"
    assert ANSIBLE_RUNNER.is_file(), f"ansible-runner not installed in {VENV_BIN}"
    assert GUEST.is_file(), f"guest component not built at {GUEST} (run guest-python/build.sh + ftl2-runner compile)"
    out = subprocess.run([ANSIBLE_RUNNER, "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == "2.4.3", f"need ansible-runner 2.4.3, got {out.stdout!r}"


def worker_env(**extra):
    """A clean environment for the worker, like a container's."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "FTL2_GUEST": str(GUEST),
    }
    if os.environ.get("FTL2_LOG_FILE"):  # to debug a test: the worker's diagnostics log
        env["FTL2_LOG_FILE"] = os.environ["FTL2_LOG_FILE"]
    env.update({k: str(v) for k, v in extra.items()})
    return env


class WorkerResult:
    """What a worker run produced: raw stdout/stderr, exit code, and the parsed stream."""

    def __init__(self, proc_rc, stdout, stderr):
        self.rc = proc_rc
        self.stdout = stdout
        self.stderr = stderr
        self.lines, self.zip_bytes = parse_worker_stream(stdout)

    @property
    def statuses(self):
        return [l for l in self.lines if "status" in l]

    @property
    def final_status(self):
        return self.statuses[-1]["status"]

    @property
    def events(self):
        return [l for l in self.lines if "event" in l and l.get("event") != "keepalive"]

    def artifacts(self):
        assert self.zip_bytes is not None, "no artifacts zip in the stream"
        return zipfile.ZipFile(io.BytesIO(self.zip_bytes))


def parse_worker_stream(data: bytes):
    """Check the stream's framing exactly as AWX needs it and return (json lines, zip bytes).

    Every line is a JSON object; a `{"zipfile": N}` line is followed by base64 of exactly N bytes
    and immediately by `{"eof": true}\\n`; eof is the last thing; nothing else, ever.
    """
    lines = []
    zip_bytes = None
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        assert nl != -1, f"unterminated last line: {data[pos:pos+200]!r}"
        raw = data[pos:nl]
        obj = json.loads(raw)  # raises on any non-JSON byte
        assert isinstance(obj, dict), raw
        lines.append(obj)
        pos = nl + 1
        if "zipfile" in obj:
            eof_at = data.find(b'{"eof": true}\n', pos)
            assert eof_at != -1, "no eof after the artifacts zip"
            b64 = data[pos:eof_at]
            assert b"\n" not in b64, "newline inside or after the artifacts base64"
            zip_bytes = base64.b64decode(b64, validate=True)
            assert len(zip_bytes) == obj["zipfile"], "zipfile size is not the raw zip size"
            pos = eof_at
        if obj.get("eof") is True:
            assert pos == len(data), f"bytes after eof: {data[pos:pos+200]!r}"
    assert lines and lines[-1] == {"eof": True}, "the stream does not end with eof"
    return lines, zip_bytes


def read_until(out, marker: bytes) -> bytes:
    """Read a running worker's stdout until `marker` shows up; fails if the stream ends first."""
    buf = b""
    while marker not in buf:
        chunk = out.read1(65536)
        assert chunk, buf
        buf += chunk
    return buf


def run_worker(stream: bytes, pdd: Path | None, *args, env=None, timeout=60, binary=None, user=None) -> WorkerResult:
    """Run the worker on `stream`; as `user` (an unprivileged EE user) when given."""
    cmd = [str(binary or BIN), "worker"]
    if pdd is not None:
        cmd.append(f"--private-data-dir={pdd}")
    cmd += list(args)
    as_user = {"user": user, "group": user, "extra_groups": []} if user else {}
    proc = subprocess.run(cmd, input=stream, capture_output=True, env=env or worker_env(), timeout=timeout, **as_user)
    res = WorkerResult(proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr == b"", f"worker wrote to stderr: {proc.stderr[:2000]!r}"
    return res


def transmit(pdd: Path, *args) -> bytes:
    """Build a job the way the controller does: real `ansible-runner transmit`."""
    proc = subprocess.run([str(ANSIBLE_RUNNER), "transmit", str(pdd), *args], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def transmit_api(pdd: Path, **params) -> bytes:
    """Build a job the way AWX does: the ansible-runner Python API with streamer="transmit"."""
    import tempfile

    import ansible_runner

    with tempfile.TemporaryFile() as out:  # AWX hands it a socket file; a BytesIO has no name
        ansible_runner.interface.run(private_data_dir=str(pdd), streamer="transmit", _output=out, **params)
        out.seek(0)
        return out.read()


def process(stream: bytes, outdir: Path, ident=None):
    """Read our stream with ansible-runner's Processor through the Python API, as AWX does.

    Returns (runner, status_calls, events); runner.status is what AWX would record.
    """
    import ansible_runner

    statuses, events = [], []

    def status_handler(data, runner_config):
        statuses.append(dict(data))

    def event_handler(data):
        events.append(dict(data))
        return True

    kwargs = dict(
        streamer="process",
        quiet=True,
        _input=io.BytesIO(stream),
        private_data_dir=str(outdir),
        status_handler=status_handler,
        event_handler=event_handler,
    )
    if ident is not None:
        kwargs["ident"] = ident
    r = ansible_runner.interface.run(**kwargs)
    return r, statuses, events


def process_cli(stream: bytes, outdir: Path, ident: str):
    """`ansible-runner process OUTDIR -i IDENT < stream`; returns the CompletedProcess."""
    return subprocess.run(
        [str(ANSIBLE_RUNNER), "process", str(outdir), "-i", ident],
        input=stream, capture_output=True, timeout=60,
    )


def make_stream(kwargs: dict | None, zip_bytes: bytes | None, *, zip_len=None, tail=b'{"eof": true}\n') -> bytes:
    out = b""
    if kwargs is not None:
        out += json.dumps({"kwargs": kwargs}).encode() + b"\n"
    if zip_bytes is not None:
        n = len(zip_bytes) if zip_len is None else zip_len
        out += json.dumps({"zipfile": n}).encode() + b"\n" + base64.b64encode(zip_bytes)
    return out + tail


def make_zip(entries) -> bytes:
    """entries: (name, mode, data) with mode including the file type bits when not a regular file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, mode, data in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            if not (mode & 0o170000):
                mode |= 0o040000 if name.endswith("/") else 0o100000
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


def simple_pdd(root: Path, playbook_text: str | None = None) -> Path:
    """A small private data dir like the fixture's simple one."""
    pdd = root / "pdd-src"
    (pdd / "env").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project").mkdir()
    (pdd / "env" / "extravars").write_text("---\ngreeting: hello-from-extravars\n")
    (pdd / "inventory" / "hosts").write_text(
        'localhost ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"\n'
    )
    (pdd / "project" / "ping.yml").write_text(
        playbook_text or "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n"
    )
    return pdd
