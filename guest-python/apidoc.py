"""The script author's API reference (guest-python/API.md), written from the docstrings and
signatures of the guest's public modules, classes and functions, so it cannot drift from them.

    python guest-python/apidoc.py            write API.md
    python guest-python/apidoc.py --check    exit 1 if API.md is stale or a public name has no
                                             docstring (CI runs this through tests/)

It imports the `ftl2` package with the sandbox's host interface (`wit_world`) stubbed out: only
names, signatures and docstrings are read, nothing runs.
"""

import importlib
import inspect
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "API.md"

# What scripts import, in the order the reference shows them.
MODULES = ["ftl2", "ftl2.automation", "ftl2.job", "ftl2.exceptions", "ftl2.ftl_modules",
           "ftl2.policy", "ftl2.types", "ftl2.events", "ftl2.state"]

INTRO = """# The script API (generated)

Written by `guest-python/apidoc.py` from the guest's docstrings; `tests/test_api_reference.py`
fails when it is stale or a public name has no docstring. How scripts are run, task options
(`_name`, `_become`, `_tags`, ...) and where ftl2-runner differs from FTL2 0.4.7 on purpose: see
the README's "Writing scripts".
"""


def _import_ftl2():
    """Import the guest package outside the sandbox: its host interface becomes empty stubs."""
    sys.path.insert(0, str(HERE))
    stub = types.ModuleType("wit_world.imports")
    for name in ("events", "executor", "job"):
        setattr(stub, name, types.SimpleNamespace())
    sys.modules.setdefault("wit_world", types.ModuleType("wit_world"))
    sys.modules.setdefault("wit_world.imports", stub)


def public_names(mod):
    """A module's public names: its `__all__`, else what it defines itself."""
    if hasattr(mod, "__all__"):
        return [n for n in mod.__all__ if n != "__version__"]
    names = []
    for name, value in vars(mod).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if (inspect.isclass(value) or inspect.isroutine(value)) and value.__module__ != mod.__name__:
            continue
        if not (inspect.isclass(value) or inspect.isroutine(value)) and not name.isupper():
            if not isinstance(value, (str, int, float, bool, dict, list)):
                continue
        names.append(name)
    return names


def _signature(fn):
    try:
        text = str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"
    return text.replace("(self, ", "(").replace("(self)", "()").replace("(cls, ", "(")


def _doc(obj):
    return inspect.getdoc(obj) or ""


def _members(cls):
    """A class's own public methods and properties (what the class itself defines)."""
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            yield name, "property", attr.fget
        elif isinstance(attr, (staticmethod, classmethod)):
            yield name, "method", attr.__func__
        elif inspect.isfunction(attr):
            yield name, "async method" if inspect.iscoroutinefunction(attr) else "method", attr


def build():
    """(the reference as Markdown, the public names that lack a docstring)."""
    _import_ftl2()
    lines, missing = [INTRO], []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        lines += [f"\n## `{modname}`\n", _doc(mod).split("\n\n")[0].replace("\n", " "), ""]
        for name in public_names(mod):
            value = getattr(mod, name)
            if inspect.isclass(value):
                if value.__module__.startswith("ftl2") and not _doc(value):
                    missing.append(f"{modname}.{name}")
                bases = [b.__name__ for b in value.__bases__ if b is not object]
                lines.append(f"### class `{name}{_signature(value)}`" + (f" ({', '.join(bases)})" if bases else ""))
                lines += ["", _doc(value), ""]
                if value.__module__.startswith("ftl2"):
                    for mname, kind, fn in _members(value):
                        if not _doc(fn):
                            missing.append(f"{modname}.{name}.{mname}")
                        shown = f"`{mname}`" if kind == "property" else f"`{mname}{_signature(fn)}`"
                        lines.append(f"- {kind} {shown}: {_doc(fn).replace(chr(10), ' ')}")
                    lines.append("")
            elif inspect.isroutine(value):
                if not _doc(value):
                    missing.append(f"{modname}.{name}")
                kind = "async function" if inspect.iscoroutinefunction(value) else "function"
                lines += [f"### {kind} `{name}{_signature(value)}`", "", _doc(value), ""]
            else:
                # (sets sorted: their order changes from run to run)
                shown = sorted(value) if isinstance(value, (dict, set, frozenset)) else repr(value)
                lines += [f"### `{name}`", "", f"{type(value).__name__}: `{shown}`", ""]
    return "\n".join(lines).rstrip() + "\n", missing


def main(argv):
    text, missing = build()
    if missing:
        print("public names without a docstring:\n  " + "\n  ".join(missing), file=sys.stderr)
    if "--check" in argv:
        stale = not OUT.exists() or OUT.read_text() != text
        if stale:
            print(f"{OUT} is stale: run python {Path(__file__).name} to write it", file=sys.stderr)
        return 1 if stale or missing else 0
    OUT.write_text(text)
    print(OUT)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
