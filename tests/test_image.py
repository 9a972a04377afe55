"""The execution environment image. First, the binary fits the EE it is installed into: the
current awx-ee image is CentOS Stream 9 (glibc 2.34), and RHEL 9 based EEs have the same glibc; a
binary that asks for a newer glibc symbol would not start there at all. Then the image itself,
built from the Dockerfile with podman and run as Receptor runs it."""

import re
import shutil
import subprocess
import time

import pytest
from conftest import BIN, GUEST, ROOT, parse_worker_stream, process, transmit_api

EE_GLIBC = (2, 34)


def test_binary_needs_no_glibc_newer_than_the_ee_has():
    out = subprocess.run(["objdump", "-T", str(BIN)], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", out)}
    assert versions, "no glibc symbol versions found: is this a dynamically linked binary?"
    assert max(versions) <= EE_GLIBC, f"needs glibc {'.'.join(map(str, max(versions)))}"


# --- The image itself, built and run as Receptor's podman work type runs it ------------------
# These machines cannot pull from registries: the base is an EE-like Debian image made by
# tests/ee_base.sh (mmdebstrap), and the Dockerfile takes it and our prebuilt binary and guest
# as build arguments. podman needs runc and cgroupfs here (crun refuses the cgroup setup).

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
IMAGE = "localhost/ftl2-ee:test"


@pytest.fixture(scope="module")
def ee_image(tmp_path_factory):
    for tool in ("podman", "runc", "mmdebstrap", "objcopy"):
        assert shutil.which(tool), f"{tool} is not installed (.ci/setup.sh installs it)"
    base = subprocess.run(["bash", str(ROOT / "tests" / "ee_base.sh")], capture_output=True, text=True)
    assert base.returncode == 0, base.stderr[-3000:]
    ctx = tmp_path_factory.mktemp("image")
    (ctx / "prebuilt").mkdir()
    shutil.copy(ROOT / "Dockerfile", ctx / "Dockerfile")
    # The test build's binary without its debug sections; the guest precompiled by that binary.
    subprocess.run(["objcopy", "--strip-debug", str(BIN), str(ctx / "prebuilt" / "ftl2-runner")], check=True)
    shutil.copy(GUEST, ctx / "prebuilt" / "guest.cwasm")
    built = subprocess.run(PODMAN + ["build", "-q", "--network", "none", *LIMITS,
                                     "--build-arg", f"EE_BASE={base.stdout.strip()}",
                                     "--build-arg", "ARTIFACTS=prebuilt", "-t", IMAGE, str(ctx)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    yield IMAGE
    # The base stays cached for the next run; this build's layers (~130 MB) do not.
    subprocess.run(PODMAN + ["rmi", "-f", IMAGE], capture_output=True)
    subprocess.run(PODMAN + ["image", "prune", "-f"], capture_output=True)


def podman_run(image, *command, opts=()):
    """`podman run -i --rm --network none [opts] IMAGE command...`, as Receptor's podman work type."""
    return PODMAN + ["run", "-i", "--rm", "--network", "none", *LIMITS, *opts, image, *command]


def in_image(image, *command, stdin=None, opts=(), timeout=120):
    return subprocess.run(podman_run(image, *command, opts=opts), input=stdin, capture_output=True, timeout=timeout)


def worker_in_image(image, stream):
    proc = in_image(image, "ansible-runner", "worker", "--private-data-dir=/runner", stdin=stream)
    lines, _ = parse_worker_stream(proc.stdout)  # every stdout line is protocol JSON
    assert lines[-1] == {"eof": True}, proc.stdout[-2000:]
    return proc


def script_job(tmp_path, script: str, ident: int, hostvars: str = "", envvars=None) -> bytes:
    pdd = tmp_path / "src"
    for d in ("project", "inventory"):
        (pdd / d).mkdir(parents=True)
    (pdd / "inventory" / "hosts").write_text(f"localhost ansible_connection=local {hostvars}\n")
    (pdd / "project" / "site.py").write_text(script)
    return transmit_api(pdd, ident=ident, playbook="site.py", inventory="inventory/hosts", envvars=envvars or {})


def test_the_image_answers_worker_info_as_its_non_root_user(ee_image):
    who = in_image(ee_image, "id", "-u")
    assert who.stdout.decode().strip() == "1000"
    info = in_image(ee_image, "ansible-runner", "worker", "--worker-info")
    assert info.returncode == 0 and info.stderr == b"", info
    import yaml

    report = yaml.safe_load(info.stdout)
    assert report["errors"] == [] and report["runner_version"] == "2.4.3", report
    assert report["cpu_count"] >= 1 and report["mem_in_bytes"] > 0


def test_the_image_runs_a_project_script_as_receptor_runs_it(ee_image, tmp_path):
    """transmit -> podman run -i ... worker -> process: the script runs as uid 1000 with the
    precompiled guest, /opt cannot be written, and AWX reads a successful job back."""
    stream = script_job(tmp_path, """
async def run(inventory_path, extravars, runner):
    async with runner.automation(fail_fast=False) as ftl:
        who = await ftl.run_on("localhost", "command", cmd="id -u")
        print("job ran as uid", who[0].output["stdout"])
        opt = await ftl.run_on("localhost", "file", path="/opt/ftl2/planted", state="touch", _ignore_errors=True)
        print("write to /opt:", "refused" if not opt[0].success else "allowed")
        made = await ftl.run_on("localhost", "file", path="/runner/made-here", state="touch")
        assert made[0].success, made[0].error
    return 0
""", 21)
    proc = worker_in_image(ee_image, stream)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr[-2000:]
    r, statuses, events = process(proc.stdout, tmp_path / "awx", ident=21)
    assert r.status == "successful", statuses
    out = "\n".join(e.get("stdout", "") for e in events)
    assert "job ran as uid 1000" in out and "write to /opt: refused" in out, out
    assert any(e["event"] == "playbook_on_stats" for e in events)
    artifacts = tmp_path / "awx" / "artifacts" / "21"
    assert (artifacts / "rc").read_text() == "0" and (artifacts / "status").read_text() == "successful"


def test_a_derived_image_runs_its_baked_script(ee_image, tmp_path):
    """An admin's image: `COPY main.py /opt/ftl2/main.py` on ours; a job template's YAML
    playbook then runs the baked script."""
    ctx = tmp_path / "derived"
    ctx.mkdir()
    (ctx / "main.py").write_text(
        "async def run(inventory_path, extravars, runner):\n"
        "    async with runner.automation() as ftl:\n"
        "        await ftl.run_on('localhost', 'ping')\n"
        "    print('baked script ran')\n"
        "    return 0\n")
    (ctx / "Containerfile").write_text(f"FROM {ee_image}\nCOPY main.py /opt/ftl2/main.py\n")
    made = subprocess.run(PODMAN + ["build", "-q", "--network", "none", *LIMITS, "-t", "localhost/ftl2-ee-baked:test",
                                    str(ctx)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    try:
        pdd = tmp_path / "src"
        (pdd / "project").mkdir(parents=True)
        (pdd / "project" / "site.yml").write_text("- hosts: all\n  tasks:\n    - ping:\n")
        stream = transmit_api(pdd, ident=27, playbook="site.yml", inventory="localhost ansible_connection=local")
        proc = worker_in_image("localhost/ftl2-ee-baked:test", stream)
        r, statuses, events = process(proc.stdout, tmp_path / "awx", ident=27)
        assert r.status == "successful", statuses
        assert "baked script ran" in "\n".join(e.get("stdout", "") for e in events)
    finally:
        subprocess.run(PODMAN + ["rmi", "-f", "localhost/ftl2-ee-baked:test"], capture_output=True)


@pytest.mark.parametrize("home", ["unset", "unwritable", "read-only root"])
def test_the_image_runs_ansible_modules_wherever_home_is(ee_image, tmp_path, home):
    """A real (not native) module needs the EE's ansible-core, whose local temp dir defaults to
    ~/.ansible/tmp: with HOME unset, not writable, or the whole root read-only, the job still
    runs it (the helper's temp files go to a directory of its own)."""
    stream = script_job(tmp_path, """
async def run(inventory_path, extravars, runner):
    async with runner.automation() as ftl:
        r = await ftl.run_on("localhost", "getent", database="passwd", key="runner")
        print("getent:", r[0].output["ansible_facts"]["getent_passwd"]["runner"][4])
    return 0
""", 24, hostvars="ansible_python_interpreter=/usr/bin/python3")
    opts = {"unset": ["--env", "HOME="], "unwritable": ["--env", "HOME=/nonexistent"],
            "read-only root": ["--read-only", "--tmpfs", "/runner:mode=0777", "--tmpfs", "/tmp:mode=1777"]}[home]
    proc = in_image(ee_image, "ansible-runner", "worker", "--private-data-dir=/runner", stdin=stream, opts=opts)
    r, statuses, events = process(proc.stdout, tmp_path / "awx", ident=24)
    out = "\n".join(e.get("stdout", "") for e in events)
    assert r.status == "successful" and "getent: /home/runner" in out, (statuses, out[-3000:])


def test_an_ansible_core_older_than_2_15_is_named_in_the_failure(ee_image, tmp_path):
    """The base also has Debian's ansible-core 2.14 (under the 2.15 from PyPI): a job whose
    PYTHONPATH puts it first gets a failed task that says so, not a crashed helper."""
    stream = script_job(tmp_path, """
async def run(inventory_path, extravars, runner):
    async with runner.automation(fail_fast=False) as ftl:
        r = await ftl.run_on("localhost", "getent", database="passwd", key="runner")
        print("getent:", r[0].error)
    return 0
""", 25, hostvars="ansible_python_interpreter=/usr/bin/python3",
                        envvars={"PYTHONPATH": "/usr/lib/python3/dist-packages"})
    proc = in_image(ee_image, "ansible-runner", "worker", "--private-data-dir=/runner", stdin=stream)
    r, statuses, events = process(proc.stdout, tmp_path / "awx", ident=25)
    out = "\n".join(e.get("stdout", "") for e in events)
    assert r.status == "failed", statuses
    assert "has ansible-core 2.14." in out and "with ansible-core 2.15 and newer" in out, out[-3000:]


def test_the_image_hands_a_project_update_to_the_original_runner(ee_image, tmp_path):
    pdd = tmp_path / "src"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "project_update.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - debug: {msg: synced in the image}\n")
    stream = transmit_api(pdd, ident=22, playbook="project_update.yml", inventory="localhost,",
                          envvars={"PROJECT_UPDATE_ID": "22", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"})
    proc = worker_in_image(ee_image, stream)
    r, statuses, events = process(proc.stdout, tmp_path / "awx", ident=22)
    assert r.status == "successful", (statuses, proc.stdout[-2000:])
    assert any(e["event"] == "runner_on_ok" and e["event_data"]["res"].get("msg") == "synced in the image"
               for e in events), [e["event"] for e in events]


def test_sigterm_to_the_container_cancels_the_job(ee_image, tmp_path):
    stream = script_job(tmp_path, """
async def run(inventory_path, extravars, runner):
    async with runner.automation() as ftl:
        await ftl.localhost.command(cmd="sleep 60")
    return 0
""", 23)
    name = f"ftl2-cancel-{tmp_path.name}"[:60]
    proc = subprocess.Popen(podman_run(ee_image, "ansible-runner", "worker", "--private-data-dir=/runner",
                                       opts=["--name", name]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(stream)
    proc.stdin.close()
    out = b""
    deadline = time.time() + 60
    while b"runner_on_start" not in out and time.time() < deadline:
        out += proc.stdout.read1(65536)
    assert b"runner_on_start" in out, out[-2000:]
    subprocess.run(PODMAN + ["kill", "--signal", "TERM", name], check=True, capture_output=True)
    rest = proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) is not None
    lines, _ = parse_worker_stream(out + rest)
    assert lines[-1] == {"eof": True}, (out + rest)[-2000:]
    r, statuses, _ = process(out + rest, tmp_path / "awx", ident=23)
    assert r.status == "canceled", (statuses, err[-2000:])


@pytest.mark.parametrize("fault,opts,status,words", [
    ("/runner not writable", ["--read-only"], "error", "Read-only file system"),
    ("no guest in the image", ["--tmpfs", "/opt/ftl2:notmpcopyup"], "failed",
     "the script runtime (guest component) was not found"),
])
def test_a_broken_container_ends_the_job_with_an_explanation(ee_image, tmp_path, fault, opts, status, words):
    stream = script_job(tmp_path, "async def run(i, e, runner):\n    return 0\n", 26)
    proc = in_image(ee_image, "ansible-runner", "worker", "--private-data-dir=/runner", stdin=stream, opts=opts)
    lines, _ = parse_worker_stream(proc.stdout)
    assert lines[-1] == {"eof": True} and proc.stderr == b"", (fault, proc.stdout[-2000:], proc.stderr[-2000:])
    r, statuses, _ = process(proc.stdout, tmp_path / "awx", ident=26)
    assert r.status == status, (fault, statuses)
    assert words in statuses[-1].get("job_explanation", ""), (fault, statuses[-1])


def test_a_base_without_ansible_runner_fails_the_build(ee_image, tmp_path):
    """The rename to ansible-runner.orig is what project updates rely on: no original, no image."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "Containerfile").write_text(
        f"FROM {ee_image}\nUSER root\nRUN rm /usr/local/bin/ansible-runner /usr/bin/ansible-runner.orig\n")
    made = subprocess.run(PODMAN + ["build", "-q", "--network", "none", *LIMITS, "-t", "localhost/ftl2-no-runner:test",
                                    str(base)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    ctx = tmp_path / "ctx"
    (ctx / "prebuilt").mkdir(parents=True)
    shutil.copy(ROOT / "Dockerfile", ctx / "Dockerfile")
    for name in ("ftl2-runner", "guest.cwasm"):
        (ctx / "prebuilt" / name).write_bytes(b"")
    built = subprocess.run(PODMAN + ["build", "--network", "none", *LIMITS, "--build-arg",
                                     "EE_BASE=localhost/ftl2-no-runner:test", "--build-arg", "ARTIFACTS=prebuilt",
                                     "-t", "localhost/ftl2-ee-broken:test", str(ctx)], capture_output=True, text=True)
    subprocess.run(PODMAN + ["rmi", "-f", "localhost/ftl2-no-runner:test"], capture_output=True)
    assert built.returncode != 0
    assert "the base image has no ansible-runner to keep as ansible-runner.orig" in built.stdout + built.stderr
