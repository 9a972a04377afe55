"""`automation()`: FTL2's context for running modules, backed by the ftl2-runner host.

Forms scripts use (see FTL2-API.md):
    await ftl.ping()                       controller; returns the result dict
    await ftl.community.general.x(...)     controller, fully qualified name
    await ftl.local.command(cmd=...)       controller
    await ftl.webservers.ping()            every host of a group, concurrently: list[ExecuteResult]
    await ftl["db-1"].command(cmd=...)     one inventory host: list[ExecuteResult]
    await ftl.run_on("web:&prod", "ping")  any host pattern: list[ExecuteResult]
"""

import asyncio
import collections.abc
import fnmatch
import os
import sys
import time

from . import _host
from .exceptions import (
    ExcludedModuleError,
    ModuleNotAllowedError,
    UnsupportedParameterError,
)
from .ftl_modules import ExecuteResult

# Playbook keywords FTL2 refuses to run as modules.
EXCLUDED_MODULES = {
    "debug", "fail", "assert", "pause", "set_fact", "set_stats", "group_by", "meta",
    "include_vars",
}
EXCLUDED_PREFIXES = ("include_", "import_")

# The modules whose work uses a task's variables: they render a template on the controller.
TEMPLATE_MODULES = {"template", "ansible.builtin.template", "ansible.legacy.template"}


def _check_task_vars(module, value):
    """`_vars` is for what a template renders; anywhere else it would be silently unused."""
    if module not in TEMPLATE_MODULES:
        raise TypeError(f"_vars are variables for a template; {module} renders none (pass values as "
                        "its arguments, computed in Python)")
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"_vars must be a dict of variable names to values, not {value!r}")

# FTL2 parameters that need host files or network outside the sandbox.
UNSUPPORTED = {
    "state_file": "state files live on the controller's disk, which the sandbox cannot write",
    "record": "recording needs a file on the controller's disk",
    "replay": "replay needs a file on the controller's disk",
    "policy": "policy files live on the controller's disk",
    "vault_secrets": "vault secrets come from AWX credentials; use secrets=[...] instead",
    "log_file": "job output goes to AWX; there is no log file",
    "state": "state files live on the controller's disk",
}

CONTROLLER = "localhost"

# Every result of every context in this job, for runner.has_failures().
_all_results = []


class AutomationError(Exception):
    """A module call failed on the controller while fail_fast was on."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.message = message
        self.result = result


def _short(module):
    return module.rsplit(".", 1)[-1]


def _fqcn(name):
    return name if "." in name else f"ansible.builtin.{name}"


def _allowed(module, pattern):
    """`modules=["ping", "ansible.builtin.command", "community.*"]` allowlist matching."""
    return fnmatch.fnmatch(module, pattern) or fnmatch.fnmatch(_fqcn(module), _fqcn(pattern))


def _is_excluded(module):
    short = _short(module)
    return short in EXCLUDED_MODULES or short.startswith(EXCLUDED_PREFIXES)


class SecretRef:
    """A named secret the host fills in when a module runs; its value never enters the sandbox."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __ftl2_json__(self):
        return {"__ftl2_secret__": self.name}

    def __repr__(self):
        return f"<secret {self.name}>"

    def __str__(self):
        return "********"

    def __bool__(self):
        return True


class SecretsView:
    """`ftl.secrets["NAME"]`: references to the secrets declared with `secrets=[...]`."""

    def __init__(self, declared):
        self._declared = list(declared or [])

    def __getitem__(self, name):
        if name not in self._declared:
            raise KeyError(f"secret {name!r} was not declared in automation(secrets=[...])")
        return SecretRef(name)

    def get(self, name, default=None):
        return self[name] if name in self._declared else default

    def __contains__(self, name):
        return name in self._declared

    def keys(self):
        return list(self._declared)

    def __iter__(self):
        return iter(self._declared)

    def __len__(self):
        return len(self._declared)

    def __repr__(self):
        return f"<secrets {self._declared}>"


class HostsView:
    """`ftl.hosts`: group name -> host names, from the job's inventory."""

    def __init__(self, ctx):
        self._ctx = ctx

    def _groups(self):
        return self._ctx._groups

    def __getitem__(self, group):
        return list(self._groups()[group])

    def __contains__(self, name):
        g = self._groups()
        return name in g or any(name in hosts for hosts in g.values())

    def __iter__(self):
        return iter(self._groups())

    def __len__(self):
        return len(self._groups())

    def keys(self):
        return list(self._groups().keys())

    def items(self):
        return [(k, list(v)) for k, v in self._groups().items()]

    def get(self, group, default=None):
        g = self._groups()
        return list(g[group]) if group in g else default

    @property
    def all(self):
        return list(self._groups().get("all", []))

    @property
    def groups(self):
        return [g for g in self._groups() if g not in ("all", "ungrouped")]

    def __repr__(self):
        return f"<hosts {dict(self._groups())}>"


class _Call(collections.abc.Coroutine):
    """A module call, made but not yet awaited: a coroutine (await it, gather it, make it a task)
    that says so in the job output, with its script line, if it is dropped without ever running
    (a forgotten `await` would otherwise run nothing and let the job succeed)."""

    def __init__(self, coro, module, site):
        self._coro = coro
        self._module = module
        self._site = site
        self._started = False

    def send(self, value):
        self._started = True
        return self._coro.send(value)

    def throw(self, *args):
        self._started = True
        return self._coro.throw(*args)

    def close(self):
        self._started = True
        self._coro.close()

    def __await__(self):
        self._started = True
        return self._coro.__await__()

    def __del__(self):
        if not self._started:
            self._coro.close()
            where = f" at {self._site}" if self._site else ""
            print(f"[WARNING]: the call of {self._module}{where} was never awaited, so it did not run "
                  "(write `await` before it)", file=sys.stderr)


class _Module:
    """A module (or the start of a fully qualified name) bound to a target."""

    def __init__(self, ctx, target, name, controller):
        self._ctx = ctx
        self._target = target
        self._name = name
        self._controller = controller

    def __getattr__(self, part):
        if part.startswith("__"):
            raise AttributeError(part)
        return _Module(self._ctx, self._target, f"{self._name}.{part}", self._controller)

    def __call__(self, **params):
        site = _call_site()
        return _Call(self._ctx._call(self._target, self._name, params, self._controller, site),
                     self._name, site)

    def __repr__(self):
        return f"<module {self._name} on {self._target}>"


class HostTarget:
    """`ftl.<group|host>` / `ftl["name"]`: modules run on every matching host concurrently."""

    def __init__(self, ctx, target):
        self._ctx = ctx
        self._target = target

    def __getattr__(self, module):
        if module.startswith("_"):
            raise AttributeError(module)
        return _Module(self._ctx, self._target, module, controller=False)

    @property
    def hosts(self):
        return _host.list_hosts(self._target)

    def __repr__(self):
        return f"<hosts {self._target}>"


class _ControllerModules:
    """`ftl.local` / `ftl.localhost` / `ftl.module`: modules on the controller, returning dicts
    (`ftl.module.NAME` is always a module, even if a host or group has that name)."""

    def __init__(self, ctx):
        self._ctx = ctx

    def __getattr__(self, module):
        if module.startswith("_"):
            raise AttributeError(module)
        return _Module(self._ctx, CONTROLLER, module, controller=True)


class AutomationContext:
    """The object `async with automation(...) as ftl` yields."""

    def __init__(self, inventory=None, modules=None, check_mode=None, fail_fast=True, quiet=False,
                 verbose=False, on_event=None, secrets=None, secret_bindings=None, name=None,
                 **unsupported):
        for key, value in unsupported.items():
            if key.startswith("gate_") or key in UNSUPPORTED:
                if value in (None, False, (), [], {}):
                    continue
                why = UNSUPPORTED.get(key, "gates need the controller's network")
                raise UnsupportedParameterError(
                    f"automation({key}=...) is not supported inside ftl2-runner: {why}"
                )
            raise UnsupportedParameterError(f"automation() got an unsupported parameter {key!r}")
        self._inventory = inventory
        self._modules = list(modules) if modules else None
        self._check_mode = check_mode
        self.fail_fast = fail_fast
        self.quiet = quiet
        self.verbose = verbose
        self._on_event = on_event
        self.secrets = SecretsView(secrets)
        self._secret_bindings = dict(secret_bindings or {})
        self._name = name
        self._groups = {}
        self.results = []
        self.hosts = HostsView(self)
        self.module = _ControllerModules(self)
        self.local = _ControllerModules(self)
        self.localhost = self.local
        if isinstance(inventory, dict):
            self._pending_inventory = inventory
        else:
            self._pending_inventory = None

    # -- context management ----------------------------------------------------------------
    async def __aenter__(self):
        global _entered
        _entered += 1
        _host.play_start(self._name or "")
        if self._pending_inventory:
            _load_dict_inventory(self, self._pending_inventory)
        self._refresh()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        return False

    def _refresh(self):
        self._groups = {k: list(v) for k, v in _host.groups().items()}

    # -- job facts -------------------------------------------------------------------------
    @property
    def check_mode(self):
        return bool(self._check_mode) or bool(_host.job_info().get("check_mode"))

    @property
    def failed(self):
        return any(not r.success for r in self.results)

    @property
    def errors(self):
        return [r for r in self.results if not r.success]

    @property
    def error_messages(self):
        return [f"{r.host}: {r.module}: {r.error}" for r in self.results if not r.success]

    # -- name lookup -----------------------------------------------------------------------
    def __getattr__(self, name):
        if name.startswith("_"):
            # As FTL2: a private or mistyped attribute is an AttributeError, never a module call.
            raise AttributeError(name)
        target = self._resolve_target(name)
        if target is not None:
            return HostTarget(self, target)
        return _Module(self, CONTROLLER, name, controller=True)

    def __getitem__(self, name):
        if name in ("local", "localhost"):
            return self.local
        return HostTarget(self, self._resolve_target(name) or name)

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
    def add_host(self, name, ansible_host=None, ansible_user=None, ansible_port=22, groups=None,
                 **hostvars):
        if ansible_host is not None:
            hostvars["ansible_host"] = ansible_host
        if ansible_user is not None:
            hostvars["ansible_user"] = ansible_user
        if ansible_port is not None and ansible_port != 22:
            hostvars["ansible_port"] = ansible_port
        if isinstance(groups, str):
            groups = [groups]
        _check(lambda: _host.add_host(name, groups or [], hostvars))
        self._refresh()
        return HostTarget(self, name)

    async def remove_host(self, name):
        _check(lambda: _host.remove_host(name))
        self._refresh()

    # -- running modules -------------------------------------------------------------------
    def run_on(self, target, module, **params):
        """Run `module` on `target` (a pattern, host, group, HostTarget or a list of them)."""
        if isinstance(target, HostTarget):
            target = target._target
        elif isinstance(target, (list, tuple, set)):
            target = ":".join(t._target if isinstance(t, HostTarget) else str(t) for t in target)
        site = _call_site()
        return _Call(self._call(str(target), module, params, False, site), module, site)

    async def _call(self, target, module, params, controller, site=""):
        if _is_excluded(module):
            raise ExcludedModuleError(
                f"{module} is a playbook keyword, not a module; FTL2 scripts use Python for it"
            )
        if self._modules is not None and not any(_allowed(module, pat) for pat in self._modules):
            raise ModuleNotAllowedError(f"module {module!r} is not in this automation's modules= allowlist")
        params = dict(params)
        task_name = params.pop("_name", None)
        for glob, binding in self._secret_bindings.items():
            if fnmatch.fnmatch(module, glob) or fnmatch.fnmatch(_short(module), glob):
                for param, secret in binding.items():
                    params.setdefault(param, SecretRef(secret))
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
        if self._check_mode is not None:
            options["check_mode"] = bool(self._check_mode)
        if site:
            options["task_path"] = site
        if controller:
            options["controller"] = True
        self._notify({"event": "module_start", "module": module, "host": target})
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        raw = await _host.call_module(loop, target, module, params, options)
        duration = time.monotonic() - started
        results = [_to_result(r, module, params, duration) for r in raw]
        if controller and "." in module:
            self._explain_unknown_target(module, results)
        self.results.extend(results)
        _all_results.extend(results)
        for r in results:
            self._notify({
                "event": "module_complete", "module": module, "host": r.host, "success": r.success,
                "changed": r.changed, "duration": r.duration, "result": r.output,
            })
        if not controller:
            return results
        if not results:
            raise AutomationError(f"{module}: no host matched {target!r}", None)
        r = results[0]
        if not r.success and self.fail_fast:
            raise AutomationError(f"{module} failed on {r.host}: {r.error}", r.output)
        return r.output

    def _notify(self, event):
        cb = self._on_event
        if cb is None or getattr(cb, "__ftl2_runner__", False):
            return  # the host already records every call for AWX
        cb(event)


def _check(fn):
    from componentize_py_types import Err

    try:
        fn()
    except Err as e:
        raise ValueError(str(e.value)) from None


def _to_result(raw, module, params, duration):
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
        params={k: v for k, v in params.items() if not isinstance(v, SecretRef)},
        duration=duration,
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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _call_site():
    """`file:line` of the script line that made the call being set up (Ansible's task path):
    the nearest caller outside this package, taken when the call is made, before any task or
    gather separates the coroutine from the line that made it."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""


# How many automation contexts the script entered (a script with none ran nothing).
_entered = 0


def contexts_entered():
    """How many `automation()` contexts the script has entered so far."""
    return _entered


def automation(**kwargs):
    """`async with automation(...) as ftl:` -- see AutomationContext for the parameters."""
    return AutomationContext(**kwargs)


def any_failures():
    """True if any module call of this job failed (for runner.has_failures())."""
    return any(not r.success for r in _all_results)
