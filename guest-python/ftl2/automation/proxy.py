"""The objects `ftl.<name>` resolves to (FTL2's proxy classes): a host or group and its modules,
a fully qualified module name being spelled out, and the call they make."""

import collections.abc
import os
import sys

from .. import _host

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
        site = _call_site()
        local = self._target in ("local", "localhost")
        target = CONTROLLER if local else self._target
        return _Call(self._context._call(target, self._path, kwargs, local, site), self._path, site)

    def __repr__(self):
        return f"HostScopedModuleProxy({self._target!r}, {self._path!r})"


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
        site = _call_site()
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

    def __repr__(self):
        return f"HostScopedProxy({self._target!r})"


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


# The ftl2 package: frames in it are ours, not the script's.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _call_site():
    """`file:line` of the script line that made the call being set up (Ansible's task path):
    the nearest caller outside this package, taken when the call is made, before any task or
    gather separates the coroutine from the line that made it."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
