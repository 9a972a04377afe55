"""`ftl2-runner play`: the same script, sandbox and engine from a terminal, with
ansible-playbook's text and exit codes."""

import subprocess
import textwrap

from conftest import BIN, worker_env

SCRIPT = """
async def run(inventory_path, extravars, runner):
    async with runner.automation(name="all", fail_fast=False) as ftl:
        await ftl.web.ping(_name="ping them")
        await ftl.run_on("w2", "command", cmd=extravars.get("cmd", "true"), _name="maybe fail")
    print("greeting:", extravars.get("greeting"))
    return 0
"""


def play(tmp_path, *args):
    (tmp_path / "main.py").write_text(SCRIPT)
    (tmp_path / "inv").write_text("[web]\nw1 ansible_connection=local\nw2 ansible_connection=local\n")
    return subprocess.run([str(BIN), "play", str(tmp_path / "main.py"), "-i", str(tmp_path / "inv"), *args],
                          capture_output=True, text=True, env=worker_env(), timeout=60)


def test_play_prints_ansible_playbook_text(tmp_path):
    out = play(tmp_path, "-e", "greeting=hello")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "PLAY [all] ****" in text and "TASK [ping them] ****" in text
    assert "ok: [w1]\nok: [w2]\n" in text or "ok: [w2]\nok: [w1]\n" in text
    assert "greeting: hello" in text
    assert "w1                         : ok=1    changed=0" in text
    assert "{" not in text.split("PLAY RECAP")[0].split("TASK [ping them]")[1], "protocol JSON leaked"


def test_play_exit_codes_and_check_mode(tmp_path):
    failed = play(tmp_path, "-e", "cmd=false")
    assert failed.returncode == 2 and "fatal: [w2]: FAILED!" in failed.stdout
    (tmp_path / "vars.yml").write_text("cmd: touch " + str(tmp_path / "made") + "\n")
    checked = play(tmp_path, "--check", "-e", "@" + str(tmp_path / "vars.yml"))
    assert checked.returncode == 0 and "skipping: [w2]" in checked.stdout
    assert not (tmp_path / "made").exists()
    limited = play(tmp_path, "-l", "w1")
    assert "[w2]" not in limited.stdout and "ok: [w1]" in limited.stdout


def test_play_stops_when_its_output_is_closed(tmp_path):
    """`ftl2-runner play main.py | head -1`: once nobody reads, the run stops."""
    (tmp_path / "main.py").write_text(textwrap.dedent("""
        import asyncio
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                while True:
                    await ftl.ping()
    """))
    proc = subprocess.Popen([str(BIN), "play", str(tmp_path / "main.py")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=worker_env())
    assert proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=30) != 0
