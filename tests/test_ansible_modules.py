"""Every Ansible module: modules that are not native run through the EE's own ansible-core (its
payload builder and result parser) over our SSH connection. Each step runs with the same
arguments through a script (the worker) and through real ansible-playbook (ansible-runner), on
the same sshd host, and the `event_data.res` AWX receives is compared after normalising only what
must differ: times, temp paths, and which of the two directories/users/groups each run used."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
import threading
import uuid
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import VENV_BIN
from test_engine import engine_calls
from testbed import Testbed

SETUP = "setup"  # a native step that sets the scene; native modules are compared in test_engine
# The EE's ansible-core: the newest on PyPI (2.21 today), the test venv's (2.19, the newest for
# Python 3.11) and the 2.15 line (awx-ee's today). Each is also the reference ansible-playbook.
VENV215_BIN = Path(os.environ.get("FTL2_VENV215", Path.home() / ".cache/ftl2-runner/venv215")) / "bin"
NEWEST_BIN = Path(os.environ.get("FTL2_VENV_NEWEST", Path.home() / ".cache/ftl2-runner/venv-newest")) / "bin"
CORES = {"newest": NEWEST_BIN, "2.19": VENV_BIN, "2.15": VENV215_BIN}
# PyPI's `ansible` package, unpacked (.ci/run): ansible.posix and community.general for "newest".
COLLECTIONS = Path(os.environ.get("FTL2_COLLECTIONS", Path.home() / ".cache/ftl2-runner/ansible-collections"))
RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")
# Values that differ between any two runs of the same module.
VOLATILE = {"start", "end", "delta", "mtime", "atime", "ctime", "elapsed", "date", "last_modified",
            "invocation_time", "inode", "dev", "backup_file", "etag", "cookies_string", "msg_time"}


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("testbed"), 1).start()
    yield tb
    tb.stop()


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "hello.txt").write_text("hello from the web\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def bare_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("git")
    work, bare = root / "work", root / "bare.git"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q", str(work)], check=True)
    (work / "README").write_text("repo\n")
    subprocess.run(git + ["-C", str(work), "add", "README"], check=True)
    subprocess.run(git + ["-C", str(work), "commit", "-qm", "first"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def collection_steps(p: str):
    """Collection modules (ansible.posix, community.general: the newest venv has them, as FTL2's
    wheel ships them), on files of this run's directory only."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ftl2"
    return [
        ("community.general.ini_file", {"path": f"{p}/app.ini", "section": "main", "option": "level", "value": "3"}),
        ("community.general.ini_file", {"path": f"{p}/app.ini", "section": "main", "option": "level", "value": "3"}),
        ("community.general.ini_file", {"path": f"{p}/app.ini", "section": "main", "option": "level",
                                        "state": "absent"}),
        ("copy", {"content": "", "dest": f"{p}/limits.conf"}, SETUP),
        ("community.general.pam_limits", {"domain": "ftl2", "limit_type": "soft", "limit_item": "nofile",
                                          "value": "4096", "dest": f"{p}/limits.conf"}),
        ("community.general.pam_limits", {"domain": "ftl2", "limit_type": "soft", "limit_item": "nofile",
                                          "value": "4096", "dest": f"{p}/limits.conf"}),
        ("ansible.posix.authorized_key", {"user": "root", "key": key, "path": f"{p}/authorized_keys",
                                          "manage_dir": False}),
        ("ansible.posix.authorized_key", {"user": "root", "key": key, "path": f"{p}/authorized_keys",
                                          "manage_dir": False}),
        ("copy", {"content": "", "dest": f"{p}/fstab"}, SETUP),
        ("ansible.posix.mount", {"path": f"{p}/mnt", "src": "tmpfs", "fstype": "tmpfs", "state": "present",
                                 "fstab": f"{p}/fstab"}),
        ("ansible.posix.mount", {"path": f"{p}/mnt", "src": "tmpfs", "fstype": "tmpfs", "state": "present",
                                 "fstab": f"{p}/fstab"}),
    ]


def steps_for(p: str, tag: str, web: str, repo: Path, collections=False):
    """(module, args) in order; `p` is this run's directory, `tag` names its users and groups."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    return (collection_steps(p) if collections else []) + [
        ("file", {"path": f"{p}/frags", "state": "directory"}, SETUP),
        ("copy", {"content": "one\n", "dest": f"{p}/frags/01"}, SETUP),
        ("copy", {"content": "two\n", "dest": f"{p}/frags/02"}, SETUP),
        ("blockinfile", {"path": f"{p}/block.txt", "block": "alpha\nbeta", "create": True}),
        ("blockinfile", {"path": f"{p}/block.txt", "block": "alpha\nbeta", "create": True}),
        ("ansible.builtin.blockinfile", {"path": f"{p}/block.txt", "block": "gamma", "marker": "# {mark} X"}),
        ("replace", {"path": f"{p}/block.txt", "regexp": "^alpha$", "replace": "ALPHA"}),
        ("replace", {"path": f"{p}/block.txt", "regexp": "^alpha$", "replace": "ALPHA"}),
        ("blockinfile", {"path": f"{p}/block.txt", "marker": "# {mark} X", "state": "absent"}),
        ("find", {"paths": f"{p}/frags", "patterns": "0*"}),
        ("assemble", {"src": f"{p}/frags", "dest": f"{p}/assembled"}),
        ("assemble", {"src": f"{p}/frags", "dest": f"{p}/assembled"}),
        ("getent", {"database": "passwd", "key": "root"}),
        ("getent", {"database": "passwd", "key": "no-such-user-ftl2"}),
        ("group", {"name": f"ftl2{tag}g", "state": "present"}),
        ("group", {"name": f"ftl2{tag}g", "state": "present"}),
        ("user", {"name": f"ftl2{tag}u", "group": f"ftl2{tag}g", "create_home": False, "shell": "/bin/sh"}),
        ("user", {"name": f"ftl2{tag}u", "group": f"ftl2{tag}g", "create_home": False, "shell": "/bin/sh"}),
        ("user", {"name": f"ftl2{tag}u", "state": "absent"}),
        ("group", {"name": f"ftl2{tag}g", "state": "absent"}),
        ("known_hosts", {"path": f"{p}/known_hosts", "name": "example.org", "key": f"example.org {key}"}),
        ("known_hosts", {"path": f"{p}/known_hosts", "name": "example.org", "key": f"example.org {key}"}),
        ("cron", {"name": "ftl2 job", "cron_file": f"ftl2-{tag}", "user": "root", "minute": "5", "job": "/bin/true"}),
        ("cron", {"name": "ftl2 job", "cron_file": f"ftl2-{tag}", "user": "root", "minute": "5", "job": "/bin/true"}),
        ("cron", {"name": "ftl2 job", "cron_file": f"ftl2-{tag}", "user": "root", "state": "absent"}),
        ("debconf", {"name": "tzdata"}),
        ("dpkg_selections", {"name": "bash", "selection": "install"}),
        ("command", {"cmd": f"tar czf {p}/a.tgz -C {p} frags"}, SETUP),
        ("unarchive", {"src": f"{p}/a.tgz", "dest": f"{p}/frags", "remote_src": True, "list_files": True}),
        ("get_url", {"url": f"{web}/hello.txt", "dest": f"{p}/hello.txt"}),
        ("get_url", {"url": f"{web}/hello.txt", "dest": f"{p}/hello.txt"}),
        ("uri", {"url": f"{web}/hello.txt", "return_content": True}),
        ("uri", {"url": f"{web}/missing.txt"}),
        ("wait_for", {"path": f"{p}/assembled", "timeout": 5}),
        ("git", {"repo": f"file://{repo}", "dest": f"{p}/clone"}),
        ("git", {"repo": f"file://{repo}", "dest": f"{p}/clone"}),
        ("yum_repository", {"name": "ftl2", "description": "ftl2 test", "baseurl": "http://example.org/r",
                            "reposdir": p}),
        ("apt", {"name": "bash", "state": "present"}),
        ("package", {"name": "bash", "state": "present"}),
        ("service", {"name": "ftl2-no-such-service", "state": "started"}),
        ("tempfile", {"state": "file", "path": p}),
        # Native modules: a misspelt or unhandled option goes to the real module, never ignored.
        ("file", {"path": f"{p}/typo", "state": "directory", "mod": "0700"}),
        ("file", {"path": f"{p}/frags", "state": "directory", "recurse": "maybe"}),
        ("lineinfile", {"path": f"{p}/block.txt", "line": "tail", "backup": False, "mode": "0600"}),
        ("stat", {"path": f"{p}/block.txt", "get_checksum": False, "get_mime": False, "get_attributes": False}),
        ("lineinfile", {"path": f"{p}/block.txt", "line": "x", "regexp": "^x", "search_string": "x"}),
        ("blockinfile", {"path": f"{p}/block.txt", "block": "x", "no_such_option": 1}),
        # The real command with `cmd` (2.15's task load moves it into `_raw_params`).
        ("shell", {"cmd": "echo hi", "no_such_option": 1}),
        # A module whose own sys.excepthook fails the task (2.15's file), as the interpreter calls it.
        ("file", {"path": f"{p}/missing", "state": "file", "access_time": "preserve"}),
        ("user", {"state": "present"}),
    ]


def normalise(value, p: str, tag: str):
    if isinstance(value, dict):
        return {normalise(k, p, tag): normalise(v, p, tag) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v, p, tag) for v in value]
    if isinstance(value, str):
        value = value.replace(p, "<dir>").replace(f"ftl2{tag}", "ftl2<tag>").replace(f"ftl2-{tag}", "ftl2-<tag>")
        value = re.sub(r"ansible\.\w{8}", "ansible.<tmp>", value)
        # Ansible's remote temp dir (it pipelines nothing by default) vs the module's own.
        value = re.sub(r"/\.ansible/tmp/ansible-[\w.-]+/tmp\w+", "/.ansible/tmp/<remote tmp>", value)
        value = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?", "<time>", value)
        # OpenSSH's own chatter on the first connection (Ansible's transport, not the module).
        value = re.sub(r"Warning: Permanently added [^\n]*\n", "", value)
        # Ansible lists a Python set here: its order changes from one process to the next.
        value = re.sub(r"(Valid booleans include: )(.*)$", lambda m: m[1] + ", ".join(sorted(m[2].split(", "))), value)
        return value
    return value


def difference(label: str, ours, theirs, names=("ours", "theirs")) -> str | None:
    """How two (event, res) pairs differ, key by key; None when they are the same."""
    (oev, o), (tev, t) = ours, theirs
    if (oev, o) == (tev, t):
        return None
    a, b = names
    keys = sorted(k for k in set(o) | set(t) if o.get(k, "<absent>") != t.get(k, "<absent>"))
    return (f"{label}: {a} {oev}, {b} {tev}; keys differing: "
            + "; ".join(f"{k}: {a} {json.dumps(o.get(k, '<absent>'))[:600]} {b} "
                        f"{json.dumps(t.get(k, '<absent>'))[:600]}" for k in keys))


def step_differences(steps, ours, theirs, clean_ours, clean_theirs) -> list[str]:
    """Each non-setup step's difference between our (event, res) and Ansible's, after cleaning."""
    diffs = []
    for i, ((module, _, *setup), (oev, ores), (tev, tres)) in enumerate(zip(steps, ours, theirs)):
        if not setup:
            diffs.append(difference(f"step {i} ({module})", (oev, clean_ours(ores)), (tev, clean_theirs(tres))))
    return [d for d in diffs if d]


def path_for(core: str) -> str:
    assert (CORES[core] / "ansible-playbook").is_file(), f"ansible-core {core} is not installed in {CORES[core]}"
    return f"{CORES[core]}:{VENV_BIN}:{os.environ['PATH']}"


def env_for(core: str) -> dict:
    """The job's environment as an EE with this ansible-core (and, for the newest, collections)."""
    env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": path_for(core)}
    if core == "newest":
        assert (COLLECTIONS / "ansible_collections" / "community" / "general").is_dir(), \
            f"PyPI's ansible collections are not installed at {COLLECTIONS} (run .ci/run)"
        env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    return env


def ansible_playbook_results(inventory: str, steps, cmdline: str | None, tmp: Path, extra_env=None,
                             core="newest", become=False, files=(), pipelining=False):
    """Run the steps as one playbook through real ansible-runner; [(event, res)] in order.
    `files` [(name, text or bytes)] go next to the playbook (where a script's files are).
    `pipelining` turns on Ansible's pipelining (same results, half the time of the default's
    five ssh round trips per task on this machine); side-by-sides keep one run on the default."""
    import ansible_runner

    def task(i, module, args):
        # A step's own `_become`/`_become_user` call options are the task's keywords.
        keywords = {k[1:]: args[k] for k in ("_become", "_become_user") if k in args}
        args = {k: v for k, v in args.items() if k not in ("_become", "_become_user")}
        return {"name": f"step {i}", module: args, "ignore_errors": True,
                **({"become": True} if become else {}), **keywords}

    tasks = [task(i, m, a) for i, (m, a, *_) in enumerate(steps)]
    pdd = tmp / "ans-pdd"
    (pdd / "project").mkdir(parents=True)
    for name, content in files:
        f = pdd / "project" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content)
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts").write_text(inventory)
    env = {**env_for(core), **({"ANSIBLE_PIPELINING": "True"} if pipelining else {}), **(extra_env or {})}
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True, envvars=env,
                                     cmdline=cmdline)
    return [(e["event"], e["event_data"].get("res", {})) for e in r.events if e["event"] in RESULT_EVENTS]


def our_results(tmp: Path, inventory: str, steps, cmdline: str | None, core="newest", become=False,
                extra_env=None, files=()):
    calls = [("node0", m, {**a, **({"_become": True} if become else {})}) for m, a, *_ in steps]
    _, res = engine_calls(tmp, inventory, calls, cmdline=cmdline, extra_files=files,
                          kwargs={"envvars": {**env_for(core), **(extra_env or {})}})
    assert res.final_status in ("successful", "failed"), res.stdout[-3000:]
    return [(e["event"], e["event_data"].get("res", {})) for e in res.events if e["event"] in RESULT_EVENTS], res


def cleanup(tags):
    for tag in tags:
        subprocess.run(["userdel", f"ftl2{tag}u"], capture_output=True)
        subprocess.run(["groupdel", f"ftl2{tag}g"], capture_output=True)
        Path(f"/etc/cron.d/ftl2-{tag}").unlink(missing_ok=True)


@pytest.mark.parametrize("core,mode", [("newest", "run"), ("newest", "check_diff"), ("2.19", "become"),
                                       ("2.15", "run")])
def test_ansible_modules_match_ansible_playbook(testbed, http_root, bare_repo, tmp_path, core, mode):
    cmdline = "--check --diff" if mode == "check_diff" else None
    become = mode == "become"
    run_id = uuid.uuid4().hex[:6]
    ours_tag, ans_tag = f"o{run_id}", f"a{run_id}"
    ours_dir, ans_dir = f"/tmp/ftl2-mod-{ours_tag}", f"/tmp/ftl2-mod-{ans_tag}"
    inventory = testbed.ini_inventory()
    try:
        ours, res = our_results(tmp_path / "ours", inventory, steps_for(ours_dir, ours_tag, http_root, bare_repo, core == "newest"),
                                cmdline, core, become)
        theirs = ansible_playbook_results(inventory, steps_for(ans_dir, ans_tag, http_root, bare_repo, core == "newest"), cmdline,
                                          tmp_path, core=core, become=become, pipelining=(core, mode) != ("newest", "run"))
    finally:
        cleanup([ours_tag, ans_tag])
    steps = steps_for("<dir>", "<tag>", http_root, bare_repo, core == "newest")
    assert len(ours) == len(steps), (len(ours), res.stdout[-4000:])
    assert len(theirs) == len(steps)
    diffs = step_differences(steps, ours, theirs, lambda r: normalise(r, ours_dir, ours_tag),
                             lambda r: normalise(r, ans_dir, ans_tag))
    assert not diffs, "\n".join(diffs)
    for d in (ours_dir, ans_dir):
        shutil.rmtree(d, ignore_errors=True)


def test_unknown_module_names_the_places_searched_and_the_closest_names(testbed, tmp_path):
    calls = [("node0", "blockinfle", {"path": "/tmp/x", "block": "y"}), ("node0", "community.general.ini_fil", {}),
             ("node0", "bigip_facts", {})]
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls,
                                kwargs={"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}})
    msg = results[0][0]["output"]["msg"]
    assert results[0][0]["status"] == "failed"
    assert msg.startswith("The module blockinfle was not found in configured module paths. Searched: ansible-core "), msg
    assert "Did you mean: blockinfile?" in msg, msg
    msg = results[1][0]["output"]["msg"]
    assert "community.general.ini_fil was not found" in msg and "collections in " in msg, msg
    msg = results[2][0]["output"]["msg"]
    assert msg.startswith("The 'ansible.builtin.bigip_facts' module has been removed."), msg


def test_without_ansible_core_only_native_modules_run_and_the_job_says_so(testbed, tmp_path):
    typo = tmp_path / "typo"
    calls = [("node0", "ping", {}), ("node0", "apt", {"name": "bash"}),
             ("node0", "file", {"path": str(typo), "state": "directory", "mod": "0700"})]
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls,
                                kwargs={"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": "/usr/bin:/bin"}})
    msg = results[2][0]["output"]["msg"]
    assert results[2][0]["status"] == "failed" and not typo.exists()
    assert msg.startswith("ftl2-runner's native file module does not handle option(s) mod, and the real module "
                          "cannot run here: this execution environment has no ansible-core"), msg
    assert results[0][0]["status"] == "ok"
    assert results[1][0]["status"] == "failed"
    msg = results[1][0]["output"]["msg"]
    assert "cannot run the Ansible module 'apt': this execution environment has no ansible-core" in msg, msg
    assert "Only the native modules are available: ping, command, shell" in msg, msg
    assert "cannot run the Ansible module 'apt'" in res.stdout.decode()


def test_a_helper_that_dies_at_start_says_why(testbed, tmp_path):
    """The EE's Python dies before it answers (here a `json` module shadowing the standard one
    on the job's PYTHONPATH): the failed call quotes its last words, not just that it exited."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # Bytes that are not UTF-8 first: its stderr is drained as bytes, to its last line.
    (shadow / "json.py").write_text("import sys\nsys.stderr.buffer.write(b'\\xff\\xfe\\n')\nsys.stderr.flush()\n"
                                    "raise RuntimeError('a broken json module shadows the standard one')\n")
    results, _ = engine_calls(tmp_path, testbed.ini_inventory(), [("node0", "getent", {"database": "passwd"})],
                              kwargs={"envvars": {**env_for("newest"), "PYTHONPATH": str(shadow)}})
    msg = results[0][0]["output"]["msg"]
    assert results[0][0]["status"] == "failed"
    assert "did not start: it exited: RuntimeError: a broken json module shadows the standard one" in msg, msg


HELPER = Path(__file__).resolve().parent.parent / "host/src/executor/ansible/helper.py"


def _payload_files(payload: bytes) -> tuple[bytes, dict]:
    """An AnsiballZ payload as its wrapper text (without the embedded zip and the build's time) and
    the zip's files."""
    # 2.15: ZIPDATA = """...""" in lines; later: zip_data='...'.
    found = re.search(rb"""(?:ZIPDATA = \"\"\"|zip_data=')([A-Za-z0-9+/=\s]+)""", payload)
    assert found, payload[:300]
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(found[1]))) as z:
        files = {name: z.read(name) for name in z.namelist()}
    # The build's time (the wrapper writes it into the zip it adds to): the only thing two builds
    # may differ in.
    text = re.sub(rb"date_time( = |=datetime\.datetime)\([^)]*\)", b"date_time=...", payload[:found.start(1)] + payload[found.end(1):])
    return text, files


@pytest.mark.parametrize("core", ["newest", "2.19", "2.15"])
def test_a_payload_does_not_depend_on_what_the_job_built_before(core):
    """The helper keeps the module_utils it parsed for one build for the next (most are shared by
    every module): a module's payload must be what ansible-core builds without that, whatever was
    built before it in the job. Built by the helper itself, with and without its parse memo."""
    source = HELPER.read_text()
    without_memo = source.replace("\n_parse_each_module_util_once()\n", "\n")
    assert without_memo != source

    def builds(modules, source=source):
        proc = subprocess.Popen([str(CORES[core] / "python"), "-c", source], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert json.loads(proc.stdout.readline())["ready"]
            out = []
            for i, (module, args) in enumerate(modules):
                proc.stdin.write(json.dumps({"op": "build", "id": i, "module": module, "args": args,
                                             "interpreter": "/usr/bin/python3"}) + "\n")
                proc.stdin.flush()
                answer = json.loads(proc.stdout.readline())
                assert answer["ok"], answer
                out.append(_payload_files(base64.b64decode(answer["payload"])))
            return out
        finally:
            proc.kill()
            proc.wait()

    getent = ("getent", {"database": "passwd"})
    alone = builds([getent], without_memo)[0]
    after = builds([("find", {"paths": "/tmp"}), ("wait_for", {"timeout": 1}), getent])[2]
    assert alone[0] == after[0]
    assert sorted(alone[1]) == sorted(after[1])
    assert "ansible/module_utils/basic.py" in alone[1]
    assert alone[1] == after[1], [n for n in alone[1] if alone[1][n] != after[1].get(n)]


def test_discovered_interpreter_is_reported_once_per_host_as_ansible_does(testbed, tmp_path):
    inv = testbed.ini_inventory().replace("ansible_python_interpreter=/usr/bin/python3", "")
    calls = [("node0", "getent", {"database": "passwd", "key": "root"})] * 2
    results, res = engine_calls(tmp_path, inv, calls, kwargs={"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}})
    first, second = results[0][0]["output"], results[1][0]["output"]
    # Ansible's own discovery (auto_silent, as ours) on the same host finds the same interpreter.
    theirs = ansible_playbook_results(inv, [("getent", {"database": "passwd", "key": "root"})], None, tmp_path,
                                      extra_env={"ANSIBLE_PYTHON_INTERPRETER": "auto_silent"})
    expected = theirs[0][1]["ansible_facts"]["discovered_interpreter_python"]
    assert first["ansible_facts"]["discovered_interpreter_python"] == expected, (first, expected)
    assert "discovered_interpreter_python" not in second.get("ansible_facts", {}), second


TEMPLATE_CORPUS = """\
# {{ title }}
{% for u in users %}
user {{ u.name }} ({{ u.uid }})
{% endfor %}
{% if enabled %}
enabled: yes
{% else %}
enabled: no
{% endif %}
    {% for x in [1, 2] -%}
  item-{{ x }}
    {%- endfor %}

names: {{ users | map(attribute='name') | join(', ') }}
upper: {{ title | upper }} count={{ users | length }}
{# a comment line #}
missing: {{ nothing | default('fallback') }}
{% set total = users | sum(attribute='uid') %}
total={{ total }}
"""


def test_template_renders_byte_identical_to_ansible_playbook(testbed, tmp_path):
    """Ansible's template settings (trim_blocks on, trailing newline kept): loops and conditionals
    leave no blank lines; both runs write the same bytes."""
    tvars = {"title": "Hosts", "enabled": True, "users": [{"name": "ann", "uid": 1001}, {"name": "bob", "uid": 1002}]}
    src = tmp_path / "corpus.j2"
    src.write_text(TEMPLATE_CORPUS)
    ours_dest, ans_dest = tmp_path / "ours.txt", tmp_path / "ans.txt"
    calls = [("node0", "template", {"src": "corpus.j2", "dest": str(ours_dest)})]
    extravars = json.dumps(tvars)
    results, res = engine_calls(tmp_path / "o", testbed.ini_inventory(), calls, extra_files=[("corpus.j2", TEMPLATE_CORPUS)],
                                kwargs={"extravars": tvars})
    assert results[0][0]["status"] == "changed", results[0]
    theirs = ansible_playbook_results(testbed.ini_inventory(), [("template", {"src": str(src), "dest": str(ans_dest)})],
                                      f"-e '{extravars}'", tmp_path)
    assert theirs[0][0] == "runner_on_ok", theirs
    assert ours_dest.read_bytes() == ans_dest.read_bytes(), (ours_dest.read_text(), ans_dest.read_text())


def test_facts_gathered_in_the_job_are_variables_of_later_tasks(testbed, tmp_path):
    dest = tmp_path / "facts.txt"
    tpl = "{{ ansible_os_family }}|{{ ansible_facts['os_family'] }}|{{ getent_passwd['root'][4] }}\n"
    calls = [("node0", "setup", {}), ("node0", "getent", {"database": "passwd", "key": "root"}),
             ("node0", "template", {"src": "facts.j2", "dest": str(dest)})]
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls, extra_files=[("facts.j2", tpl)],
                                kwargs={"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False",
                                                    "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}})
    family = results[0][0]["output"]["ansible_facts"]["ansible_os_family"]
    assert results[2][0]["status"] == "changed", results[2]
    assert dest.read_text() == f"{family}|{family}|/root\n"


def test_target_without_python_fails_the_task_as_ansible_reports_it(testbed, tmp_path):
    inv = testbed.ini_inventory().replace("ansible_python_interpreter=/usr/bin/python3",
                                          "ansible_python_interpreter=/nonexistent/python3")
    steps = [("getent", {"database": "passwd", "key": "root"})]
    ours, res = our_results(tmp_path / "ours", inv, steps, None, "newest")
    # Pipelined, as we run modules: without it OpenSSH's pty merges stderr into stdout.
    theirs = ansible_playbook_results(inv, steps, None, tmp_path, core="newest",
                                      extra_env={"ANSIBLE_PIPELINING": "True"})
    assert ours[0][0] == theirs[0][0] == "runner_on_failed", (ours, theirs)
    o, t = (normalise(r[0][1], "\0unused", "\0unused") for r in (ours, theirs))
    assert o == t, (o, t)
    assert "The module interpreter '/nonexistent/python3' was not found." in o["msg"], o


def test_module_warnings_are_shown_as_ansible_playbook_shows_them(testbed, tmp_path):
    import ansible_runner

    steps = [("find", {"paths": "/nonexistent-ftl2"})]
    _, res = engine_calls(tmp_path / "o", testbed.ini_inventory(), [("node0", m, a) for m, a in steps],
                          kwargs={"envvars": {"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": path_for("newest"),
                                              "ANSIBLE_FORCE_COLOR": "True"}})
    ours = next(e for e in res.events if e["event"] == "runner_on_ok")
    pdd = tmp_path / "a"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump(
        [{"hosts": "all", "gather_facts": False, "tasks": [{"name": "find", "find": steps[0][1]}]}]))
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True,
                                     inventory=testbed.ini_inventory(),
                                     envvars={"ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": path_for("newest")})
    theirs = next(e for e in r.events if e["event"] == "runner_on_ok")
    assert "[WARNING]: Skipped '/nonexistent-ftl2' path" in ours["stdout"], ours["stdout"]
    assert ours["stdout"] == theirs["stdout"], (ours["stdout"], theirs["stdout"])


def test_setup_gives_ansible_s_own_facts(testbed, tmp_path):
    """With ansible-core in the EE, facts come from the real setup module: the same keys and
    values as ansible-playbook's, not the native subset."""
    steps = [("setup", {})]
    ours, res = our_results(tmp_path / "ours", testbed.ini_inventory(), steps, None, "newest")
    theirs = ansible_playbook_results(testbed.ini_inventory(), steps, None, tmp_path, core="newest")
    of, tf = ours[0][1]["ansible_facts"], theirs[0][1]["ansible_facts"]
    assert len(tf) > 60 and set(of) == set(tf), sorted(set(of) ^ set(tf))
    for k in ("ansible_distribution_version", "ansible_os_family", "ansible_pkg_mgr", "ansible_kernel",
              "ansible_python_version", "ansible_user_id"):
        assert of[k] == tf[k], (k, of[k], tf[k])


def test_no_log_and_module_secrets_never_reach_the_stream(testbed, http_root, tmp_path):
    """A task's no_log censors the whole result (and tells the module, which keeps the value out
    of its logs); a module's own no_log parameters are masked by the module, as under Ansible."""
    secret = "s3cr3t-" + uuid.uuid4().hex[:8]
    calls = [("node0", "uri", {"url": f"{http_root}/hello.txt", "url_username": "u", "url_password": secret,
                               "_no_log": True}),
             ("node0", "uri", {"url": f"{http_root}/hello.txt", "url_username": "u", "url_password": secret})]
    # 2.19 still returns the invocation (2.21 does only at -vvv): the masking is visible there.
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls, kwargs={"envvars": env_for("2.19")})
    events = [e for e in res.events if e["event"] == "runner_on_ok"]
    assert len(events) == 2, res.stdout[-2000:]
    # Exactly what ansible-runner sends for a no_log result, and no task arguments (Ansible's
    # default: DISPLAY_ARGS_TO_STDOUT off).
    assert events[0]["event_data"]["res"] == {
        "censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result"}
    assert all(e.get("event_data", {}).get("task_args", "") == "" for e in res.events), res.stdout[-2000:]
    assert events[1]["event_data"]["res"]["invocation"]["module_args"]["url_password"] == \
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert secret.encode() not in res.stdout


DEPRECATING = '''
from ansible.module_utils.basic import AnsibleModule
def main():
    m = AnsibleModule(argument_spec=dict(x=dict(type="str")))
    m.deprecate("The dep module's x option is old", version="9.0.0", collection_name="ftl2test.iso")
    m.warn("a plain warning")
    m.exit_json(changed=False)
main()
'''


@pytest.mark.parametrize("core", ["newest", "2.19", "2.15"])
def test_module_deprecations_are_shown_as_ansible_playbook_shows_them(testbed, tmp_path, core):
    """A module's deprecation is printed by the EE's own ansible-core code: 2.15's wrapped
    `[DEPRECATION WARNING]: ... Deprecation warnings can be disabled ...`, 2.21's one-line form
    after its once-per-run hint; then the host line."""
    import ansible_runner

    coll = tmp_path / "coll"
    mod = coll / "ansible_collections" / "ftl2test" / "iso" / "plugins" / "modules"
    mod.mkdir(parents=True)
    (mod / "dep.py").write_text(DEPRECATING)
    env = env_for(core)
    env["ANSIBLE_COLLECTIONS_PATH"] = ":".join(filter(None, [str(coll), env.get("ANSIBLE_COLLECTIONS_PATH")]))
    env["ANSIBLE_FORCE_COLOR"] = "True"
    steps = [("ftl2test.iso.dep", {"x": "y"})]
    _, res = engine_calls(tmp_path / "o", testbed.ini_inventory(), [("node0", m, a) for m, a in steps],
                          kwargs={"envvars": env})
    ours = next(e for e in res.events if e["event"] == "runner_on_ok")
    pdd = tmp_path / "a"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump(
        [{"hosts": "all", "gather_facts": False, "tasks": [{"name": "dep", steps[0][0]: steps[0][1]}]}]))
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True,
                                     inventory=testbed.ini_inventory(), envvars=env)
    theirs = next(e for e in r.events if e["event"] == "runner_on_ok")
    assert "[DEPRECATION WARNING]: The dep module's x option is old" in ours["stdout"], ours["stdout"]
    assert ours["stdout"] == theirs["stdout"], (ours["stdout"], theirs["stdout"])
    assert "_ftl2_deprecation_lines" not in json.dumps(ours["event_data"]["res"])
    assert normalise(ours["event_data"]["res"], "\0", "\0") == normalise(theirs["event_data"]["res"], "\0", "\0")


def native_steps(p: str):
    """Calls of every native module that has a real one (raw, fetch and wait_for_connection are
    action plugins, compared with ansible-playbook in test_engine)."""
    return [
        ("ping", {}),
        ("command", {"cmd": "echo hello world"}),
        ("command", {"cmd": "false"}),
        ("command", {"cmd": "echo never", "creates": "/etc/hostname"}),
        ("command", {"argv": ["echo", "a b"], "chdir": "/tmp"}),
        # Programs that cannot be started: missing, a directory, not executable.
        ("command", {"cmd": "nothere-prog --password secret arg"}),
        ("command", {"argv": ["/etc"]}),
        ("shell", {"cmd": "echo one | tr a-z A-Z; echo err >&2"}),
        ("shell", {"cmd": "exit 3"}),
        ("file", {"path": p, "state": "directory", "mode": "0750"}),
        ("file", {"path": p, "state": "directory", "mode": "0750"}),
        ("copy", {"content": "echo hi\n", "dest": f"{p}/notexec", "mode": "0644"}),
        ("command", {"argv": [f"{p}/notexec", "x y"]}),
        # Executable, but not a program: exec fails (ENOEXEC) where a shell would run it as a script.
        ("copy", {"content": "echo ran as a script\n", "dest": f"{p}/noshebang", "mode": "0755"}),
        ("command", {"argv": [f"{p}/noshebang"]}),
        ("copy", {"content": "#!/bin/sh\necho ran with its interpreter\n", "dest": f"{p}/script", "mode": "0755"}),
        ("command", {"cmd": f"{p}/script"}),
        ("file", {"path": f"{p}/touched", "state": "touch"}),
        ("file", {"path": f"{p}/missing", "state": "file"}),
        ("copy", {"content": "hello\n", "dest": f"{p}/copied", "mode": "0640"}),
        ("copy", {"content": "hello\n", "dest": f"{p}/copied", "mode": "0640"}),
        ("copy", {"content": "changed\n", "dest": f"{p}/copied"}),
        ("stat", {"path": f"{p}/copied"}),
        ("stat", {"path": f"{p}/nope"}),
        ("stat", {"path": p}),
        ("slurp", {"src": f"{p}/copied"}),
        ("lineinfile", {"path": f"{p}/copied", "line": "second"}),
        ("lineinfile", {"path": f"{p}/copied", "line": "second"}),
        ("lineinfile", {"path": f"{p}/copied", "regexp": "^chan", "line": "first"}),
        ("lineinfile", {"path": f"{p}/copied", "regexp": "^sec", "state": "absent"}),
        ("lineinfile", {"path": f"{p}/nofile", "line": "x"}),
        ("file", {"path": f"{p}/link", "src": f"{p}/copied", "state": "link"}),
        ("file", {"path": f"{p}/link", "src": f"{p}/copied", "state": "link"}),
        ("file", {"path": f"{p}/dangling", "src": "no-such", "state": "link"}),
        ("file", {"path": f"{p}/dangling", "src": "no-such", "state": "link", "force": True}),
        ("file", {"path": f"{p}/hard", "src": f"{p}/no-such", "state": "hard"}),
        ("file", {"path": f"{p}/copied", "mode": "u+x,g-r"}),
        ("file", {"path": f"{p}/touched", "state": "absent"}),
        ("file", {"path": f"{p}/touched", "state": "absent"}),
        ("slurp", {"src": p}),
        ("template", {"src": "t.j2", "dest": f"{p}/templated"}),
        ("template", {"src": "t.j2", "dest": f"{p}/templated"}),
    ]


def without_temp_names(value):
    """What differs between two runs of the same copy: the uploaded file's temp names."""
    if isinstance(value, dict):
        return {k: without_temp_names(v) for k, v in value.items()
                if k not in ("_original_basename", "version")}
    if isinstance(value, list):
        return [without_temp_names(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"ansible-tmp-[\d.]+-\d+-\d+", "ansible-tmp-<x>", value)
    return value


@pytest.mark.parametrize("core,mode", [("newest", "run"), ("newest", "check_diff"), ("newest", "inject"),
                                       ("2.19", "run"), ("2.15", "run")])
def test_native_modules_report_what_the_real_modules_report(testbed, tmp_path, core, mode):
    """Each native module's result, as the job reports it, against the real module's for the
    same call (FTL2_REAL_MODULES=all), with each ansible-core: what only the real module can
    report comes from it."""
    cmdline = "--check --diff" if mode == "check_diff" else None
    # 2.21's INJECT_INVOCATION setting: every result reports its `invocation` again.
    inject = {"ANSIBLE_INJECT_INVOCATION": "true"} if mode == "inject" else {}
    inventory = testbed.ini_inventory()
    template = [("t.j2", "a {{ 1 + 1 }}\n{% for i in [1, 2] %}\n{{ i }}\n{% endfor %}\n")]
    runs = {}
    for kind, extra in (("n", {}), ("r", {"FTL2_REAL_MODULES": "all"})):
        p = f"/tmp/ftl2-nvr-{kind}{uuid.uuid4().hex[:6]}"
        try:
            _, res = engine_calls(tmp_path / kind, inventory, [("node0", m, a) for m, a in native_steps(p)],
                                  cmdline=cmdline, extra_files=template, worker_vars=extra,
                                  kwargs={"envvars": {**env_for(core), **inject}})
        finally:
            shutil.rmtree(p, ignore_errors=True)
        runs[kind] = (p, [(e["event"], e["event_data"].get("res", {})) for e in res.events
                          if e["event"] in RESULT_EVENTS])
        assert len(runs[kind][1]) == len(native_steps(p)), res.stdout[-3000:]
    (pn, native), (pr, real) = runs["n"], runs["r"]
    if inject:
        assert all("invocation" in r for _, r in real), "the setting did not reach the real modules"
    diffs = []
    for (module, args), (nev, nres), (rev, rres) in zip(native_steps("<dir>"), native, real):
        a = without_temp_names(normalise(nres, pn, "\0"))
        b = without_temp_names(normalise(rres, pr, "\0"))
        if module == "file" and not cmdline and core == "2.15":
            # What the native file module, which stays native for speed, reports its own way
            # (DESIGN.md): 2.15 file's diff.
            a.pop("diff", None)
            b.pop("diff", None)
        diffs.append(difference(f"{module} {json.dumps(args)}", (nev, a), (rev, b), ("native", "real")))
    diffs = [d for d in diffs if d]
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("core", ["newest", "2.19", "2.15"])
def test_changed_when_and_failed_when_as_ansible_playbook_applies_them(testbed, tmp_path, core):
    """`_changed_when`/`_failed_when` (booleans) against a playbook's `changed_when`/`failed_when`,
    on a native module and a real one."""
    import ansible_runner

    calls = [
        ("command", {"cmd": "echo hi"}, {"changed_when": False}),
        ("command", {"cmd": "false"}, {"failed_when": False}),
        ("command", {"cmd": "echo hi"}, {"changed_when": False, "failed_when": True}),
        ("getent", {"database": "passwd", "key": "root"}, {"changed_when": True}),
        ("getent", {"database": "passwd", "key": "no-such-user-ftl2"}, {"failed_when": False}),
    ]
    inventory = testbed.ini_inventory()
    ours, res = our_results(tmp_path / "ours", inventory,
                            [(m, {**a, **{f"_{k}": v for k, v in kw.items()}}) for m, a, kw in calls], None, core)
    pdd = tmp_path / "ans-pdd"
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts").write_text(inventory)
    tasks = [{"name": f"step {i}", m: a, "ignore_errors": True, **kw} for i, (m, a, kw) in enumerate(calls)]
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True, envvars=env_for(core))
    theirs = [(e["event"], e["event_data"].get("res", {})) for e in r.events if e["event"] in RESULT_EVENTS]
    assert len(ours) == len(theirs) == len(calls), res.stdout[-3000:]
    diffs = [difference(f"step {i} ({m} {kw})", (oev, normalise(o, "\0", "\0")),
                        (tev, normalise(t, "\0", "\0")))
             for i, ((m, _, kw), (oev, o), (tev, t)) in enumerate(zip(calls, ours, theirs))]
    diffs = [d for d in diffs if d]
    assert not diffs, "\n".join(diffs)


TEMPLATE_VARS = """\
# {{ ansible_managed }}
host={{ template_host }} path={{ template_path }} uid={{ template_uid }}
dest={{ template_destpath }}
full={{ template_fullpath }}
mtime={{ template_mtime.strftime('%Y') }} {{ template_mtime.year }} {{ (template_mtime | string)[:4] }}
run={{ template_run_date.year }} {{ template_run_date | string | length > 18 }}
greeting={{ greeting | default('none') }}
"""


@pytest.mark.parametrize("core", ["newest", "2.15"])
def test_template_variables_as_ansible_template_plugin_sets_them(testbed, tmp_path, core):
    """`ansible_managed` from ansible.cfg (its fields and strftime), the `template_*` variables, and
    a call's own `_vars` as a task's `vars:` (2.19+ keeps a job's own ansible_managed, 2.15 does
    not): the same bytes as ansible-playbook writes."""
    import ansible_runner

    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nansible_managed = Managed by {uid} on {host}: {file} %Y\n")
    env = {**env_for(core), "ANSIBLE_CONFIG": str(cfg)}
    ours_dir, ans_dir = tmp_path / "ours-out", tmp_path / "ans-out"
    ours_dir.mkdir()
    ans_dir.mkdir()
    own = {"ansible_managed": "mine", "greeting": "hello"}
    calls = [("node0", "template", {"src": "vars.j2", "dest": str(ours_dir / "a.txt")}),
             ("node0", "template", {"src": "vars.j2", "dest": str(ours_dir / "b.txt"), "_vars": own})]
    results, res = engine_calls(tmp_path / "o", testbed.ini_inventory(), calls,
                                extra_files=[("vars.j2", TEMPLATE_VARS)], kwargs={"envvars": env})
    assert [r[0]["status"] for r in results] == ["changed", "changed"], res.stdout[-3000:]
    pdd = tmp_path / "ans-pdd"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "vars.j2").write_text(TEMPLATE_VARS)
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts").write_text(testbed.ini_inventory())
    tasks = [{"template": {"src": "vars.j2", "dest": str(ans_dir / "a.txt")}},
             {"template": {"src": "vars.j2", "dest": str(ans_dir / "b.txt")}, "vars": own}]
    (pdd / "project" / "site.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False,
                                                               "tasks": tasks}]))
    r = ansible_runner.interface.run(private_data_dir=str(pdd), playbook="site.yml", quiet=True, envvars=env)
    assert r.status == "successful", r.stdout.read()[-3000:]
    for name in ("a.txt", "b.txt"):
        ours = (ours_dir / name).read_text().replace(str(ours_dir), "<out>")
        ours = ours.replace(str(tmp_path / "o" / "scripts"), "<dir>")
        theirs = (ans_dir / name).read_text().replace(str(ans_dir), "<out>")
        theirs = theirs.replace(str(pdd / "project"), "<dir>")
        assert ours == theirs, (name, ours, theirs)
    b = (ours_dir / "b.txt").read_text()
    assert ("# mine" in b) == (core == "newest") and "greeting=hello" in b, b
    assert "# Managed by root on " in (ours_dir / "a.txt").read_text()


def test_task_vars_are_for_templates_only(testbed, tmp_path):
    """`_vars` on a module that renders nothing is refused, not silently unused."""
    calls = [("node0", "command", {"cmd": "true", "_vars": {"x": 1}})]
    results, res = engine_calls(tmp_path, testbed.ini_inventory(), calls)
    assert res.final_status == "failed", res.stdout[-2000:]
    assert b"_vars are variables for a template; command renders none" in res.stdout


@pytest.mark.parametrize("core", ["newest", "2.15"])
def test_an_undefined_template_variable_is_named_as_ansible_names_it(testbed, tmp_path, core):
    """A template that uses a variable nobody defined fails naming it, in the job's ansible-core's
    words (2.19+: `Task failed: 'x' is undefined`; 2.15: `AnsibleUndefinedVariable: ...`), through
    the native template and through the copy steps (a template option the native one lacks)."""
    files = [("undef.j2", "a={{ defined_here }}\n{% set y = 1 %}b={{ y }} c={{ team | upper }} d={{ later }}\n")]
    steps = [("template", {"src": "undef.j2", "dest": "/tmp/ftl2-undef-a"}),
             ("template", {"src": "undef.j2", "dest": "/tmp/ftl2-undef-b", "validate": "test -f %s"})]
    inventory = testbed.ini_inventory() + "[nodes:vars]\ndefined_here=x\n"
    ours, res = our_results(tmp_path / "ours", inventory, steps, None, core, files=files)
    theirs = ansible_playbook_results(inventory, steps, None, tmp_path, core=core, files=files)
    assert len(ours) == len(theirs) == 2, res.stdout[-3000:]
    for (oev, o), (tev, t) in zip(ours, theirs):
        assert (oev, o.get("msg")) == (tev, t.get("msg")), (o, t)
        assert "'team' is undefined" in o["msg"], o


@pytest.mark.parametrize("core", ["newest", "2.15"])
def test_a_missing_key_or_index_in_a_template_is_named_as_ansible_names_it(testbed, tmp_path, core):
    """`{{ facts.missing }}`, `{{ facts['missing'] }}` and `{{ items[5] }}` of defined variables
    fail in the job's ansible-core's words (2.19+: `object of type 'dict' has no attribute ...`;
    2.15: Jinja's `'dict object' has no attribute ...`, `list object has no element 5`)."""
    files = [("attr.j2", "a={{ facts.a }} b={{ facts.missing }}\n"),
             ("item.j2", "{% for i in items %}{{ i }}{% endfor %} {{ facts['nope'] }}\n"),
             ("index.j2", "{{ facts.a }} {{ items[5] }}\n")]
    steps = [("template", {"src": name, "dest": f"/tmp/ftl2-attr-{name}"}) for name, _ in files]
    extra = "-e '{\"facts\": {\"a\": 1}, \"items\": [1, 2]}'"
    ours, res = our_results(tmp_path / "ours", testbed.ini_inventory(), steps, extra, core, files=files)
    theirs = ansible_playbook_results(testbed.ini_inventory(), steps, extra, tmp_path, core=core, files=files)
    assert len(ours) == len(theirs) == 3, res.stdout[-3000:]
    for (oev, o), (tev, t) in zip(ours, theirs):
        assert (oev, o.get("msg")) == (tev, t.get("msg")), (o, t)
    assert "'missing'" in ours[0][1]["msg"] and "5" in ours[2][1]["msg"]
