"""The guest side of the WIT imports: module calls as asyncio futures, inventory queries, events.

Module calls made during one loop iteration are submitted to the host together; the host runs
them concurrently and reports each as soon as it finishes.
"""

import json
import math

from wit_world.imports import events, executor, job

_queued = []  # (ModuleCall, future) not yet submitted
_running = {}  # id -> future
_info = None


def job_info():
    """The job facts the host shares (ident, check_mode, verbosity, ...), parsed once."""
    global _info
    if _info is None:
        _info = json.loads(job.info_json())
    return _info


def call_module(loop, target, module, args, options):
    """Queue one module call; returns a future resolving to the per-host result dicts."""
    fut = loop.create_future()
    call = executor.ModuleCall(
        target=target,
        module=module,
        args_json=json.dumps(_prepare(args), default=_json_default),
        options_json=json.dumps(_prepare(options), default=_json_default),
    )
    _queued.append((call, fut))
    return fut


def _prepare(value):
    """`value` with secrets (a str subclass, which json would write as its masked text) turned
    into the markers the host fills in."""
    marker = getattr(value, "__ftl2_json__", None)
    if marker is not None:
        return marker()
    if isinstance(value, dict):
        return {k: _prepare(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_prepare(v) for v in value]
    return value


def _json_default(value):
    marker = getattr(value, "__ftl2_json__", None)
    if marker is not None:
        return marker()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "__fspath__"):
        return value.__fspath__()
    raise TypeError(f"module argument of type {type(value).__name__} cannot be sent to a module")


def pump(timeout):
    """Submit queued calls, then wait up to `timeout` seconds (None = until something finishes)."""
    if _queued:
        batch = list(_queued)
        _queued.clear()
        ids = executor.submit([c for c, _ in batch])
        for call_id, (_, fut) in zip(ids, batch):
            _running[call_id] = fut
    if timeout is None:
        if not _running:
            raise RuntimeError(
                "the script is waiting for something that can never happen: no module call is "
                "running and no timer is set (a bare Future or Event nobody completes?)"
            )
        ms = 2**62
    else:
        ms = max(0, math.ceil(timeout * 1000))
    for done in executor.wait(ms):
        fut = _running.pop(done.id, None)
        if fut is not None and not fut.cancelled():
            fut.set_result(json.loads(done.results_json))


def list_hosts(pattern):
    return list(executor.list_hosts(pattern))


def groups():
    return json.loads(executor.groups_json())


def host_vars(host):
    text = executor.host_vars_json(host)
    return None if text is None else json.loads(text)


def add_host(name, groups, hostvars):
    executor.add_host(name, list(groups), json.dumps(_prepare(hostvars), default=_json_default))


def load_inventory(source):
    """Hand the host an inventory the script read; returns the hosts it brought."""
    return list(executor.load_inventory(json.dumps(source)))


def remove_host(name):
    executor.remove_host(name)


# Largest custom event, as JSON: larger ones are refused here, in words, before they cross into
# the host (whose hostcall budget would stop the whole script with a wasm trap).
MAX_EVENT_BYTES = 16 << 20


def emit_event(event):
    text = json.dumps(event, default=str)
    if len(text) > MAX_EVENT_BYTES:
        raise ValueError(
            f"the event is {len(text) / (1 << 20):.1f} MiB of JSON; an event may be at most "
            f"{MAX_EVENT_BYTES >> 20} MiB"
        )
    events.emit(text)


def play_start(name):
    events.play_start(name)
