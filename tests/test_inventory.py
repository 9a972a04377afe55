"""Inventories: what the script sees must be what Ansible sees (`ansible-inventory --list`,
`ansible --list-hosts`) for AWX, INI, YAML and directory inventories with group/host vars."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FIXTURES, make_stream, make_zip, run_worker, worker_env

VENV_BIN = Path(sys.executable).parent
PATTERNS = ["all", "*", "web", "web:db", "web:&prod", "prod:!canary", "~web0[12]", "web0*", "db-a,top",
            "all:!ungrouped", "nosuch", "~eb0", "~(top|db)", "~web0\\d{1}$", "~[pc]",
            "web[0]", "prod[1:2]", "web[-1]", "web[1:]", "web[:1]", "web0[12]", "all[0]", "web[0],db[1]", "web[7]",
            "web*[1]", "web[0-1]", "prod[3:]", "web[5:]"]

INI = """
top ansible_host=10.0.0.1 level=host
[web]
web[01:03] role=web
[db]
db-[a:b]:2222
[canary]
web02
[prod:children]
web
db
[prod:vars]
env=prod
level=prod
[web:vars]
level=web
[canary:vars]
level=canary
[all:vars]
env=base
x=1
"""

YAML = """
all:
  vars: {a: 0, shared: all}
  hosts:
    lone: {a: 9}
  children:
    web:
      hosts:
        w1: {a: 3}
        w2:
      vars: {a: 1, b: 1, shared: web}
      children:
        canary:
          hosts:
            w2:
          vars: {a: 2}
    db:
      hosts:
        d1:
          ansible_port: 2200
"""


def our_view(tmp_path, files, inventory_rel, patterns=PATTERNS, cmdline=None):
    sdir = tmp_path / "scripts"
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "main.py").write_text(textwrap.dedent(f"""
        import json
        from ftl2 import _host
        PATTERNS = {patterns!r}
        async def run(inventory_path, extravars, runner):
            hosts = _host.list_hosts("all")
            view = {{
                "hostvars": {{h: _host.host_vars(h) for h in hosts}},
                "groups": _host.groups(),
                "patterns": {{p: _host.list_hosts(p) for p in PATTERNS}},
            }}
            print("VIEW " + json.dumps(view))
            return 0
    """))
    entries = [(name, mode, data.encode() if isinstance(data, str) else data) for name, mode, data in files]
    if cmdline:
        entries.append(("env/cmdline", 0o600, cmdline.encode()))
    res = run_worker(make_stream({"ident": "inv", "inventory": inventory_rel}, make_zip(entries)), tmp_path / "runner",
                     env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    line = next((e["stdout"] for e in res.events if e["stdout"].startswith("VIEW ")), None)
    assert line, [e["stdout"] for e in res.events]
    return json.loads(line[5:]), res


def ansible_view(inv_path: Path, patterns=PATTERNS, limit=None):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    out = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(inv_path), "--list"],
                         capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout)
    pats = {}
    for p in patterns:
        cmd = [str(VENV_BIN / "ansible"), "-i", str(inv_path), p, "--list-hosts"]
        if limit:
            cmd += ["--limit", limit]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = r.stdout.strip().splitlines()[1:] if r.returncode == 0 else []
        pats[p] = [l.strip() for l in lines]
    return data, pats


def expand(data, group, seen=None):
    seen = seen or set()
    if group in seen:
        return set()
    seen.add(group)
    g = data.get(group, {})
    hosts = set(g.get("hosts", []))
    for c in g.get("children", []):
        hosts |= expand(data, c, seen)
    return hosts


def assert_same(ours, theirs_data, theirs_patterns, drop=("inventory_hostname", "inventory_hostname_short", "group_names")):
    theirs_hv = theirs_data["_meta"]["hostvars"]
    ours_hv = {h: {k: v for k, v in vs.items() if k not in drop} for h, vs in ours["hostvars"].items()}
    all_hosts = set(theirs_hv) | expand(theirs_data, "all")
    assert set(ours_hv) == all_hosts
    for h in all_hosts:
        assert ours_hv[h] == theirs_hv.get(h, {}), (h, ours_hv[h], theirs_hv.get(h))
    for g, hosts in ours["groups"].items():
        if g == "all":
            continue
        assert set(hosts) == expand(theirs_data, g), g
    for p, hosts in theirs_patterns.items():
        assert sorted(ours["patterns"][p]) == sorted(hosts), (p, ours["patterns"][p], hosts)


def test_ini_with_children_ranges_and_precedence(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text(INI)
    ours, _ = our_view(tmp_path, [("inventory/", 0o755, ""), ("inventory/hosts", 0o644, INI)], "inventory/hosts")
    assert_same(ours, *ansible_view(inv))
    # Inventory order, as Ansible runs hosts.
    assert ours["patterns"]["all"] == ["top", "web01", "web02", "web03", "db-a", "db-b"]


def test_yaml_inventory(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(YAML)
    ours, _ = our_view(tmp_path, [("inventory/", 0o755, ""), ("inventory/hosts.yml", 0o644, YAML)], "inventory/hosts.yml",
                       patterns=["all", "web", "canary", "web:!canary", "db:lone"])
    assert_same(ours, *ansible_view(inv, patterns=["all", "web", "canary", "web:!canary", "db:lone"]))


def test_directory_inventory_with_group_and_host_vars(tmp_path):
    files = {
        "inv/10-hosts.ini": "[web]\nw1\nw2 port_from_ini=1\n[db]\nd1\n",
        "inv/20-more.yml": "all:\n  children:\n    db:\n      hosts:\n        d2:\n",
        "inv/group_vars/all.yml": "common: yes\nlevel: all\n",
        "inv/group_vars/web/main.yml": "level: web\n",
        "inv/group_vars/web/extra.json": "{\"web_extra\": 1}\n",
        "inv/host_vars/w2.yml": "level: w2\nport_from_ini: 2\n",
    }
    root = tmp_path / "ref"
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    entries = [(f"inventory/{rel[len('inv/'):]}", 0o644, c) for rel, c in files.items()]
    ours, _ = our_view(tmp_path, entries, "inventory", patterns=["all", "web", "db"])
    assert_same(ours, *ansible_view(root / "inv", patterns=["all", "web", "db"]))


def test_awx_inventory_script_is_read_not_run(tmp_path):
    stream = (FIXTURES / "transmit-awxlike.stream").read_bytes()
    import io, base64, zipfile
    # Take the AWX script out of the fixture's zip, and make running it detectable.
    b64 = stream.split(b"\n")[2]
    raw = base64.b64decode(b64[: b64.index(b'{"eof"')])
    script = zipfile.ZipFile(io.BytesIO(raw)).read("inventory/hosts").decode()
    marker = tmp_path / "was-executed"
    assert script.startswith("#! /usr/bin/env python3")
    ref = tmp_path / "ref_hosts"
    ref.write_text(script)
    ref.chmod(0o700)
    ours, res = our_view(tmp_path, [("inventory/", 0o755, ""), ("inventory/hosts", 0o700, script)], "inventory/hosts",
                         patterns=["all", "localhost"])
    assert_same(ours, *ansible_view(ref, patterns=["all", "localhost"]))
    assert ours["hostvars"]["localhost"]["inv_var"] == "it's"
    # A script that is not AWX's format is refused, not executed.
    evil = f"#!/bin/sh\ntouch {marker}\necho '{{}}'\n"
    sdir = tmp_path / "c" / "scripts"
    sdir.mkdir(parents=True)
    (sdir / "main.py").write_text("async def run(a, b, c):\n    return 0\n")
    res = run_worker(make_stream({"ident": "x", "inventory": "inventory/hosts"},
                                 make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o700, evil.encode())])),
                     tmp_path / "c" / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    assert res.final_status == "failed"
    assert "refusing to run it" in res.statuses[-1]["job_explanation"]
    assert not marker.exists()


def test_limit_applies_to_every_pattern(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text(INI)
    pats = ["all", "web", "prod:!canary"]
    ours, _ = our_view(tmp_path, [("inventory/", 0o755, ""), ("inventory/hosts", 0o644, INI)], "inventory/hosts",
                       patterns=pats, cmdline="-l 'web:!web03'")
    _, theirs = ansible_view(inv, patterns=pats, limit="web:!web03")
    for p in pats:
        assert sorted(ours["patterns"][p]) == sorted(theirs[p]), p


@pytest.mark.parametrize("name,content,where", [
    ("hosts", "[web\nhost1\n", "line 1"),
    ("hosts", "[web]\nhost1 novalue\n", "line 2"),
    ("hosts.yml", "all:\n  hosts: [a, b]\n", "hosts must be a mapping"),
    ("hosts.yml", "all:\n  bogus: 1\n", "unknown key"),
    ("hosts", "{\"all\": [1, 2]", "not valid JSON"),
    # Bounded: each a clear error naming its cap, never an out-of-memory kill.
    ("hosts", "[web]\nweb[0:99999999]\n", "expands to 100000000 hosts, more than the cap of 100000 "
                                           "(FTL2_INVENTORY_MAX_HOSTS)"),
    ("hosts", "[web]\n" + "".join(f"w{i}-[0:9999]\n" for i in range(11)), "more than 100000 hosts"),
    ("hosts.yml", "all:\n  vars:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
                  + "".join(f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 12)),
     "FTL2_YAML_MAX_ALIAS_VALUES"),
    ("hosts.yml", "all:\n  vars:\n    deep: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper than the YAML parser's limit"),
])
def test_broken_inventory_fails_the_job_naming_file_and_line(tmp_path, name, content, where):
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text("async def run(a, b, c):\n    return 0\n")
    res = run_worker(make_stream({"ident": "bad", "inventory": f"inventory/{name}"},
                                 make_zip([("inventory/", 0o755, b""), (f"inventory/{name}", 0o644, content.encode())])),
                     tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    assert res.final_status == "failed" and res.rc != 0
    why = res.statuses[-1]["job_explanation"]
    assert f"inventory/{name}" in why and where in why, why


def test_an_endless_inventory_file_is_refused_at_the_size_cap(tmp_path):
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text("async def run(a, b, c):\n    return 0\n")
    res = run_worker(make_stream({"ident": "zero", "inventory": "/dev/zero"},
                                 make_zip([("inventory/", 0o755, b"")])),
                     tmp_path / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    assert res.final_status == "failed" and res.rc != 0
    why = res.statuses[-1]["job_explanation"]
    assert "/dev/zero is larger than 67108864 bytes" in why and "FTL2_INVENTORY_MAX_BYTES" in why, why


def test_other_inventory_scripts_run_only_when_the_ee_allows_it(tmp_path):
    script = "#!/bin/sh\necho '{\"web\": {\"hosts\": [\"s1\", \"s2\"], \"vars\": {\"from\": \"script\"}}, \"_meta\": {\"hostvars\": {}}}'\n"
    files = [("inventory/", 0o755, ""), ("inventory/hosts", 0o755, script)]
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text("async def run(a, b, c):\n    return 0\n")
    stream = make_stream({"ident": "s", "inventory": "inventory/hosts"}, make_zip([(n, m, d.encode()) for n, m, d in files]))
    refused = run_worker(stream, tmp_path / "r1", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    assert refused.final_status == "failed" and "FTL2_ALLOW_INVENTORY_SCRIPTS" in refused.statuses[-1]["job_explanation"]
    env = worker_env(FTL2_ALLOW_INVENTORY_SCRIPTS="1")
    sdir2 = tmp_path / "s2"
    sdir2.mkdir()
    (sdir2 / "main.py").write_text("from ftl2 import _host\nasync def run(a, b, c):\n    print('HOSTS', _host.list_hosts('web'), _host.host_vars('s1')['from'])\n    return 0\n")
    env["FTL2_SCRIPT"] = str(sdir2 / "main.py")
    ran = run_worker(stream, tmp_path / "r2", env=env)
    assert ran.final_status == "successful", ran.statuses[-1]
    assert any(e["stdout"] == "HOSTS ['s1', 's2'] script" for e in ran.events)


def test_overlapping_and_deep_groups_load_in_linear_time_as_ansible_sees_them(tmp_path):
    # 30 groups each with the next three as children: every group is reached along
    # exponentially many paths (a path walk took minutes and ignored cancel). Variable precedence
    # by group depth must still be Ansible's.
    lines = ["h0"]
    for i in range(30):
        lines.append(f"[g{i}:children]")
        lines += [f"g{j}" for j in range(i + 1, min(i + 4, 30))]
        lines.append(f"[g{i}:vars]\nlevel={i}\nname_g{i}=x")
    lines += ["[g29]", "h1", "[g27]", "h2", "[g3]", "h3"]
    text = "\n".join(lines) + "\n"
    inv = tmp_path / "dag.ini"
    inv.write_text(text)
    patterns = ["all", "g0", "g28", "g3:&g29", "g0:!g3"]
    ours, _ = our_view(tmp_path / "dag", [("inventory/", 0o755, ""), ("inventory/hosts", 0o644, text)],
                       "inventory/hosts", patterns=patterns)
    assert_same(ours, *ansible_view(inv, patterns=patterns))
    assert len(ours["hostvars"]["h1"]["group_names"]) == 30

    # A chain of 10,000 nested groups (took 168 s), one host at the bottom.
    depth = 10_000
    chain = "".join(f"[c{i}:children]\nc{i + 1}\n" for i in range(depth)) + f"[c{depth}]\nbottom\n"
    sdir = tmp_path / "chain" / "scripts"
    sdir.mkdir(parents=True)
    (sdir / "main.py").write_text(textwrap.dedent(f"""
        from ftl2 import _host
        async def run(inventory_path, extravars, runner):
            names = _host.host_vars("bottom")["group_names"]
            print("CHAIN", len(names), _host.list_hosts("c0"), _host.list_hosts("c{depth}"))
            return 0
    """))
    res = run_worker(make_stream({"ident": "inv", "inventory": "inventory/hosts"},
                                 make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o644, chain.encode())])),
                     tmp_path / "chain" / "runner", env=worker_env(FTL2_SCRIPT=sdir / "main.py"))
    lines = [e["stdout"] for e in res.events if e["stdout"].startswith("CHAIN ")]
    assert lines == [f"CHAIN {depth + 1} ['bottom'] ['bottom']"], [e["stdout"] for e in res.events][-5:]


def test_a_cancel_while_the_inventory_loads_ends_the_job_at_once_and_leaves_nothing(tmp_path):
    """A dynamic inventory that takes long (a script that sleeps) is loading when AWX cancels:
    the job ends canceled right away, as AWX expects it (the real `ansible-runner process`
    reads it), not after the load; the inventory script is not left running."""
    import signal
    import subprocess
    import time

    from conftest import BIN, process, read_until

    script = "#!/bin/sh\nsleep 121.5\necho '{\"web\": {\"hosts\": [\"s1\"]}}'\n"
    sdir = tmp_path / "scripts"
    sdir.mkdir()
    (sdir / "main.py").write_text("async def run(a, b, c):\n    print('RAN')\n    return 0\n")
    stream = make_stream({"ident": "slowinv", "inventory": "inventory/hosts"},
                         make_zip([("inventory/", 0o755, b""), ("inventory/hosts", 0o755, script.encode())]))
    pdd = tmp_path / "runner"
    proc = subprocess.Popen([str(BIN), "worker", f"--private-data-dir={pdd}"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=worker_env(FTL2_SCRIPT=sdir / "main.py", FTL2_ALLOW_INVENTORY_SCRIPTS="1"))
    proc.stdin.write(stream)
    proc.stdin.close()
    buf = read_until(proc.stdout, b'"running"')
    # The worker is now waiting on the inventory script.
    deadline = time.monotonic() + 30
    while not any(b"inventory/hosts" in _cmdline(p) for p in Path("/proc").iterdir() if p.name.isdigit()):
        assert time.monotonic() < deadline, "the inventory script never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    buf += proc.stdout.read()
    # Without the cancel the load alone would take 120 s.
    assert proc.wait(timeout=30) == 254 and proc.stderr.read() == b""
    r, statuses, _ = process(buf, tmp_path / "awx", ident="slowinv")
    assert r.status == "canceled" and b"RAN" not in buf
    time.sleep(0.5)  # SIGTERM was sent to them; give them a moment to go
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
            and (str(pdd).encode() in _cmdline(p) or _cmdline(p) == b"sleep\x00121.5\x00")]
    assert not left, left


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""
