"""`ftl2-runner modules` and `ftl2-runner doc MODULE`: what a script author can call, side by side
with the EE's own `ansible-doc -l` and `ansible-doc MODULE` (the newest ansible-core and the 2.15
line awx-ee ships), and what an EE without ansible-core says."""
import json
import os
import subprocess

import pytest

from conftest import BIN
from test_ansible_modules import COLLECTIONS, NEWEST_BIN, VENV215_BIN

CORES = {"newest": NEWEST_BIN, "2.15": VENV215_BIN}
NATIVE = {"ping", "command", "shell", "raw", "file", "copy", "stat", "slurp", "fetch", "template",
          "lineinfile", "wait_for_connection", "setup", "gather_facts"}
# With ansible-core, these run its module (their results carry what only it computes; facts
# come from the real setup).
REAL_WITH_CORE = {"copy", "template", "stat", "lineinfile", "setup", "gather_facts"}


def _env(core_bin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "FTL2_ANSIBLE"))}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    env["PATH"] = f"{core_bin}:/usr/bin:/bin" if core_bin else "/usr/bin:/bin"
    return env


def _ours(*args, core_bin=None, cwd=None):
    return subprocess.run([str(BIN), *args], env=_env(core_bin), capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _ansible_doc(core_bin, *args):
    out = subprocess.run([str(core_bin / "ansible-doc"), *args], env=_env(core_bin),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _plain(text):
    """A short description without ansible-doc's markup and quoting (we show I(x) as `x`)."""
    import re
    text = re.sub(r"\b[A-Z]{1,2}\(([^)]*)\)", r"\1", text or "")
    return re.sub(r"[`']", "", text).strip()


@pytest.mark.parametrize("core", list(CORES))
@pytest.mark.parametrize("prefix", ["ansible.builtin", "ansible.posix", "community.general"])
def test_modules_lists_what_ansible_doc_lists(core, prefix):
    theirs = _ansible_doc(CORES[core], "-l", "-j", prefix)
    out = _ours("modules", prefix, "--json", core_bin=CORES[core])
    assert out.returncode == 0, out.stderr
    ours = {m["name"]: m for m in json.loads(out.stdout)["modules"]}
    assert sorted(ours) == sorted(theirs)
    differ = {n: (ours[n]["description"], d) for n, d in theirs.items()
              if _plain(ours[n]["description"]) != _plain(d)}
    assert not differ
    native = {n.rsplit(".", 1)[1] for n, m in ours.items() if m["native"]}
    assert native == ((NATIVE - REAL_WITH_CORE) if prefix == "ansible.builtin" else set())
    # The text form: one line per module, native ones marked, a summary on stderr saying how to
    # call them.
    text = _ours("modules", prefix, core_bin=CORES[core])
    lines = text.stdout.splitlines()
    assert len(lines) == len(theirs)
    assert all(line.endswith("[native]") == (ours[line.split()[0]]["native"]) for line in lines)
    assert f"{len(theirs)} modules" in text.stderr and "ftl2-runner doc NAME" in text.stderr


def test_modules_without_a_filter_lists_every_collection_and_says_where_it_looked():
    out = _ours("modules", "--json", core_bin=NEWEST_BIN)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = [m["name"] for m in data["modules"]]
    assert names == sorted(names) and len(names) == len(set(names))
    namespaces = {n.split(".")[0] for n in names}
    assert {"ansible", "community", "cisco", "amazon"} <= namespaces
    assert str(COLLECTIONS) in data["collection_paths"]
    assert not any("__pycache__" in n or ".async_wrapper" in n for n in names)
    wrong = _ours("modules", "nosuch.collection", core_bin=NEWEST_BIN)
    assert wrong.returncode == 1 and "unable to locate collection nosuch.collection" in wrong.stderr
    assert wrong.stdout == ""
    wrong = _ours("modules", "nosuch", core_bin=NEWEST_BIN)
    assert wrong.returncode == 1 and "no module matches 'nosuch'" in wrong.stderr


def test_an_ee_without_ansible_core_lists_the_native_modules_and_says_so():
    out = _ours("modules", "--json")
    assert out.returncode == 0, out.stderr
    listed = {m["name"]: m for m in json.loads(out.stdout)["modules"]}
    assert set(listed) == {f"ansible.builtin.{n}" for n in NATIVE}
    assert all(m["native"] for m in listed.values())
    # Our own descriptions, for when ansible-core is absent, are ansible-core's.
    theirs = _ansible_doc(NEWEST_BIN, "-l", "-j", "ansible.builtin")
    assert {n: _plain(m["description"]) for n, m in listed.items()} == \
        {n: _plain(theirs[n]) for n in listed}
    text = _ours("modules")
    assert "no ansible-core" in text.stderr and "only the 14 native modules above" in text.stderr


@pytest.mark.parametrize("core", list(CORES))
@pytest.mark.parametrize("module", ["apt", "file", "community.general.ufw", "ansible.posix.synchronize",
                                    "user"])
def test_doc_shows_the_arguments_ansible_doc_shows(core, module):
    theirs = _ansible_doc(CORES[core], "-j", "-t", "module", module)
    (fqcn, entry), = theirs.items()
    options = entry["doc"].get("options") or {}
    out = _ours("doc", module, "--json", core_bin=CORES[core])
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    assert ours["resolved"] == (fqcn if "." in fqcn else f"ansible.builtin.{fqcn}")
    assert {o["name"]: o["required"] for o in ours["options"]} == \
        {n: bool(o.get("required")) for n, o in options.items()}
    assert {o["name"]: sorted(o.get("aliases", [])) for o in ours["options"]} == \
        {n: sorted(o.get("aliases") or []) for n, o in options.items()}
    assert {o["name"]: o.get("choices") for o in ours["options"]} == \
        {n: o.get("choices") for n, o in options.items()}
    text = _ours("doc", module, core_bin=CORES[core]).stdout
    call = module.removeprefix("ansible.builtin.")
    assert f"Called from a script as: await ftl.<hosts>.{call}(" in text
    for name, o in options.items():
        assert f"  {'=' if o.get('required') else '-'} {name}  (" in text, name
    native = "Native: ftl2-runner runs it itself" in text
    assert native == (module == "file")
    if module == "file":
        assert "for calls that use only path, dest, name, state," in " ".join(text.split())


def test_doc_says_what_a_call_of_a_controller_side_action_plugin_does():
    ported = _ours("doc", "ansible.posix.synchronize", core_bin=NEWEST_BIN).stdout
    assert "runs as ftl2-runner's port of it" in ported
    refused = _ours("doc", "ansible.builtin.include_vars", core_bin=NEWEST_BIN)
    assert refused.returncode == 0, refused.stderr
    assert "which ftl2-runner does not run" in " ".join(refused.stdout.split())


def test_doc_of_a_module_that_does_not_exist_names_the_closest_and_where_it_looked():
    out = _ours("doc", "aptt", core_bin=NEWEST_BIN)
    assert out.returncode == 1 and out.stdout == ""
    assert "The module aptt was not found" in out.stderr
    assert str(COLLECTIONS) in out.stderr and "Did you mean: apt" in out.stderr
    removed = _ours("doc", "community.general.atomic_host", core_bin=NEWEST_BIN)
    assert removed.returncode == 1 and "module has been removed" in removed.stderr
    redirected = _ours("doc", "mysql_user", core_bin=NEWEST_BIN)
    assert redirected.returncode == 0, redirected.stderr
    assert "mysql_user is redirected to ansible.mysql.mysql_user" in redirected.stdout
    assert "DEPRECATED: community.mysql.mysql_user has been deprecated" in redirected.stdout


def test_doc_without_ansible_core_shows_a_native_modules_options_and_refuses_the_rest():
    out = _ours("doc", "lineinfile")
    assert out.returncode == 0, out.stderr
    assert "no ansible-core" in out.stdout and "- regexp" in out.stdout
    assert "any other argument needs ansible-core's module, which this EE lacks" in \
        " ".join(out.stdout.split())
    other = _ours("doc", "apt")
    assert other.returncode == 1
    assert "apt is not one of the native modules (ping, command," in other.stderr
