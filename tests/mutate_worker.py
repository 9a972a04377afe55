"""Seeded mutations of a whole job stream, fed to the real worker: every case must end as AWX
needs it (only JSON lines on stdout, a status line, then `{"eof": true}`; nothing on stderr; an
exit within the time bound), whatever was broken: the kwargs line, the zip's length or base64,
the zip itself (inventory, settings, the script), the eof. CI runs a few dozen cases
(`test_worker_protocol.py`); for a deeper run:

    $FTL2_VENV/bin/python tests/mutate_worker.py --cases 2000 --seed 7

The unit tests (`cargo test mutated_`) cover the stream decoder, the zip and the inventory parsers
with thousands of cases each, in-process.
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import BIN, make_stream, make_zip, worker_env  # noqa: E402

SCRIPT = b"async def run(inventory_path, extravars, runner):\n    print('hi', extravars.get('x'))\n    return 0\n"
INVENTORY = b"[web]\nlocalhost ansible_connection=local\n[web:vars]\ntier=front\n"
SETTINGS = b"job_timeout: 30\nidle_timeout: 30\n"
INTERESTING = b'\0\xff\n\r\t "\'{}[]:,=#&*!|>-.0129Ae\\%'


KWARGS = {"ident": "mut", "playbook": "main.py", "inventory": "inventory/hosts"}


def entries() -> dict[str, bytes]:
    return {"project/main.py": SCRIPT, "inventory/hosts": INVENTORY, "env/settings": SETTINGS,
            "env/extravars": b"x: 1\n"}


def stream_of(kwargs: bytes, files: dict[str, bytes]) -> bytes:
    dirs = sorted({name.split("/")[0] + "/" for name in files})
    zipped = make_zip([(d, 0o755, b"") for d in dirs] + [(n, 0o644, data) for n, data in files.items()])
    return b'{"kwargs": ' + kwargs + b"}\n" + make_stream(None, zipped)


def base_stream() -> bytes:
    return stream_of(json.dumps(KWARGS).encode(), entries())


def mutated_stream(rng: random.Random) -> bytes:
    """Half the cases break the stream's bytes anywhere; the other half break one part (the
    kwargs, the inventory, the settings, the extravars or the script) inside a well-formed stream,
    so the parsers behind the framing get their share."""
    if rng.random() < 0.5:
        return mutate(rng, base_stream())
    files = entries()
    part = rng.choice(["kwargs", *files])
    kwargs = json.dumps(KWARGS).encode()
    if part == "kwargs":
        kwargs = mutate(rng, kwargs)
    else:
        files[part] = mutate(rng, files[part])
    return stream_of(kwargs, files)


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        op = rng.randrange(6)
        if op == 0 and out:
            i = min(at, len(out) - 1)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(at, len(out) - 1)] = rng.choice(INTERESTING)
        elif op == 2:
            del out[at:at + rng.randint(1, 16)]
        elif op == 3:
            chunk = out[at:at + rng.randint(1, 64)]
            to = rng.randrange(len(out) + 1)
            out[to:to] = chunk * rng.randint(1, 8)
        elif op == 4:
            del out[at:]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return bytes(out)


def problem(rc: int, stdout: bytes, stderr: bytes) -> str | None:
    """What is wrong with a worker run as AWX would see it, or None."""
    if stderr:
        return f"wrote to stderr: {stderr[:300]!r}"
    lines = stdout.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    parsed = []
    for line in lines:
        # The artifacts' base64 follows its {"zipfile": N} line directly, then the eof line.
        if parsed and "zipfile" in parsed[-1] and line.endswith(b'{"eof": true}'):
            parsed.append({"eof": True})
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            return f"a line that is not JSON: {line[:200]!r}"
        if not isinstance(obj, dict):
            return f"a line that is not an object: {line[:200]!r}"
        parsed.append(obj)
    if not parsed or parsed[-1] != {"eof": True}:
        return f"does not end with eof: {stdout[-300:]!r}"
    statuses = [o["status"] for o in parsed if "status" in o]
    if not statuses:
        return "no status line"
    # The exit code is the job's rc (as ansible-runner's); a refused stream is an error status
    # with exit code 0; a panic would be 101, a signal negative.
    if rc < 0 or rc == 101 or (statuses[-1] == "error" and rc != 0):
        return f"exit code {rc} with status {statuses[-1]}"
    return None


def final_status(stdout: bytes) -> str:
    for line in reversed(stdout.split(b"\n")):
        if line.startswith(b'{"status"'):
            return json.loads(line)["status"]
    return "none"


def run_cases(cases: int, seed: int, workdir: Path, timeout=60, tally=None) -> list[str]:
    rng = random.Random(seed)
    problems = []
    for case in range(cases):
        stream = mutated_stream(rng)
        pdd = workdir / f"case{case}"
        try:
            proc = subprocess.run([str(BIN), "worker", f"--private-data-dir={pdd}"], input=stream,
                                  capture_output=True, env=worker_env(FTL2_SCRIPT=""), timeout=timeout)
        except subprocess.TimeoutExpired:
            problems.append(f"seed {seed} case {case}: no end within {timeout} s")
            continue
        if tally is not None:
            status = final_status(proc.stdout)
            tally[status] = tally.get(status, 0) + 1
        why = problem(proc.returncode, proc.stdout, proc.stderr)
        if why:
            problems.append(f"seed {seed} case {case}: {why}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    tally = {}
    with tempfile.TemporaryDirectory() as d:
        problems = run_cases(a.cases, a.seed, Path(d), tally=tally)
    for p in problems:
        print(p)
    print(f"{a.cases} mutated streams, seed {a.seed}: {len(problems)} problems; final statuses {tally}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
