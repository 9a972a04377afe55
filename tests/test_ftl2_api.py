"""The FTL2 script API inside the sandbox (FTL2-API.md), exercised through real jobs."""

import json

from test_sandbox import job

INV = b"""localhost ansible_connection=local
[web]
web1 ansible_connection=local
web2 ansible_connection=local
[db]
db-1 ansible_connection=local
"""
EXTRA = [("inventory/multi", 0o644, INV)]


def api_job(tmp_path, script, **kw):
    kwargs = kw.pop("kwargs", {})
    kwargs.setdefault("inventory", "inventory/multi")
    return job(tmp_path, script, extra=EXTRA + list(kw.pop("extra", [])), kwargs=kwargs, **kw)


def test_import_paths_resolve(tmp_path):
    res, out = api_job(tmp_path, """
        from ftl2 import automation, AutomationContext
        from ftl2.automation import AutomationError
        from ftl2.ftl_modules import ExecuteResult
        from ftl2.exceptions import FTL2ConnectionError, AuthenticationError
        from ftl2.policy import PolicyDeniedError
        async def run(inventory_path, extravars, runner):
            print("imports ok", AutomationError.__name__, ExecuteResult.__name__)
            return 0
    """)
    assert res.final_status == "successful" and "imports ok AutomationError ExecuteResult" in out, out


def test_name_lookup_and_targets(tmp_path):
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                web = await ftl.web.ping()
                print("web", sorted(r.host for r in web), all(r.success for r in web))
                one = await ftl["db-1"].ping()
                print("db-1", [r.host for r in one])
                same = await ftl.db_1.ping()
                print("db_1", [r.host for r in same])
                fq = await ftl.web.ansible.builtin.ping()
                print("fqcn group", len(fq), fq[0].module)
                ctl = await ftl.ansible.builtin.command(cmd="echo controller")
                print("fqcn controller", ctl["stdout"])
                print("module ns", (await ftl.module.ping())["ping"])
                print("local", (await ftl.local.ping())["ping"], (await ftl.localhost.ping())["ping"])
                r = await ftl.run_on(["web1", "db-1"], "ping")
                print("run_on list", [x.host for x in r])
                r = await ftl.run_on("all:!web", "ping")
                print("run_on pattern", [x.host for x in r])
            return 0
    """)
    assert res.final_status == "successful", out
    for expected in ("web ['web1', 'web2'] True", "db-1 ['db-1']", "db_1 ['db-1']", "fqcn group 2 ansible.builtin.ping",
                     "fqcn controller controller", "module ns pong", "local pong pong",
                     "run_on list ['web1', 'db-1']", "run_on pattern ['localhost', 'db-1']"):
        assert expected in out, (expected, out)


def test_context_attributes(tmp_path):
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation(fail_fast=False) as ftl:
                print("groups", sorted(ftl.hosts.groups), "all", [h.name for h in ftl.hosts.all],
                      "web", [h.name for h in ftl.hosts["web"]])
                print("in", "web1" in ftl.hosts, "web" in ftl.hosts, "nope" in ftl.hosts)
                await ftl.web.ping()
                bad = await ftl.web.command(cmd="false")
                print("results", len(ftl.results), "failed", ftl.failed, "errors", len(ftl.errors))
                print("msg", ftl.error_messages[0])
                print("result", bad[0].success, bad[0].changed, bad[0].output["rc"], bad[0].error)
                print("check_mode", ftl.check_mode)
            return 0
    """)
    assert "groups ['db', 'ungrouped', 'web'] all ['localhost', 'web1', 'web2', 'db-1'] web ['web1', 'web2']" in out, out
    assert "in True True False" in out
    assert "results 4 failed True errors 2" in out
    assert "msg non-zero return code" in out  # FTL2's error_messages: each failed result's error
    assert "result False True 1 non-zero return code" in out
    assert "check_mode False" in out
    assert res.final_status == "failed" and res.rc == 2  # hosts failed although the script returned 0


def test_fail_fast_raises_automation_error_with_the_result(tmp_path):
    res, out = api_job(tmp_path, """
        from ftl2.automation import AutomationError
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                try:
                    await ftl.command(cmd="false")
                except AutomationError as e:
                    print("raised", e.result["rc"], "|", e)
                hosts = await ftl.web.command(cmd="false")
                print("host calls never raise", [r.success for r in hosts])
            return 0
    """)
    assert "raised 1 | Module 'command' failed: non-zero return code (module: command, host: localhost)" in out, out
    assert "host calls never raise [False, False]" in out


def test_refusals_are_clear(tmp_path):
    res, out = api_job(tmp_path, """
        from ftl2.exceptions import ExcludedModuleError, ModuleNotAllowedError, UnsupportedParameterError
        from ftl2 import automation
        async def run(inventory_path, extravars, runner):
            async with runner.automation(modules=["ping", "ansible.builtin.command"]) as ftl:
                try:
                    await ftl.debug(msg="hi")
                except ExcludedModuleError as e:
                    print("excluded:", e)
                try:
                    await ftl.shell(cmd="true")
                except ModuleNotAllowedError as e:
                    print("not allowed:", e)
                await ftl.command(cmd="true")
            try:
                automation(state_file="/tmp/state.json")
            except UnsupportedParameterError as e:
                print("unsupported:", e)
            try:
                automation(record="audit.json")
            except UnsupportedParameterError as e:
                print("unsupported:", e)
            automation(auto_install_deps=True, gate_modules="auto", print_summary=False, verbose=False)
            try:
                automation(bogus_param=1)
            except TypeError as e:
                print("unknown:", e)
            for bad in ({"modules": "ping"}, {"check_mode": "yes"}, {"on_event": 5}):
                try:
                    automation(**bad)
                except TypeError as e:
                    print("wrong type:", e)
            async with runner.automation() as ftl:
                for call in (lambda: ftl.add_host(7), lambda: ftl.add_host("h", groups=5),
                             lambda: ftl.run_on("localhost", 5)):
                    try:
                        call()
                    except TypeError as e:
                        print("wrong type:", e)
            automation(state_file=None, record=False)
            async with runner.automation() as ftl:
                r = await ftl.run_on("localhost", "community.general.nosuch")
                print("unknown module:", r[0].error)
            return 0
    """)
    assert "Module 'debug' is not available in FTL2" in out and "Alternative: print()" in out, out
    assert "not allowed: module 'shell' is not in" in out
    assert "unsupported: automation(state_file='/tmp/state.json') is not supported inside ftl2-runner: the state file must be in the job's scratch directory" in out, out
    assert "unsupported: automation(record=...) is not supported inside ftl2-runner: an audit recording" in out
    # Harmless FTL2 options are accepted; those that change nothing say so.
    assert "[WARNING]: automation(auto_install_deps=...) has no effect in ftl2-runner: ftl2-runner does not install" in out
    assert "[WARNING]: automation(gate_modules=...) has no effect in ftl2-runner: ftl2-runner has no gates" in out
    assert "print_summary" not in out
    assert "unknown: automation() got an unexpected keyword argument 'bogus_param'" in out
    for expected in ("automation() argument 'modules' must be a list of names, not str ('ping')",
                     "automation() argument 'check_mode' must be bool, not str ('yes')",
                     "automation() argument 'on_event' must be a callable, not int (5)",
                     "add_host() argument 'hostname' must be str, not int (7)",
                     "add_host() argument 'groups' must be str or list or tuple, not int (5)",
                     "run_on() argument 'module_name' must be str, not int (5)"):
        assert "wrong type: " + expected in out, (expected, out)
    # Which message depends on the EE's ansible-core: test_ansible_modules checks both.
    assert "unknown module: " in out and "community.general.nosuch" in out.split("unknown module: ")[1]


def test_check_mode_from_the_script_and_from_awx(tmp_path):
    marker = tmp_path / "created-by-job"
    script = f"""
        async def run(inventory_path, extravars, runner):
            async with runner.automation(**extravars.get("kw", {{}})) as ftl:
                r = await ftl.command(cmd="touch {marker}")
                print("check", ftl.check_mode, "skipped", r.get("skipped", False))
            return 0
    """
    res, out = api_job(tmp_path / "a", script.replace('extravars.get("kw", {})', '{"check_mode": True}'))
    assert "check True skipped True" in out and not marker.exists(), out
    res, out = api_job(tmp_path / "b", script, extra=[("env/cmdline", 0o600, b"--check")])
    assert "check True skipped True" in out and not marker.exists(), out
    skipped = [e for e in res.events if e["event"] == "runner_on_skipped"]
    assert len(skipped) == 1
    res, out = api_job(tmp_path / "c", script)
    assert "check False skipped False" in out and marker.exists(), out


def test_secrets_are_resolved_by_the_host_and_never_seen(tmp_path):
    secret = "sup3rsecret"
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation(secrets=["DB_PASSWORD"],
                                         secret_bindings={"shell": {"stdin": "DB_PASSWORD"}}) as ftl:
                print("script sees", ftl.secrets["DB_PASSWORD"], repr(ftl.secrets["DB_PASSWORD"]))
                r = await ftl.shell(cmd='read x; [ ${#x} -eq 11 ] && echo LEN-OK; echo "$x"')
                print("stdout", r["stdout"].splitlines())
                try:
                    ftl.secrets["NOT_DECLARED"]
                except KeyError as e:
                    print("undeclared", e)
            return 0
    """, kwargs={"envvars": {"DB_PASSWORD": secret}})
    assert "script sees ******** '********'" in out, out
    assert "stdout ['LEN-OK', '********']" in out
    assert "undeclared" in out
    assert secret.encode() not in res.stdout


def test_add_and_remove_hosts_at_run_time(tmp_path):
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                ftl.add_host("newbox", ansible_connection="local", groups=["extra"], role="x")
                r = await ftl.extra.ping()
                print("added", [x.host for x in r], "extra" in ftl.hosts)
                await ftl.remove_host("newbox")
                print("removed", "newbox" in ftl.hosts)
            return 0
    """)
    assert "added ['newbox'] True" in out and "removed False" in out, out


def test_limit_from_awx_restricts_every_target_but_the_controller(tmp_path):
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                print("web", [r.host for r in await ftl.web.ping()])
                print("all", [r.host for r in await ftl.run_on("all", "ping")])
                # The controller is not an inventory host (a playbook's delegate_to: localhost).
                print("controller", (await ftl.ping())["ping"], (await ftl.local.command(cmd="echo c"))["stdout"])
                print("localhost as a host", [r.host for r in await ftl.run_on("localhost", "ping")])
            return 0
    """, extra=[("env/cmdline", 0o600, b"-l web1")])
    assert res.final_status == "successful", out
    assert "web ['web1']" in out and "all ['web1']" in out, out
    assert "controller pong c" in out and "localhost as a host []" in out, out


def test_user_on_event_callback_gets_ftl2_events(tmp_path):
    res, out = api_job(tmp_path, """
        from ftl2 import automation
        async def run(inventory_path, extravars, runner):
            seen = []
            async with automation(inventory=inventory_path, on_event=seen.append) as ftl:
                await ftl.web.ping()
            print("events", [(e["event"], e.get("host")) for e in seen])
            return 0
    """)
    assert "('module_start', 'web1'), ('module_start', 'web2')" in out and "('module_complete', 'web1')" in out, out
    # The runner's own callback is not double-reported.
    assert sum(1 for e in res.events if e["event"] == "runner_on_ok") == 2


def test_only_used_secrets_are_scrubbed(tmp_path):
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                r = await ftl.command(cmd="echo job 4242 token")
                print("out:", r["stdout"])
            return 0
    """, kwargs={"envvars": {"JOB_ID": "4242", "SOME_TOKEN": "token"}})
    assert "out: job 4242 token" in out, out


def test_facts_cached_by_awx_are_host_vars(tmp_path):
    cached = json.dumps({"ansible_distribution": "CachedOS", "ansible_memtotal_mb": 1234}).encode()
    res, out = api_job(tmp_path, """
        from ftl2 import _host
        async def run(inventory_path, extravars, runner):
            v = _host.host_vars("web1")
            print("facts", v["ansible_distribution"], v["ansible_facts"]["memtotal_mb"], "ansible_facts" in _host.host_vars("web2"))
            return 0
    """, kwargs={"ident": "fc", "fact_cache_type": "jsonfile"},
        extra=[("artifacts/fc/fact_cache/web1", 0o600, cached)])
    assert "facts CachedOS 1234 False" in out, out
    # The cache travels back to AWX unchanged when nothing gathered new facts.
    assert res.artifacts().read("fact_cache/web1") == cached


FTL2_STYLE = '''
import asyncio
import sys
from ftl2 import automation

async def main():
    async with automation(quiet=True) as ftl:
        r = await ftl.local.command(cmd="echo hello")
        print("type", type(r).__name__)
        print("stdout", r["stdout"].strip(), "rc", r["rc"], "changed", r["changed"])
        p = await ftl.local.ping()
        print("ping", p["ping"])
    print("name", __name__, "argv0", sys.argv[0].rsplit("/", 1)[-1])
    return 3

if __name__ == "__main__":
    rc = asyncio.run(main())
    print("main returned", rc)
'''
PRINTED = ("type ", "stdout ", "ping ", "name ", "main returned ")


def test_a_script_in_ftl2_style_runs_unchanged_as_under_ftl2(tmp_path):
    """FTL2's own way to write a script (no run(); asyncio.run(main()) under the __main__ guard),
    run by the real FTL2 0.4.7 and by a job: the same printed lines."""
    import subprocess

    from test_ansible_modules import NEWEST_BIN

    script = tmp_path / "ftl2_style.py"
    script.write_text(FTL2_STYLE)
    real = subprocess.run([str(NEWEST_BIN / "python"), str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert real.returncode == 0, f"FTL2 0.4.7 is not usable in {NEWEST_BIN} (.ci/run installs it): {real.stderr[-2000:]}"
    theirs = [l for l in real.stdout.splitlines() if l.startswith(PRINTED)]
    res, out = job(tmp_path / "ours", FTL2_STYLE, name="ftl2_style.py")
    ours = [l for l in out.splitlines() if l.startswith(PRINTED)]
    assert len(theirs) == 5 and ours == theirs, (ours, theirs)
    assert res.final_status == "successful", out


def test_ftl2_style_scripts_get_extravars_exit_codes_and_a_warning_when_nothing_ran(tmp_path):
    res, out = job(tmp_path / "a", """
        import sys
        from ftl2.job import extravars
        print("greeting is", extravars["greeting"])
        sys.exit(4)
    """)
    assert "greeting is hello" in out and res.final_status == "failed" and "rc=4" in res.statuses[-1]["job_explanation"]
    res, out = job(tmp_path / "b", """
        async def runn(inventory_path, extravars, runner):
            pass
    """)
    assert res.final_status == "successful"
    assert "defines no run() and entered no automation(): nothing ran on any host" in out, out


def test_task_events_carry_the_script_line_as_task_path(tmp_path):
    """AWX shows event_data.task_path (a playbook's file:line); a script's calls carry theirs,
    also when gathered or made through run_on; with -vv the output names it as Ansible does."""
    res, out = api_job(tmp_path, """
        import asyncio
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.web.ping(_name="direct")
                await asyncio.gather(ftl.db.ping(_name="gathered"), ftl.run_on("web1", "ping", _name="run_on"))
            return 0
    """, kwargs={"cmdline": "-vv"})
    assert res.final_status == "successful", out
    script = str(tmp_path / "scripts" / "main.py")
    paths = {e["event_data"]["task"]: e["event_data"]["task_path"] for e in res.events
             if e["event"] == "playbook_on_task_start"}
    assert paths == {"direct": f"{script}:5", "gathered": f"{script}:6", "run_on": f"{script}:6"}, paths
    assert f"task path: {script}:5" in out, out


def test_private_names_are_attribute_errors_never_module_calls(tmp_path):
    """As FTL2: `ftl._x` raises AttributeError (it used to become a call of a module `_x`)."""
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                for get in (lambda: ftl._secret_thing, lambda: ftl.web._x, lambda: ftl.local._y):
                    try:
                        get()
                        print("no error")
                    except AttributeError as e:
                        print("AttributeError", e)
            return 0
    """)
    assert res.final_status == "successful", out
    assert out.count("AttributeError") == 3 and "no error" not in out, out
    assert "AttributeError _secret_thing" in out, out
    assert not [e for e in res.events if e["event"] == "playbook_on_task_start"]


def test_a_call_never_awaited_is_reported_with_its_line_and_tasks_still_work(tmp_path):
    res, out = api_job(tmp_path, """
        import asyncio
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                ftl.web.ping()
                task = asyncio.create_task(ftl.db.ping(_name="as a task"))
                later = ftl.run_on("web1", "ping", _name="awaited later")
                print("task", [r.host for r in await task], "later", [r.host for r in await later])
            return 0
    """)
    script = str(tmp_path / "scripts" / "main.py")
    assert f"[WARNING]: the call of ping at {script}:5 was never awaited, so it did not run" in out, out
    assert "task ['db-1'] later ['web1']" in out, out
    assert "RuntimeWarning" not in out, out
    tasks = [e["event_data"]["task"] for e in res.events if e["event"] == "playbook_on_task_start"]
    assert tasks == ["as a task", "awaited later"], tasks


def test_a_misspelt_group_says_what_was_tried_with_the_closest_names(tmp_path):
    res, out = api_job(tmp_path, """
        async def run(inventory_path, extravars, runner):
            async with runner.automation(fail_fast=False) as ftl:
                await ftl.webb.ping()
            return 0
    """)
    assert "[WARNING]: 'webb' is not a host or group of the inventory (closest: web" in out, out
    assert "so ftl.webb.ping() was taken as a module, which does not exist either" in out, out


def test_an_inventory_file_given_to_automation_is_loaded_never_ignored(tmp_path):
    """automation(inventory="file") as FTL2 takes it: the file (beside the script) and its
    group_vars/host_vars join the job's inventory, parsed by Ansible's rules; a missing file is a
    warning (FTL2's default ignore_missing_inventory=True) or FileNotFoundError; a file the sandbox
    cannot read is missing to the script; a broken one is a ValueError naming it."""
    scripts = tmp_path / "scripts"
    (scripts / "group_vars").mkdir(parents=True)
    (scripts / "host_vars" / "extra-2").mkdir(parents=True)
    (scripts / "extra.yml").write_text("""
all:
  children:
    extra:
      hosts:
        extra-1: {ansible_connection: local, colour: blue}
        extra-2: {ansible_connection: local}
      children:
        extra_child:
          hosts:
            extra-3: {ansible_connection: local}
""")
    (scripts / "group_vars" / "extra.yml").write_text("tier: front\ncolour: red\n")
    (scripts / "host_vars" / "extra-2" / "a.yml").write_text("size: 2\n")
    (scripts / "broken.ini").write_text("[web\nweb1\n")
    res, out = api_job(tmp_path, """
        import os
        from ftl2 import automation
        async def run(inventory_path, extravars, runner):
            async with automation(inventory="extra.yml") as ftl:
                print("hosts", sorted(ftl.hosts.keys()))
                print("extra", [h.name for h in ftl.hosts["extra"]], "child", [h.name for h in ftl.hosts["extra_child"]])
                print("vars", ftl.hosts["extra-1"][0].vars["colour"], ftl.hosts["extra-1"][0].vars["tier"],
                      ftl.hosts["extra-2"][0].vars["size"], ftl.hosts["extra-3"][0].vars["tier"])
                r = await ftl.extra.ping()
                print("pinged", sorted(x.host for x in r))
                await ftl.remove_host("extra-1")
                print("removed", "extra-1" in ftl.hosts)
            async with automation(inventory="missing.yml") as ftl:
                print("still", "web1" in ftl.hosts)
            for path in ("missing.yml", "/etc/hostname"):
                try:
                    async with automation(inventory=path, ignore_missing_inventory=False):
                        pass
                except FileNotFoundError as e:
                    print("FileNotFoundError", e)
            try:
                async with automation(inventory="broken.ini"):
                    pass
            except ValueError as e:
                print("ValueError", e)
            return 0
    """)
    assert "hosts ['db-1', 'extra-1', 'extra-2', 'extra-3', 'localhost', 'web1', 'web2']" in out, out
    assert "extra ['extra-1', 'extra-2', 'extra-3'] child ['extra-3']" in out, out
    assert "vars blue front 2 front" in out, out  # host vars over group_vars, host_vars/ dirs read
    assert "pinged ['extra-1', 'extra-2', 'extra-3']" in out and "removed False" in out, out
    assert "[WARNING]: inventory file " in out and "missing.yml not found" in out and "still True" in out, out
    assert "FileNotFoundError Inventory file not found: " in out and "FileNotFoundError Inventory file not found: /etc/hostname" in out, out
    assert "ValueError inventory " in out and "broken.ini" in out, out
    assert res.final_status == "successful", out


def test_host_calls_read_as_ftl2s_results_and_ping_raises_as_ftl2(tmp_path):
    """FTL2 runs ping and wait_for_connection on hosts natively: ping gives {"ping": "pong"} and
    raises FTL2ConnectionError for a host that does not answer; wait_for_ssh gives elapsed or
    TimeoutError. Here they run the modules (tasks AWX shows) with those shapes; any host call's
    results also read like one result dict where all hosts agree; become= on a host call is
    privilege escalation, as in FTL2; gate features say they need FTL2's gate; template's and
    shell's FTL2 parameters (variables as keywords, cmd positional)."""
    (tmp_path / "scripts").mkdir(parents=True)
    (tmp_path / "scripts" / "t.j2").write_text("port={{ port }}\n")
    res, out = api_job(tmp_path, """
        from ftl2.exceptions import FTL2ConnectionError
        async def run(inventory_path, extravars, runner):
            async with runner.automation(fail_fast=False) as ftl:
                r = await ftl.web.ping()
                print("ping", r["ping"], len(r), (await ftl["db-1"].ansible.builtin.ping())["ping"])
                ftl.add_host("gone", ansible_host="127.0.0.1", ansible_port=1, ansible_connection="ssh")
                try:
                    await ftl.run_on("web1:gone", "ping")
                    await ftl["gone"].ping()
                except FTL2ConnectionError as e:
                    print("raised", type(e).__name__, str(e)[:40])
                w = await ftl.web.wait_for_ssh(timeout=5)
                print("waited", sorted(w), w["changed"])
                try:
                    await ftl.gone.wait_for_connection(timeout=2, sleep=1)
                except TimeoutError as e:
                    print("timeout", e)
                c = await ftl.web.command(cmd="echo same")
                print("same", c["stdout"], c.get("nope", "dflt"))
                d = await ftl.web.shell(cmd="echo $$")
                try:
                    d["stdout"]
                except KeyError as e:
                    print("differs", "differs between the 2 hosts" in str(e))
                b = await ftl["web1"].command(cmd="id -un", become=True, become_user="nobody")
                print("become", b["stdout"])
                try:
                    await ftl.web1.command(cmd="true", become_method="pbrun")
                except ValueError as e:
                    print("method", str(e)[:50])
                try:
                    await ftl.web.watch("/etc")
                except NotImplementedError as e:
                    print("gate", str(e)[:40])
                import os, tempfile
                dest = os.path.join(tempfile.gettempdir(), "rendered")
                await ftl.local.template(src="t.j2", dest=dest, port=8080, mode="0600")
                print("rendered", open(dest).read().strip())
                try:
                    await ftl.web1.shell("sleep 1", timeout=5)
                except ValueError as e:
                    print("timeout", str(e)[:40])
                print("positional", (await ftl.web1.shell("echo $((6*7))"))["stdout"])
                try:
                    await ftl.gone.shell("true")
                except FTL2ConnectionError as e:
                    print("shell unreachable", str(e)[:30])
                print("fail_fast off", (await ftl.web1.shell("exit 3"))["rc"])
            async with runner.automation() as ftl:
                from ftl2.automation import AutomationError
                try:
                    await ftl.web1.shell("exit 4")
                except AutomationError as e:
                    print("fail_fast on", e.result.output["rc"], str(e)[:40])
                print("ignored", (await ftl.web1.shell("exit 5", _ignore_errors=True))["rc"])
            return 0
    """)
    assert "ping pong 2 pong" in out, out
    assert "raised FTL2ConnectionError Ping failed on 1/1 host(s): gone:" in out, out
    assert "waited ['changed', 'elapsed'] False" in out, out
    assert "timeout SSH not available on gone after 2 seconds" in out, out
    assert "same same dflt" in out and "differs True" in out, out
    assert "become nobody" in out, out
    assert "method become_method='pbrun' cannot be chosen per call" in out, out
    assert "gate watch() needs FTL2's gate, a helper pr" in out, out
    assert "rendered port=8080" in out, out  # keywords not the module's are template variables
    assert "timeout shell(timeout=...) is not supported by" in out and "positional 42" in out, out
    assert "shell unreachable shell could not reach gone: " in out and "fail_fast off 3" in out, out
    assert "fail_fast on 4 Module 'shell' failed on web1: " in out and "ignored 5" in out, out


def test_state_observations_and_policy_watching_within_the_job(tmp_path):
    """ftl.state as FTL2 keeps it (in the job's scratch, carried across automation() blocks of
    the job, hosts added restored; import_state_files read from beside the script), observe_on_failure
    diagnostics attached to a failed result (run as shell tasks), and watch_policy reloading a
    policy the script rewrote in scratch."""
    (tmp_path / "scripts").mkdir(parents=True)
    (tmp_path / "scripts" / "imported.json").write_text(json.dumps({
        "version": 1, "hosts": {"imp-1": {"ansible_host": "imp-1", "ansible_port": 22, "groups": [],
                                          "ansible_connection": "local"}},
        "resources": {"vm": {"provider": "test", "ip": "10.0.0.9"}}}))
    res, out = api_job(tmp_path, """
        import asyncio, json, os, tempfile
        from ftl2.policy import PolicyDeniedError
        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                print("state", ftl.state.hosts(), ftl.state.has("db"))
                ftl.state.add("db", {"provider": "test", "id": 7})
                ftl.add_host("later", ansible_connection="local", groups=["made"], role="x")
                print("recorded", ftl.state.hosts(), ftl.state.get("db")["id"])
                print("file", os.path.dirname(str(ftl.state.path)) == tempfile.gettempdir())
            async with runner.automation() as ftl:
                print("again", ftl.state.get_host("later")["groups"], ftl.state.resources("test").keys())
                print("restored", [h.name for h in ftl.hosts["made"]], ftl.hosts["later"][0].vars["role"])
                await ftl.remove_host("later")
                print("forgotten", ftl.state.has_host("later"))
            async with runner.automation(state_file=None) as ftl:
                try:
                    ftl.state
                except RuntimeError as e:
                    print("no state", e)
            async with runner.automation(state_file="other.json", import_state_files=["imported.json"]) as ftl:
                print("imported", ftl.state.hosts(), ftl.state.get("vm")["ip"], "imp-1" in ftl.hosts)
            async with runner.automation(fail_fast=False) as ftl:
                ftl.observe_on_failure("command", [{"name": "listing", "cmd": "ls -d {chdir}"},
                                                   {"name": "unknown", "cmd": "echo {nope}"}])
                r = await ftl.web1.command(cmd="false", chdir="/tmp")
                print("observed", r[0].output["observations"])
            rules = os.path.join(tempfile.gettempdir(), "rules.yml")
            with open(rules, "w") as f:
                f.write("rules: []\\n")
            async with runner.automation(policy=rules) as ftl:
                await ftl.watch_policy(interval=0.1)
                await ftl.command(cmd="true")
                with open(rules, "w") as f:
                    f.write("rules:\\n  - {decision: deny, match: {module: command}, reason: frozen}\\n")
                os.utime(rules, (1, 1))
                await asyncio.sleep(0.5)
                try:
                    await ftl.command(cmd="true")
                except PolicyDeniedError as e:
                    print("reloaded", e)
                ftl.unwatch_policy()
            return 0
    """)
    assert "state [] False" in out and "recorded ['later'] 7" in out and "file True" in out, out
    assert "again ['made'] dict_keys(['db'])" in out and "restored ['later'] x" in out, out
    assert "forgotten False" in out, out
    assert "no state State not available. Enable with: automation(state_file='.ftl2-state.json')" in out, out
    assert "imported ['imp-1'] 10.0.0.9 True" in out, out
    assert "observed {'listing': {'stdout': '/tmp', 'stderr': '', 'rc': 0}}" in out, out
    assert "TASK [observe listing]" in out, out
    assert "reloaded Policy denied command on localhost: frozen" in out, out


def test_tracebacks_show_the_scripts_frames_not_the_librarys(tmp_path):
    """A script that raises shows Python's traceback of its own frames, ending at its failing
    line, without the ftl2 package's or asyncio's frames (also when the error is raised inside
    the library, e.g. a refused argument); both entry points."""
    for name, script in (("run.py", """
        def check(value):
            raise ValueError(f"bad value {value}")

        async def run(inventory_path, extravars, runner):
            async with runner.automation() as ftl:
                await ftl.ping()
                check(3)
    """), ("main.py", """
        import asyncio
        from ftl2 import automation

        async def main():
            async with automation(secrets=["TOKEN"]) as ftl:
                await ftl.web1.shell("true", stdin="x ******** y")

        if __name__ == "__main__":
            asyncio.run(main())
    """)):
        res, out = api_job(tmp_path / name, script, name=name)
        tb = out[out.index("Traceback (most recent call last):"):]
        frames = [l for l in tb.splitlines() if l.strip().startswith("File ")]
        assert frames and all(name in f for f in frames), tb
        assert "/ftl2/" not in tb and "asyncio" not in tb.split("\n", 2)[1], tb
        assert ("ValueError: bad value 3" in tb) if name == "run.py" else ("ValueError: module argument stdin contains" in tb), tb
        assert res.final_status == "failed", out
