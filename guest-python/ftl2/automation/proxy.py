"""The objects `ftl.<name>` resolves to (FTL2's proxy classes): a host or group and its modules,
a fully qualified module name being spelled out, and the call they make."""

import collections.abc
import sys

from .. import _host
from .._site import call_site
from ..exceptions import FTL2ConnectionError

CONTROLLER = "localhost"

# What makes `ftl["..."]` a host pattern (`web:&prod`, `db*`, `!web1`) rather than a name.
PATTERN_CHARS = ":,*?![]&~"


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


class HostScopedModuleProxy:
    """`ftl.<host|group>.<module>` (also `...ansible.posix.firewalld`): a module bound to a host,
    group or pattern; calling it runs it on every matching host concurrently and returns one
    ExecuteResult per host (on `ftl.local`/`ftl.localhost`: the controller's result dict)."""

    def __init__(self, context, target, path):
        self._context = context
        self._target = target
        self._path = path

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return HostScopedModuleProxy(self._context, self._target, f"{self._path}.{name}")

    def __call__(self, **kwargs):
        if self._path in SHADOWED:
            # As FTL2: ping and wait_for_connection on hosts are its own methods.
            return HostScopedProxy(self._context, self._target)._native(self._path, kwargs)
        return self._run(kwargs)

    def _run(self, kwargs, site=None):
        site = site or call_site()
        local = self._target in ("local", "localhost")
        target = CONTROLLER if local else self._target
        kwargs = _become_as_options(kwargs, target)
        return _Call(self._context._call(target, self._path, kwargs, local, site), self._path, site)

    def __repr__(self):
        return f"HostScopedModuleProxy({self._target!r}, {self._path!r})"


# The template module's own arguments; other keywords to HostScopedProxy.template are variables.
TEMPLATE_ARGS = {
    "src", "dest", "mode", "owner", "group", "backup", "force", "validate", "follow",
    "newline_sequence", "trim_blocks", "lstrip_blocks", "block_start_string", "block_end_string",
    "variable_start_string", "variable_end_string", "comment_start_string", "comment_end_string",
    "output_encoding", "seuser", "serole", "selevel", "setype", "attributes", "unsafe_writes",
    "local_follow",
}


def _given(**args):
    """The arguments that were given (not None)."""
    return {k: v for k, v in args.items() if v is not None}


def _with_become(kwargs, become, become_user, overrides):
    """FTL2's become/become_user parameters (and its internal overrides dict) as the escalation
    keywords `_become_as_options` reads."""
    for key, value in (("become", become), ("become_user", become_user),
                       *(dict(overrides or {}).items())):
        if value is not None:
            kwargs.setdefault(key, value)
    return kwargs


# Modules FTL2 runs as its own HostScopedProxy methods (ping, wait_for_ssh) when called on a host.
SHADOWED = {"ping", "ansible.builtin.ping", "wait_for_connection", "ansible.builtin.wait_for_connection"}


def _become_as_options(kwargs, target):
    """FTL2 reads `become`, `become_user` and `become_method` given to a host-scoped call as
    privilege escalation, not module arguments; here they become the `_become`/`_become_user`
    task options. A become_method other than the hosts' own cannot be chosen per call."""
    if not any(k in kwargs for k in ("become", "become_user", "become_method")):
        return kwargs
    kwargs = dict(kwargs)
    method = kwargs.pop("become_method", None)
    if method is not None:
        hosts = [CONTROLLER] if target == CONTROLLER else _host.list_hosts(target)
        other = [h for h in hosts
                 if str((_host.host_vars(h) or {}).get("ansible_become_method", "sudo")) != method]
        if other:
            raise ValueError(f"become_method={method!r} cannot be chosen per call in ftl2-runner "
                             f"({', '.join(other[:3])} use{'s' if len(other) == 1 else ''} another): "
                             "set ansible_become_method for the hosts in the inventory")
    for key in ("become", "become_user"):
        value = kwargs.pop(key, None)
        if value is not None:
            kwargs.setdefault(f"_{key}", value)
    return kwargs


class HostResults(list):
    """What a call on hosts returns: one ExecuteResult per host, in inventory order (FTL2's
    run_on shape). It also reads like FTL2's single result dict: `results["stdout"]` and
    `results.get("rc")` give the value every host reported (one host: its value), and say so when
    the hosts differ, instead of picking one."""

    def _common(self, key, default=None, required=True):
        values = [r.output[key] for r in self if key in r.output]
        if not values or len(values) < len(self):
            if required:
                missing = [r.host for r in self if key not in r.output] or ["(no host)"]
                raise KeyError(f"{key!r} (not in the result of {', '.join(missing[:3])})")
            return default
        first = values[0]
        if any(v != first for v in values[1:]):
            raise KeyError(f"{key!r} differs between the {len(self)} hosts of this call: "
                           "read each host's result (for r in results: r.output[...])")
        return first

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._common(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        """The value every host reported for `key`, or `default` when a host lacks it."""
        return self._common(key, default, required=False)


class NamespaceProxy:
    """`ftl.<namespace>.<collection>.<module>`: a fully qualified name being spelled out;
    calling it runs the module on the controller and returns its result dict."""

    def __init__(self, context, path):
        self._context = context
        self._path = path

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return NamespaceProxy(self._context, f"{self._path}.{name}")

    def __call__(self, **kwargs):
        site = call_site()
        return _Call(self._context._call(CONTROLLER, self._path, kwargs, True, site), self._path, site)

    def __repr__(self):
        return f"NamespaceProxy({self._path!r})"


class HostScopedProxy:
    """`ftl.<group|host>` / `ftl["name"]`: modules run on every matching host concurrently."""

    def __init__(self, context, target):
        self._context = context
        self._target = target

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return HostScopedModuleProxy(self._context, self._target, name)

    @property
    def hosts(self):
        """The inventory hosts this target matches (ftl2-runner's addition)."""
        return _host.list_hosts(self._target)

    def _module(self, name, kwargs, site=None):
        return HostScopedModuleProxy(self._context, self._target, name)._run(kwargs, site or call_site())

    def _native(self, module, kwargs):
        """A shadowed module called by name (`ftl.web.ansible.builtin.ping()`)."""
        site = call_site()
        if module.endswith("wait_for_connection"):
            return _Call(self._wait_for_ssh(module, dict(kwargs), kwargs.get("timeout", 600), site),
                         module, site)
        return _Call(self._ping(module, kwargs, site), module, site)

    def ping(self, **kwargs):
        """FTL2's ping: every host answers (the ping module, shown as a task), else
        FTL2ConnectionError naming the hosts that did not. The results read as FTL2's
        `{"ping": "pong"}` (`result["ping"]`) and are one ExecuteResult per host."""
        site = call_site()
        return _Call(self._ping("ping", kwargs, site), "ping", site)

    async def _ping(self, module, kwargs, site):
        from .context import AutomationError

        try:
            out = await self._module(module, kwargs, site)
        except AutomationError as e:
            raise FTL2ConnectionError(f"Ping failed: {e}") from e
        if isinstance(out, dict):
            return out
        if not out:
            raise FTL2ConnectionError(f"Ping failed: no response from {self._target}")
        failed = [f"{r.host}: {r.error}" for r in out if not r.success]
        if failed:
            raise FTL2ConnectionError(
                f"Ping failed on {len(failed)}/{len(out)} host(s): " + "; ".join(failed))
        return out

    def wait_for_ssh(self, timeout=600, delay=0, sleep=1, connect_timeout=5, **kwargs):
        """FTL2's wait for SSH, as Ansible's wait_for_connection on each host (a task):
        `{"elapsed": seconds, "changed": False}`, or TimeoutError naming a host that did not come."""
        site = call_site()
        args = dict(kwargs, timeout=timeout, delay=delay, sleep=sleep, connect_timeout=connect_timeout)
        return _Call(self._wait_for_ssh("wait_for_connection", args, timeout, site), "wait_for_ssh", site)

    async def _wait_for_ssh(self, module, args, timeout, site):
        out = await self._module(module, args, site)
        results = [out] if isinstance(out, dict) else list(out)
        for r in results:
            ok = r.get("failed") is not True if isinstance(r, dict) else r.success
            if not ok:
                name = self._target if isinstance(r, dict) else r.host
                raise TimeoutError(f"SSH not available on {name} after {timeout} seconds")
        elapsed = [(r if isinstance(r, dict) else r.output).get("elapsed", 0) for r in results]
        return {"elapsed": int(max(elapsed, default=0)), "changed": False}

    # FTL2 runs these natively, with the parameters below; here they are the Ansible modules of
    # the same name on every host of the target (results as for any module), which also take the
    # rest of the Ansible module's arguments and ftl2-runner's `_name`-style task options.
    def copy(self, src=None, dest="", content=None, mode=None, owner=None, group=None, backup=False,
             become=None, become_user=None, _become_overrides=None, **kwargs):
        """The copy module on the target."""
        args = _given(src=src, dest=dest or None, content=content, mode=mode, owner=owner,
                      group=group, backup=backup or None)
        return self._native_module("copy", _with_become(dict(args, **kwargs), become, become_user,
                                                        _become_overrides))

    def template(self, src, dest, mode=None, owner=None, group=None, become=None, become_user=None,
                 _become_overrides=None, **variables):
        """The template module on the target. As in FTL2, keyword arguments that are not the
        template module's own are the template's variables (`_vars`)."""
        args = _given(src=src, dest=dest, mode=mode, owner=owner, group=group)
        own = {k: v for k, v in variables.items() if k in TEMPLATE_ARGS or k.startswith("_")}
        template_vars = {k: v for k, v in variables.items() if k not in own}
        if template_vars:
            own["_vars"] = {**template_vars, **own.get("_vars", {})}
        return self._native_module("template", _with_become(dict(args, **own), become, become_user,
                                                            _become_overrides))

    def fetch(self, src, dest, flat=False, **kwargs):
        """The fetch module on the target."""
        return self._native_module("fetch", dict(_given(src=src, dest=dest, flat=flat or None), **kwargs))

    def shell(self, cmd, chdir=None, creates=None, removes=None, executable="/bin/sh", stdin=None,
              timeout=None, become=None, become_user=None, _become_overrides=None, **kwargs):
        """The shell module on the target (`timeout`: FTL2's limit on the command, refused here;
        use `_async=` seconds)."""
        if timeout is not None:
            raise ValueError("shell(timeout=...) is not supported by ftl2-runner: the shell module "
                             "has no time limit; pass _async=<seconds> to end a long command")
        args = _given(cmd=cmd, chdir=chdir, creates=creates, removes=removes, stdin=stdin,
                      executable=None if executable == "/bin/sh" else executable)
        return self._native_module("shell", _with_become(dict(args, **kwargs), become, become_user,
                                                         _become_overrides))

    def _native_module(self, module, args):
        site = call_site()
        return _Call(self._raising(module, args, site), module, site)

    async def _raising(self, module, args, site):
        """FTL2's native methods raise where it does: FTL2ConnectionError for a host that cannot
        be reached, AutomationError for a failure while fail_fast is on (unless the call asks
        `_ignore_errors`). The results are in the job output either way."""
        from .context import AutomationError

        out = await self._module(module, args, site)
        if isinstance(out, dict):
            return out  # the controller: fail_fast applied as for any controller call
        gone = [r for r in out if r.unreachable]
        if gone:
            raise FTL2ConnectionError(
                f"{module} could not reach {', '.join(r.host for r in gone)}: {gone[0].error}",
                host=gone[0].host)
        failed = [r for r in out if not r.success]
        if failed and self._context.fail_fast and not args.get("_ignore_errors"):
            raise AutomationError(f"Module '{module}' failed on {self._target}: {failed[0].error}",
                                  result=failed[0])
        return out

    # FTL2's gate features: they need its helper process on the host.
    async def watch(self, path):
        """FTL2's file watching on the host: NotImplementedError (it needs FTL2's gate)."""
        _no_gate("watch")

    async def monitor(self, interval=2.0, include_processes=True):
        """FTL2's host metrics stream: NotImplementedError (it needs FTL2's gate)."""
        _no_gate("monitor")

    async def unmonitor(self):
        """Stop FTL2's metrics stream: NotImplementedError (it needs FTL2's gate)."""
        _no_gate("unmonitor")

    async def gate_status(self, interval=5.0):
        """FTL2's gate status stream: NotImplementedError (it needs FTL2's gate)."""
        _no_gate("gate_status")

    async def ungate_status(self):
        """Stop FTL2's gate status stream: NotImplementedError (it needs FTL2's gate)."""
        _no_gate("ungate_status")

    def on(self, event_type, handler):
        """FTL2's gate event handler registration: NotImplementedError (it needs FTL2's gate)."""
        _no_gate("on")

    def __repr__(self):
        return f"HostScopedProxy({self._target!r})"


def _no_gate(name):
    raise NotImplementedError(f"{name}() needs FTL2's gate, a helper process it runs on each host; "
                              "ftl2-runner runs modules without one, so it has no gate events")


class ModuleAccessProxy:
    """`ftl.module.NAME`: always a module on the controller, even if a host or group has that
    name (FTL2 resolves only its own module names here; ftl2-runner resolves any module)."""

    def __init__(self, context):
        self._context = context

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return NamespaceProxy(self._context, name)

    def __repr__(self):
        return "ModuleAccessProxy()"


class ModuleProxy:
    """What `ftl.<name>` and `ftl["name"]` resolve through: `local`/`localhost`, then a host or
    group of the inventory (also with `_` read as `-`), else a module on the controller."""

    def __init__(self, context):
        self._context = context

    def __getitem__(self, name):
        if name in ("local", "localhost"):
            return HostScopedProxy(self._context, "localhost")
        if name in self._context.hosts:
            return HostScopedProxy(self._context, name)
        if any(c in name for c in PATTERN_CHARS):
            return HostScopedProxy(self._context, name)  # ftl2-runner's addition: a host pattern
        raise KeyError(f"Host or group '{name}' not found in inventory")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in ("local", "localhost"):
            return HostScopedProxy(self._context, "localhost")
        target = self._context._resolve_target(name)
        if target is not None:
            return HostScopedProxy(self._context, target)
        return NamespaceProxy(self._context, name)

    @property
    def module(self):
        """Modules by name, bypassing host and group names."""
        return ModuleAccessProxy(self._context)

