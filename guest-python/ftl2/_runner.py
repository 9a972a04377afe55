"""Loading and running the job's script: `async def run(inventory_path, extravars, runner)`, or a
script in FTL2's own style (no `run()`), run as `__main__` with `asyncio.run` on the WASI loop."""

import ast
import asyncio
import inspect
import json
import os
import sys
import traceback
import types

from . import _host, _loop
from ._site import PACKAGE_DIR
from . import job as _job  # where FTL2-style scripts find the job's extra variables
from .automation import any_failures, automation, contexts_entered


class Runner:
    """The third argument of `run()`: automation(), emit_event(), has_failures(), ident.

    It is also callable, for scripts written for the older `on_event` form.
    """

    __ftl2_runner__ = True

    def __init__(self, inventory_path):
        self.inventory_path = inventory_path
        self.ident = _host.job_info().get("ident")

    def automation(self, **kwargs):
        kwargs.setdefault("inventory", self.inventory_path)
        kwargs.setdefault("quiet", True)
        return automation(**kwargs)

    def emit_event(self, event):
        if not isinstance(event, dict):
            raise TypeError("emit_event() takes a dict")
        _host.emit_event(event)

    def has_failures(self):
        return any_failures()

    def __call__(self, event):
        self.emit_event(event)


class _HardExit(BaseException):
    """`os._exit(n)`: WASI can only say success or failure, so the code travels as this."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _hard_exit(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    raise _HardExit(int(code))


def _until_exit(call, failure):
    """(False, what `call()` returned), or (True, the exit code) when the script ended instead:
    `os._exit`, `sys.exit`, or an exception (its traceback printed, then `failure`)."""
    try:
        return False, call()
    except _HardExit as e:
        return True, _in_range(e.code, "os._exit() was given")
    except SystemExit as e:
        return True, _exit_code(e)
    except BaseException as e:
        print_user_traceback(e)
        return True, _fail(failure)


# Frames a script author did not write: this package and the event loop that drives the script.
_HIDDEN_DIRS = (PACKAGE_DIR + os.sep,
                os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep)


def print_user_traceback(exc):
    """The traceback of an exception that ended the script, as Python prints it but with the
    frames of this package and of asyncio left out (the script's own frames remain, ending at the
    line that failed). When no frame is the script's, every frame is shown."""
    shown = traceback.TracebackException.from_exception(exc)
    seen = set()
    todo = [shown]
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        own = [f for f in te.stack if not f.filename.startswith(_HIDDEN_DIRS)]
        if own:
            te.stack = traceback.StackSummary.from_list(own)
        todo += [t for t in (te.__cause__, te.__context__) if t is not None]
    print("".join(shown.format()), end="", file=sys.stderr)


def _fail(message):
    print(message, file=sys.stderr)
    return 1


def main(script_path, inventory_path, extravars_json):
    """Load the script and run it; returns its exit code. Never raises."""
    # Print lines reach the job output as they are printed, between the task events around them.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    try:
        with open(script_path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        return _fail(f"ERROR! cannot read the script {script_path}: {e}")
    script_dir = os.path.dirname(os.path.abspath(script_path))
    _job.script_path = script_path
    _job.inventory_path = inventory_path
    if script_dir not in sys.path:
        sys.path.insert(0, script_dir)
    try:
        tree = ast.parse(source, script_path)
        code = compile(tree, script_path, "exec")
    except SyntaxError as e:
        print("".join(traceback.format_exception_only(e)), end="", file=sys.stderr)
        _fail(f"ERROR! the script {script_path} has a syntax error (see above)")
        # ansible-playbook's rc for a playbook it cannot parse, under --syntax-check.
        return 4 if os.environ.get("FTL2_SYNTAX_CHECK") == "1" else 1
    if os.environ.get("FTL2_SYNTAX_CHECK") == "1":
        print(f"\nplaybook: {script_path}")
        return 0
    try:
        extravars = json.loads(extravars_json) if extravars_json else {}
    except ValueError as e:
        return _fail(f"ERROR! extravars are not valid JSON: {e}")
    os._exit = _hard_exit
    if not _defines_run(tree):
        return _run_as_main(code, script_path, inventory_path, extravars)
    module = types.ModuleType("__ftl2_script__")
    module.__file__ = script_path
    sys.modules["__ftl2_script__"] = module
    ended, rc = _until_exit(lambda: exec(code, module.__dict__),
                            f"ERROR! the script {script_path} failed while loading (see the traceback above)")
    if ended:
        return rc
    entry = module.__dict__.get("run")
    if not callable(entry):
        return _fail(
            f"ERROR! the script {script_path} defines no run(): it must define "
            "`async def run(inventory_path, extravars, runner)`"
        )
    runner = Runner(inventory_path)

    def call():
        result = entry(inventory_path, extravars, runner)
        return _loop.run(_awaited(result)) if inspect.isawaitable(result) else result

    ended, result = _until_exit(call, "ERROR! the script raised an exception (see the traceback above)")
    if ended:
        return result
    if result is None or isinstance(result, bool):
        return 0
    if not isinstance(result, int):
        print(f"[WARNING]: run() returned {type(result).__name__} {_short(result)}, not an exit code; "
              "the job's rc is 0", file=sys.stderr)
        return 0
    return _in_range(result, "run() returned")


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_range(code, what):
    """An exit code the host can carry (a 32-bit int), else an explanation and rc 1."""
    if -(2**31) <= code < 2**31:
        return code
    return _fail(f"ERROR! {what} {_short(code)}, which is out of range for an exit code "
                 "(from -2147483648 to 2147483647)")


def _defines_run(tree):
    """Whether the script defines `run` at its top level (a function, or a name bound to one)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run":
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "run" for t in node.targets):
            return True
    return False


def _run_as_main(code, script_path, inventory_path, extravars):
    """A script in FTL2's own style: executed as `__main__` (so `if __name__ == "__main__":
    asyncio.run(main())` runs), `asyncio.run` driven by the WASI loop, the job's extra variables
    in `ftl2.job`. Its exit code is `sys.exit`'s (0 when it ends normally)."""
    import asyncio

    _job.extravars = extravars
    _job.inventory_path = inventory_path
    asyncio.run = _loop.run_like_asyncio
    module = types.ModuleType("__main__")
    module.__file__ = script_path
    sys.modules["__main__"] = module
    sys.argv[:] = [script_path]
    ended, rc = _until_exit(lambda: exec(code, module.__dict__),
                            "ERROR! the script raised an exception (see the traceback above)")
    if ended:
        return rc
    if not contexts_entered():
        print(f"[WARNING]: the script {script_path} defines no run() and entered no automation(): "
              "nothing ran on any host (a script runs `async def run(inventory_path, extravars, runner)`, "
              "or `asyncio.run(main())` under `if __name__ == \"__main__\":`)", file=sys.stderr)
    return 0


async def _awaited(awaitable):
    return await awaitable


def _exit_code(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return _in_range(int(code), "the script exited with")
    print(code, file=sys.stderr)
    return 1
