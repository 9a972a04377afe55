"""AutomationContext: what `async with automation(...) as ftl` gives a script, backed by the
ftl2-runner host: module calls, results, the inventory, secrets, policy."""

import asyncio
import enum
import fnmatch
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from .. import _host
from .._site import call_site
from .._excluded import excluded
from ..exceptions import ExcludedModuleError, ModuleNotAllowedError, UnsupportedParameterError
from ..ftl_modules import ExecuteResult, has_ftl_module, list_modules
from ..policy import Policy, PolicyDeniedError
from ..state import State
from .hosts import HostsProxy, host_config
from .proxy import (CONTROLLER, HostResults, HostScopedProxy, ModuleProxy, _become_as_options, _Call,
                    _no_gate)
from .secrets import SecretsView, _reject_masked, without_secrets


class OutputMode(enum.Enum):
    """What a context prints, as FTL2 derives it from quiet/on_event/verbose (`ftl.output_mode`).
    In ftl2-runner the job output is AWX's task events whatever the mode."""

    QUIET = "quiet"
    NORMAL = "normal"
    VERBOSE = "verbose"
    EVENTS = "events"


# The type of `on_event` callbacks: each receives one event dict.
EventCallback = Callable[[dict[str, Any]], None]

# The modules whose work uses a task's variables: they render a template on the controller.
TEMPLATE_MODULES = {"template", "ansible.builtin.template", "ansible.legacy.template"}


def _check_task_vars(module, value):
    """`_vars` is for what a template renders; anywhere else it would be silently unused."""
    if module not in TEMPLATE_MODULES:
        raise TypeError(f"_vars are variables for a template; {module} renders none (pass values as "
                        "its arguments, computed in Python)")
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"_vars must be a dict of variable names to values, not {value!r}")

# FTL2 parameters that cannot be honoured safely in the sandbox: refused when set, with why.
UNSUPPORTED = {
    "record": "an audit recording for replay in a later run would have to outlive the job, "
              "whose scratch directory is removed with it; the job's events are its record",
    "replay": "a recording from an earlier run is a file on the controller's disk, outside the "
              "sandbox, and the job events show what ran",
    "policy_audit": "the audit file would have to be written outside the sandbox; pass on_event= "
                    "to receive every policy_evaluation event",
    "vault_secrets": "the sandbox has no network; vault secrets come from AWX credentials: declare "
                     "them with secrets=[...]",
}

# FTL2 parameters that change nothing here: accepted, and the job output says why.
WITHOUT_EFFECT = {
    "auto_install_deps": "ftl2-runner does not install Python packages at run time; a module "
                         "that lacks one fails naming it; build it into the execution environment",
    "record_deps": "ftl2-runner does not record module dependencies; the execution environment "
                   "holds them",
    "gate_modules": "ftl2-runner has no gates: modules run through its resident module runner",
    "gate_dependencies": "ftl2-runner has no gates: modules run through its resident module runner",
    "gate_subsystem": "ftl2-runner has no gates: modules run through its resident module runner",
    "log_file": "the job output goes to AWX; ftl2-runner writes no log file",
}

# Every result of every context in this job, for runner.has_failures().
_all_results = []


class AutomationError(Exception):
    """A module call failed on the controller while fail_fast was on; `result` is its
    ExecuteResult."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result
        self.message = message

    def __str__(self):
        if self.result:
            return f"{self.message} (module: {self.result.module}, host: {self.result.host})"
        return self.message


def _short(module):
    return module.rsplit(".", 1)[-1]


def _fqcn(name):
    return name if "." in name else f"ansible.builtin.{name}"


def _allowed(module, pattern):
    """`modules=["ping", "ansible.builtin.command", "community.*"]` allowlist matching."""
    return fnmatch.fnmatch(module, pattern) or fnmatch.fnmatch(_fqcn(module), _fqcn(pattern))


class AutomationContext:
    """What `async with automation(...) as ftl` gives a script (FTL2's context). Its parameters
    are FTL2's; `name` (ours) names the play in the job output. Calls, each a task AWX shows:

        await ftl.ping()                       a module on the controller: its result dict
        await ftl.community.general.x(...)     a fully qualified module on the controller
        await ftl.local.command(cmd=...)       the controller (also ftl.localhost)
        await ftl.webservers.ping()            every host of a group, at once: HostResults
        await ftl["db-1"].command(cmd=...)     one inventory host (names that are not Python)
        await ftl.run_on("web:&prod", "ping")  any host pattern: HostResults
        await ftl.module.file(...)             a module even if a host or group has its name

    Underscore keywords are task options: _name, _become, _become_user, _no_log,
    _ignore_errors, _changed_when, _failed_when, _tags, _async, _poll, _vars (template calls).
    A controller call that fails raises AutomationError while fail_fast is on."""

    def __init__(self, modules=None, inventory=None, secrets=None, secret_bindings=None,
                 check_mode=False, verbose=True, quiet=False, on_event=None, fail_fast=True,
                 print_summary=True, print_errors=True, auto_install_deps=False, record_deps=False,
                 deps_file=".ftl2-deps.txt", modules_file=".ftl2-modules.txt", gate_modules=None,
                 gate_dependencies=None, gate_subsystem=False, state_file=".ftl2-state.json",
                 import_state_files=None, log_file="ftl2.log", record=None, replay=None,
                 vault_secrets=None, policy=None, environment="", policy_audit=None,
                 ignore_missing_inventory=False, name=None):
        _check_types("automation", {
            "modules": (modules, _names), "inventory": (inventory, (str, os.PathLike, dict)),
            "secrets": (secrets, _names), "secret_bindings": (secret_bindings, dict),
            "check_mode": (check_mode, bool), "verbose": (verbose, bool), "quiet": (quiet, bool),
            "fail_fast": (fail_fast, bool), "on_event": (on_event, callable),
            "policy": (policy, (str, os.PathLike)), "environment": (environment, str),
            "state_file": (state_file, (str, os.PathLike)),
            "import_state_files": (import_state_files, _names),
            "ignore_missing_inventory": (ignore_missing_inventory, bool), "name": (name, str),
        })
        # FTL2's parameters, each honoured or refused. Output knobs (verbose, quiet, print_summary,
        # print_errors) are accepted: the job output is AWX's task events and recap either way.
        # deps_file/modules_file only matter with record_deps, as in FTL2.
        _refuse_unsupported({"record": record, "replay": replay, "vault_secrets": vault_secrets,
                             "policy_audit": policy_audit})
        _warn_without_effect({
            "auto_install_deps": auto_install_deps, "record_deps": record_deps,
            "gate_modules": gate_modules, "gate_dependencies": gate_dependencies,
            "gate_subsystem": gate_subsystem,
            "log_file": None if log_file == "ftl2.log" else log_file,
        })
        self._state = _open_state(state_file) if state_file else None
        self._import_state_files = [_beside_script(p) for p in import_state_files or []]
        self.print_summary = print_summary
        self.print_errors = print_errors
        self._ignore_missing_inventory = ignore_missing_inventory
        self._inventory = inventory
        self._modules = list(modules) if modules else None
        self._check_mode = check_mode
        self.fail_fast = fail_fast
        self.quiet = quiet
        self.verbose = verbose
        self._on_event = on_event
        self._secrets = SecretsView(secrets)
        self._secret_bindings = dict(secret_bindings or {})
        self._name = name
        self._groups = {}
        self._results = []
        self._hosts = HostsProxy(self)
        self._proxy = ModuleProxy(self)
        # A policy file (or directory of them) is read from the script's readable directories,
        # as FTL2 reads it.
        self._policy_source = _beside_script(policy) if policy else None
        self._policy = _load_policy(self._policy_source) if policy else Policy.empty()
        self._environment = environment
        self._session_id = str(uuid.uuid4())
        self._policy_watch = None
        self._observations = {}
        if isinstance(inventory, dict):
            self._pending_inventory = inventory
        else:
            self._pending_inventory = None

    # -- context management ----------------------------------------------------------------
    async def __aenter__(self):
        global _entered
        _entered += 1
        if self._pending_inventory:
            _load_dict_inventory(self, self._pending_inventory)
        elif isinstance(self._inventory, (str, os.PathLike)) and os.fspath(self._inventory):
            # ("" is a job without an inventory of its own: the seed passes its inventory_path)
            _load_inventory_file(os.fspath(self._inventory), self._ignore_missing_inventory)
        for path in self._import_state_files:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"state file to import not found (or not readable by the "
                                        f"script): {path}")
            _load_state_hosts(State(path), self._state)
        if self._state is not None:
            _load_state_hosts(self._state)
        _host.play_start(self._name or "")
        self._refresh()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        return False

    def _refresh(self):
        self._groups = {k: list(v) for k, v in _host.groups().items()}

    # -- job facts -------------------------------------------------------------------------
    @property
    def results(self):
        """Every ExecuteResult of this context so far (a copy, as FTL2 gives)."""
        return list(self._results)

    @property
    def output_mode(self):
        """FTL2's output mode for the quiet/on_event/verbose given."""
        if self.quiet:
            return OutputMode.QUIET
        if self._on_event is not None:
            return OutputMode.EVENTS
        return OutputMode.VERBOSE if self.verbose else OutputMode.NORMAL

    @property
    def policy(self):
        """The Policy every call is checked against (empty: everything permitted)."""
        return self._policy

    async def reload_policy(self, path=None):
        """Load the policy again (from `path`, which becomes the source, or the one given to
        automation()); the old one stays if the new one does not load."""
        source = _beside_script(path) if path else self._policy_source
        if not source:
            raise ValueError("No policy source to reload from. "
                             "Pass a path or use automation(policy=...) to set the source.")
        self._policy = _load_policy(source)
        if path:
            self._policy_source = source

    @property
    def state(self):
        """The job's State (hosts added and resources recorded, kept across this job's
        automation() blocks in its scratch directory)."""
        if self._state is None:
            raise RuntimeError(
                "State not available. Enable with: automation(state_file='.ftl2-state.json')")
        return self._state

    async def watch_policy(self, interval=1.0):
        """Reload the policy whenever its file (or a file of its directory) changes, checked every
        `interval` seconds, until unwatch_policy() or the end of the script."""
        if self._policy_source is None:
            raise ValueError("No policy source to watch.")
        if self._policy_watch is not None:
            return
        seen = _policy_mtimes(self._policy_source)

        async def watch():
            nonlocal seen
            while True:
                await asyncio.sleep(interval)
                now = _policy_mtimes(self._policy_source)
                if now != seen:
                    seen = now
                    try:
                        await self.reload_policy()
                    except Exception as e:  # noqa: BLE001 -- the old policy stays, as in FTL2
                        print(f"[WARNING]: policy reload failed, the current policy stays: {e}",
                              file=sys.stderr)

        self._policy_watch = asyncio.get_running_loop().create_task(watch())

    def unwatch_policy(self):
        """Stop watching the policy file."""
        if self._policy_watch is not None:
            self._policy_watch.cancel()
            self._policy_watch = None

    def observe_on_failure(self, module_type, observations):
        """Diagnostics to run on a host where a `module_type` call failed: each
        `{"name": ..., "cmd": ...}` (`{param}` filled from the call's arguments) runs as a shell
        task on that host, and its stdout, stderr and rc go to the failed result's
        `output["observations"][name]`, as FTL2 attaches them."""
        if self._modules is not None and not any(_allowed("shell", pat) for pat in self._modules):
            raise ModuleNotAllowedError("observe_on_failure runs its commands with the shell module, "
                                        "which is not in this automation's modules= allowlist")
        for obs in observations:
            if not (isinstance(obs, dict) and isinstance(obs.get("name"), str)
                    and isinstance(obs.get("cmd"), str)):
                raise TypeError(f'each observation is {{"name": str, "cmd": str}}, not {obs!r}')
        self._observations.setdefault(module_type, []).extend(observations)

    async def _observe(self, module, params, results, site):
        """Run the observations registered for `module` on each host where it failed (not where
        the host was unreachable) and attach what they printed to that host's result."""
        loop = asyncio.get_running_loop()
        shown = without_secrets(params)
        for r in results:
            if r.success or r.status == "unreachable":
                continue
            found = {}
            for obs in self._observations[_short(module)]:
                try:
                    cmd = obs["cmd"].format_map(shown)
                except (KeyError, ValueError, IndexError):
                    continue  # a placeholder this call has no argument for, as in FTL2
                verdict = self._policy.evaluate("shell", {"cmd": cmd}, r.host, self._environment)
                if not verdict.permitted:
                    found[obs["name"]] = {"error": _denial("shell", r.host, verdict)}
                    continue
                options = {"name": f"observe {obs['name']}", "failed_when": False, "task_path": site}
                raw = await _host.call_module(loop, r.host, "shell", {"cmd": cmd}, options)
                out = (raw[0].get("result") or {}) if raw else {}
                found[obs["name"]] = {"stdout": str(out.get("stdout", "")).strip(),
                                      "stderr": str(out.get("stderr", "")).strip(), "rc": out.get("rc")}
            if found:
                r.output["observations"] = found

    # FTL2's gate management and gate event listening: no gate exists in ftl2-runner.
    async def gate_deploy(self, target, **kwargs):
        """FTL2's gate deployment: NotImplementedError (ftl2-runner has no gate)."""
        _no_gate("gate_deploy")

    async def gate_drain(self, target, timeout_seconds=300):
        """FTL2's gate draining: NotImplementedError (ftl2-runner has no gate)."""
        _no_gate("gate_drain")

    async def gate_upgrade(self, target, strategy="rolling", drain_timeout=300):
        """FTL2's gate upgrade: NotImplementedError (ftl2-runner has no gate)."""
        _no_gate("gate_upgrade")

    async def gate_restart(self, target, force=False, drain_timeout=300):
        """FTL2's gate restart: NotImplementedError (ftl2-runner has no gate)."""
        _no_gate("gate_restart")

    async def gate_decommission(self, target, cleanup=True, drain_timeout=300):
        """FTL2's gate removal: NotImplementedError (ftl2-runner has no gate)."""
        _no_gate("gate_decommission")

    async def listen(self, timeout=None):
        """FTL2's wait for gate events: NotImplementedError (ftl2-runner has no gate)."""
        _no_gate("listen")

    @property
    def session_id(self):
        """This context's unique id."""
        return self._session_id

    @property
    def hosts(self):
        """The inventory's groups and hosts."""
        return self._hosts

    @property
    def secrets(self):
        """The secrets declared with `secrets=[...]`, as references the host fills in."""
        return self._secrets

    @property
    def available_modules(self):
        """FTL2's own module names (its in-process ones), narrowed to the `modules=` allowlist as
        FTL2 narrows it. Every Ansible module of the EE can be called besides these."""
        known = list_modules()
        if self._modules is None:
            return known
        return [m for m in self._modules if m in known or m.rsplit(".", 1)[-1] in known]

    async def execute(self, module_name, params):
        """Run `module_name` with `params` on the controller; its result dict (FTL2's method
        behind `ftl.<module>()`)."""
        return await self._call(CONTROLLER, module_name, dict(params), True, call_site())

    @property
    def module(self):
        """Modules by name, bypassing host and group names (`ftl.module.file(...)`)."""
        return self._proxy.module

    @property
    def check_mode(self):
        """Whether calls run in check mode: the script's check_mode=True or the job's --check."""
        return bool(self._check_mode) or bool(_host.job_info().get("check_mode"))

    @property
    def failed(self):
        """Whether any call of this context failed on some host."""
        return any(not r.success for r in self._results)

    @property
    def errors(self):
        """The failed ExecuteResults of this context."""
        return [r for r in self._results if not r.success]

    @property
    def error_messages(self):
        """The error text of each failed result of this context (FTL2's list)."""
        return [r.error for r in self._results if not r.success and r.error]

    # -- name lookup -----------------------------------------------------------------------
    def __getattr__(self, name):
        if name.startswith("_"):
            # As FTL2: a private or mistyped attribute is an AttributeError, never a module call.
            raise AttributeError(name)
        return getattr(self._proxy, name)

    def __getitem__(self, name):
        return self._proxy[name]

    def _explain_unknown_target(self, module, results):
        """`ftl.webserver.ping()` with a group `webservers`: the name was tried as a host, a group
        and a module; when the module does not exist either, say so, with the closest names."""
        first = module.split(".", 1)[0]
        # Not found by the EE's ansible-core, or no ansible-core to look in.
        missing = any(("was not found in configured module paths" in str((r.output or {}).get("msg", ""))
                       or "cannot run the Ansible module" in str((r.output or {}).get("msg", "")))
                      for r in results if not r.success)
        if not missing:
            return
        import difflib

        names = set(self._groups) | set(self._groups.get("all", []))
        close = difflib.get_close_matches(first, sorted(names), n=3, cutoff=0.6)
        hint = f" (closest: {', '.join(close)})" if close else ""
        print(f"[WARNING]: {first!r} is not a host or group of the inventory{hint}, so "
              f"{'.'.join(['ftl', module])}() was taken as a module, which does not exist either",
              file=sys.stderr)

    def _resolve_target(self, name):
        if name in ("local", "localhost"):
            return None
        known = set(self._groups)
        for hosts in self._groups.values():
            known.update(hosts)
        for candidate in (name, name.replace("_", "-")):
            if candidate in known:
                return candidate
        return None

    # -- inventory changes -----------------------------------------------------------------
    def add_host(self, hostname, ansible_host=None, ansible_user=None, ansible_port=22,
                 ansible_python_interpreter="python3", ansible_password=None, ansible_become=False,
                 ansible_become_user="root", groups=None, **vars):
        """Add a host to the job's inventory (in `groups`, else `ungrouped`) and return its
        HostConfig. Parameters left at their defaults leave the variable unset, so Ansible's
        defaults apply (interpreter discovery; the job's credential's user)."""
        _check_types("add_host", {
            "hostname": (hostname, str), "ansible_host": (ansible_host, str),
            "ansible_user": (ansible_user, str), "ansible_port": (ansible_port, (int, str)),
            "ansible_python_interpreter": (ansible_python_interpreter, str),
            "ansible_become": (ansible_become, bool), "ansible_become_user": (ansible_become_user, str),
            "groups": (groups, (str, list, tuple)),
        })
        hostvars = dict(vars)
        for key, value, default in (
                ("ansible_host", ansible_host, None), ("ansible_user", ansible_user, None),
                ("ansible_port", ansible_port, 22),
                ("ansible_python_interpreter", ansible_python_interpreter, "python3"),
                ("ansible_password", ansible_password, None),
                ("ansible_become", ansible_become, False),
                ("ansible_become_user", ansible_become_user, "root")):
            if value is not None and value != default:
                hostvars[key] = value
        if isinstance(groups, str):
            groups = [groups]
        _check(lambda: _host.add_host(hostname, groups or [], hostvars))
        self._refresh()
        if self._state is not None:
            self._state.add_host(hostname, ansible_host=ansible_host, ansible_user=ansible_user,
                                 ansible_port=ansible_port, groups=groups or ["ungrouped"], **vars)
        return host_config(hostname)

    async def remove_host(self, hostname):
        """Remove a host from the job's inventory."""
        _check(lambda: _host.remove_host(hostname))
        if self._state is not None:
            self._state.remove_host(hostname)
        self._refresh()

    # -- running modules -------------------------------------------------------------------
    def run_on(self, hosts, module_name, _become_overrides=None, **params):
        """Run `module_name` on `hosts` (a pattern, host, group, HostScopedProxy, HostConfig or a
        list of them); FTL2's `_become_overrides` dict (become, become_user) escalates."""
        _check_types("run_on", {"module_name": (module_name, str),
                                "_become_overrides": (_become_overrides, dict)})
        target = str(_target_of(hosts))
        if _become_overrides:
            params = _become_as_options(dict(params, **{k: v for k, v in _become_overrides.items()
                                                         if v is not None}), target)
        site = call_site()
        return _Call(self._call(target, module_name, params, False, site), module_name, site)

    async def _call(self, target, module, params, controller, site=""):
        keyword = excluded(module)
        if keyword is not None:
            raise ExcludedModuleError(keyword)
        if self._modules is not None and not any(_allowed(module, pat) for pat in self._modules):
            raise ModuleNotAllowedError(f"module {module!r} is not in this automation's modules= allowlist")
        params = dict(params)
        if self._secrets.keys():
            _reject_masked(params, declared=self._secrets.keys())
        task_name = params.pop("_name", None)
        for glob, binding in self._secret_bindings.items():
            if fnmatch.fnmatch(module, glob) or fnmatch.fnmatch(_short(module), glob):
                for param, secret in binding.items():
                    params.setdefault(param, self._secrets.ref(secret))
        options = {}
        if task_name is not None:
            options["name"] = str(task_name)
        # Task keywords, as Ansible has them on tasks: _no_log, _ignore_errors, _become,
        # _become_user, _async/_poll (run in the background, checked every _poll seconds) and
        # _tags (run only when the job's --tags/--skip-tags select it), _vars (a template's own
        # variables, as a task's `vars:`).
        for key in ("no_log", "ignore_errors", "become", "become_user", "async", "poll", "tags",
                    "changed_when", "failed_when", "vars"):
            if f"_{key}" in params:
                options[key] = params.pop(f"_{key}")
        if "vars" in options:
            _check_task_vars(module, options["vars"])
        for key in ("changed_when", "failed_when"):
            if key in options and not isinstance(options[key], bool):
                raise TypeError(f"_{key} must be True or False, not {options[key]!r}: decide it in Python "
                                "(a playbook's expression is a condition the script can compute)")
        if "tags" in options:
            tags = options["tags"]
            if isinstance(tags, str):
                tags = [t.strip() for t in tags.split(",") if t.strip()]
            if not isinstance(tags, (list, tuple, set)) or not all(isinstance(t, str) for t in tags):
                raise TypeError(f"_tags must be a tag name or a list of tag names, not {options['tags']!r}")
            options["tags"] = list(tags)
        for key in ("async", "poll"):
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"_{key} must be a whole number of seconds (0 or more), not {value!r}")
        if "poll" in options and not options.get("async"):
            raise ValueError("_poll applies to a call with _async (seconds it may run in the background)")
        if self._check_mode:
            options["check_mode"] = True  # the job's own check mode applies whatever the script says
        if site:
            options["task_path"] = site
        if controller:
            options["controller"] = True
        denied, target, hosts = self._check_policy(module, params, target, controller)
        check_mode = self.check_mode
        # As FTL2: one module_start per host the call runs on (listed by the policy check
        # whenever someone listens).
        for host in hosts or []:
            self._notify({"event": "module_start", "module": module, "host": host,
                          "check_mode": check_mode})
        started_at = time.time()
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        raw = await _host.call_module(loop, target, module, params, options) if target else []
        duration = time.monotonic() - started
        # FTL2 marks results its in-process modules made (on the controller) as used_ftl.
        used_ftl = controller and has_ftl_module(module)
        results = denied + [_to_result(r, module, params, duration, used_ftl) for r in raw]
        for r in results:
            r.timestamp = started_at
        if controller and "." in module:
            self._explain_unknown_target(module, results)
        if not controller and self._observations.get(_short(module)):
            await self._observe(module, params, results, site)
        self._results.extend(results)
        _all_results.extend(results)
        for r in results:
            self._notify({
                "event": "module_complete", "module": module, "host": r.host, "success": r.success,
                "changed": r.changed, "check_mode": check_mode, "duration": r.duration,
                "error": r.error, "output": r.output,
            })
        if not controller:
            return HostResults(results)
        if not results:
            raise AutomationError(f"{module}: no host matched {target!r}", None)
        r = results[0]
        if not r.success and self.fail_fast:
            raise AutomationError(f"Module '{module}' failed: {r.error}", result=r)
        return r.output

    def _check_policy(self, module, params, target, controller):
        """FTL2's policy check before a call: on the controller a denial raises
        PolicyDeniedError; on hosts each denied host gets a failed result and the call goes on
        with the others. Returns (denied results, the target left to run on, the hosts it runs on
        when they were listed, else None)."""
        listening = self._listening()
        if not self._policy.rules and not listening:
            return [], target, None
        shown = without_secrets(params)
        hosts = ["localhost"] if controller else _host.list_hosts(target)
        denied, allowed = [], []
        for host in hosts:
            verdict = self._policy.evaluate(module, shown, host, self._environment)
            if listening:
                # FTL2's audit event for every evaluation, permitted or not.
                self._notify({
                    "event": "policy_evaluation", "session_id": self._session_id, "module": module,
                    "host": host, "environment": self._environment, "params": dict(params),
                    "decision": "permitted" if verdict.permitted else "denied",
                    "rule": verdict.rule.to_dict() if verdict.rule else None, "reason": verdict.reason,
                })
            if verdict.permitted:
                allowed.append(host)
                continue
            message = _denial(module, host, verdict)
            if controller:
                raise PolicyDeniedError(message, rule=verdict.rule)
            denied.append(ExecuteResult.from_error(message, module, host))
        if not denied:
            return [], target, allowed
        return denied, ":".join(allowed), allowed

    def _listening(self):
        """Whether the script gave an on_event callback of its own (the seed's `on_event` argument
        is the host's, which already records every call for AWX)."""
        cb = self._on_event
        return cb is not None and not getattr(cb, "__ftl2_runner__", False)

    def _notify(self, event):
        if self._listening():
            event["timestamp"] = time.time()
            self._on_event(event)


def _denial(module, host, verdict):
    """FTL2's words for a call its policy denied on a host."""
    return f"Policy denied {module} on {host}: {verdict.reason}"


def _beside_script(path):
    """A path the script gave, relative ones taken from the script's directory."""
    from .. import job

    path = os.fspath(path)
    if os.path.isabs(path) or not job.script_path:
        return path
    return os.path.join(os.path.dirname(os.path.abspath(job.script_path)), path)


# Largest inventory (with its variable files) a script may hand the host, as text.
MAX_INVENTORY_BYTES = 16 << 20


def _load_inventory_file(path, ignore_missing):
    """`automation(inventory="file")`: the file and the group_vars/host_vars beside it, read
    here (within what the sandbox lets the script read), join the job's inventory, parsed by the
    host as Ansible parses inventories. The job's own inventory path changes nothing."""
    from .. import job

    if job.inventory_path and os.path.normpath(path) == os.path.normpath(job.inventory_path):
        return
    path = _beside_script(path)
    if not os.path.exists(path):
        if ignore_missing:
            print(f"[WARNING]: inventory file {path} not found (or not readable by the script); "
                  "only the job's inventory is used", file=sys.stderr)
            return
        raise FileNotFoundError(f"Inventory file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"inventory {path} is a directory: give automation() one inventory file")
    budget = [MAX_INVENTORY_BYTES]

    def read(p):
        with open(p, encoding="utf-8") as f:
            text = f.read(budget[0] + 1)
        budget[0] -= len(text)
        if budget[0] < 0:
            raise ValueError(f"inventory {path} with its variable files is larger than "
                             f"{MAX_INVENTORY_BYTES >> 20} MiB, the most a script may load")
        return text

    def vars_files(kind):
        found = []
        base = os.path.join(os.path.dirname(os.path.abspath(path)), kind)
        if not os.path.isdir(base):
            return found
        for entry in sorted(os.listdir(base)):
            if entry.startswith("."):
                continue
            full = os.path.join(base, entry)
            name = next((entry[:-len(e)] for e in (".yml", ".yaml", ".json") if entry.endswith(e)), entry)
            if os.path.isdir(full):
                texts = [read(os.path.join(full, f)) for f in sorted(os.listdir(full))
                         if not f.startswith(".") and os.path.isfile(os.path.join(full, f))]
            else:
                texts = [read(full)]
            found.append([name, texts])
        return found

    source = {"name": path, "text": read(path), "group-vars": vars_files("group_vars"),
              "host-vars": vars_files("host_vars")}
    _check(lambda: _host.load_inventory(source))


def _open_state(state_file):
    """The job's State: a relative `state_file` lives in the scratch directory (the sandbox's
    only writable place), as does an absolute one inside it; elsewhere it is refused."""
    import tempfile

    scratch = tempfile.gettempdir()
    path = os.path.normpath(os.path.join(scratch, os.fspath(state_file)))
    if os.path.commonpath([path, scratch]) != scratch:
        raise UnsupportedParameterError(
            f"automation(state_file={os.fspath(state_file)!r}) is not supported inside ftl2-runner: "
            f"the state file must be in the job's scratch directory ({scratch}); a relative path "
            "is taken from there")
    return State(path)


def _load_state_hosts(state, into=None):
    """Hosts a state file records (an earlier automation() block of this job, or an imported
    file) join the inventory, as FTL2 merges state files into its inventory; with `into`, they
    are also recorded in the job's own state."""
    for name in state.hosts():
        data = dict(state.get_host(name) or {})
        groups = [g for g in data.pop("groups", []) if g not in ("all", "ungrouped")]
        data.pop("added_at", None)
        if _host.host_vars(name) is None:
            _check(lambda: _host.add_host(name, groups, data))
        if into is not None and not into.has_host(name):
            into.add_host(name, groups=groups or ["ungrouped"], **data)
    if into is not None:
        for name, resource in state.resources().items():
            if not into.has_resource(name):
                into.add_resource(name, resource)


def _policy_mtimes(source):
    from pathlib import Path

    path = Path(source)
    try:
        if path.is_dir():
            return {str(p): p.stat().st_mtime for p in sorted(path.iterdir())
                    if p.suffix in (".yaml", ".yml") and p.is_file()}
        return {str(path): path.stat().st_mtime}
    except OSError:
        return {}


def _load_policy(source):
    from pathlib import Path

    source = Path(source)
    return Policy.from_directory(source) if source.is_dir() else Policy.from_file(source)


def _target_of(target):
    """A run_on target as a host pattern: names, proxies and host objects, alone or in a list."""
    if isinstance(target, HostScopedProxy):
        return target._target
    if isinstance(target, (list, tuple, set)):
        return ":".join(_target_of(t) for t in target)
    name = getattr(target, "name", None)
    return name if isinstance(name, str) else str(target)


def _is_set(value):
    """Whether an FTL2 option was given a value that asks for something (not None, False or
    empty)."""
    return value not in (None, False, (), [], {})


def _refuse_unsupported(values):
    """UnsupportedParameterError for the first of FTL2's parameters that is set (not None, False
    or empty) and cannot be honoured in the sandbox, naming it and why."""
    for key, value in values.items():
        if not _is_set(value):
            continue
        raise UnsupportedParameterError(
            f"automation({key}=...) is not supported inside ftl2-runner: {UNSUPPORTED[key]}")


def _names(value):
    """A list (or tuple) of strings, as FTL2's list parameters are; a lone string is refused, not
    read letter by letter."""
    return (isinstance(value, (list, tuple, set, frozenset))
            and all(isinstance(v, (str, os.PathLike)) for v in value))


def _check_types(function, values):
    """TypeError naming the parameter for a value of the wrong type (None means not given), so a
    wrong type is never read as some other setting."""
    for key, (value, kind) in values.items():
        if value is None:
            continue
        if kind is callable:
            ok, wanted = callable(value), "a callable"
        elif callable(kind) and not isinstance(kind, type) and not isinstance(kind, tuple):
            ok, wanted = kind(value), "a list of names"
        else:
            kinds = kind if isinstance(kind, tuple) else (kind,)
            ok = isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool)
                                                   and int in kinds)
            wanted = " or ".join(k.__name__ for k in kinds)
        if not ok:
            raise TypeError(f"{function}() argument {key!r} must be {wanted}, not "
                            f"{type(value).__name__} ({value!r})")


def _warn_without_effect(values):
    """A warning in the job output for each of FTL2's parameters that is set but changes nothing
    here (never silently ignored)."""
    for key, value in values.items():
        if _is_set(value):
            print(f"[WARNING]: automation({key}=...) has no effect in ftl2-runner: "
                  f"{WITHOUT_EFFECT[key]}", file=sys.stderr)


def _check(fn):
    from componentize_py_types import Err

    try:
        fn()
    except Err as e:
        raise ValueError(str(e.value)) from None


def _to_result(raw, module, params, duration, used_ftl):
    output = raw.get("result") or {}
    status = raw.get("status", "ok")
    failed = status in ("failed", "unreachable")
    error = ""
    if failed:
        error = str(output.get("msg") or output.get("stderr") or status)
    return ExecuteResult(
        success=not failed,
        changed=bool(output.get("changed")),
        output=output,
        error=error,
        module=module,
        host=raw.get("host", ""),
        params=without_secrets(params),
        duration=duration,
        used_ftl=used_ftl,
        status=status,
    )


def _load_dict_inventory(ctx, inv):
    """An inline inventory dict ({group: {hosts: {name: vars}}}) is added host by host."""
    for group, body in inv.items():
        hosts = (body or {}).get("hosts", {}) if isinstance(body, dict) else {}
        if isinstance(hosts, list):
            hosts = {h: {} for h in hosts}
        for hostname, hostvars in hosts.items():
            groups = [] if group in ("all", "ungrouped") else [group]
            _check(lambda: _host.add_host(hostname, groups, dict(hostvars or {})))


# How many automation contexts the script entered (a script with none ran nothing).
_entered = 0


def contexts_entered():
    """How many `automation()` contexts the script has entered so far."""
    return _entered


def any_failures():
    """True if any module call of this job failed (for runner.has_failures())."""
    return any(not r.success for r in _all_results)
