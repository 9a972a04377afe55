"""An asyncio event loop for WASI.

CPython's default loop needs `socket.socketpair`, which WASI lacks. This loop has no file
descriptors at all: whenever asyncio would block in `select()`, it hands over to the host
instead (`ftl2._host.pump`), which submits the module calls the script started in this loop
iteration and waits for whichever finishes first, or for the next timer. So
`asyncio.gather(ftl.web.ping(), ftl.db.ping())` runs both calls at the same time on the host,
and `asyncio.sleep()` sleeps in the host, where a job timeout or cancel can still stop it.
"""

import asyncio

from . import _host


class _HostSelector:
    """The part of a selector asyncio's BaseEventLoop uses: `select(timeout)`."""

    def select(self, timeout):
        _host.pump(timeout)
        return []

    def close(self):
        pass


class WasiEventLoop(asyncio.BaseEventLoop):
    """BaseEventLoop driven by the host's completion queue instead of file descriptors."""

    def __init__(self):
        super().__init__()
        self._selector = _HostSelector()

    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        # Only called to wake a loop blocked in another thread; there are no threads here.
        pass

    def close(self):
        super().close()


_asyncio_run = asyncio.run


def run(coro):
    """Run a coroutine to completion on a fresh WASI loop."""
    return _asyncio_run(coro, loop_factory=WasiEventLoop)


def run_like_asyncio(main, *, debug=None, loop_factory=None):
    """`asyncio.run` for scripts: the same call, always on the WASI loop (the default loop
    cannot start in WASI)."""
    return run(main)
