"""The runnable examples in guest-python/examples/ (what the README points script authors at) run
as AWX jobs against loopback sshd hosts and do what they say; run again, they change nothing."""

from pathlib import Path

import pytest

from test_sandbox import job
from testbed import Testbed

EXAMPLES = Path(__file__).resolve().parent.parent / "guest-python" / "examples"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tb = Testbed(tmp_path_factory.mktemp("testbed"), 3).start()
    yield tb
    tb.stop()


def run_example(tmp_path, testbed, name):
    inventory = testbed.ini_inventory().replace("[nodes]", "[all:children]\nnodes\n[nodes]")
    res, out = job(tmp_path, "", name=name, env={"FTL2_SCRIPT": str(EXAMPLES / name)},
                   extra=[("inventory/testbed", 0o644, inventory.encode())],
                   kwargs={"inventory": "inventory/testbed"})
    assert res.final_status == "successful", out
    # What the scripts print (the recap's host lines are not theirs).
    return [l for l in out.splitlines() if l.startswith(("done:", "node", "marker")) and " : ok=" not in l]


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["hello.py", "rolling.py", "web_config.py"]


def test_hello(tmp_path, testbed):
    lines = run_example(tmp_path, testbed, "hello.py")
    assert [l.split(":")[0] for l in lines] == ["node0", "node1", "node2", "done"], lines
    assert lines[-1] == "done: 3 hosts answered"


def test_web_config_changes_once(tmp_path, testbed):
    Path("/tmp/ftl2-example-motd").unlink(missing_ok=True)  # the hosts are this machine
    first = run_example(tmp_path / "1", testbed, "web_config.py")
    assert first[-1].startswith("done: motd changed on ") and first[-1].endswith(" of 3 hosts"), first
    assert first[-1] != "done: motd changed on 0 of 3 hosts", first
    again = run_example(tmp_path / "2", testbed, "web_config.py")
    assert again == ["done: motd changed on 0 of 3 hosts"], again


def test_rolling(tmp_path, testbed):
    lines = run_example(tmp_path, testbed, "rolling.py")
    assert lines[0] == "marker present: False" and lines[-1].startswith("done: 3 hosts on release "), lines
