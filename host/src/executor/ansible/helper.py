# The ftl2-runner module helper: runs once per job in the EE's own Python, with the EE's own
# ansible-core, and answers JSON lines on stdin/stdout. It builds module payloads (AnsiballZ) and
# parses module output with ansible-core's own ActionBase code, so both match the installed
# version exactly (its `_ansible_*` parameters, its result shapes). It never runs a module, never
# renders a template and never touches a host: the Rust host runs the payload over its own
# connection. Requests:
#   {"op": "hello"}                              -> versions, interpreter fallback list
#   {"op": "build", "module", "args", "interpreter", "check_mode", "diff", "no_log",
#    "verbosity", "vars"}                        -> resolved name, payload (base64), command
#   {"op": "parse", "stdout", "stderr", "rc", "interpreter", "profile"} -> Ansible's result dict
#   {"op": "has", "module"}                      -> whether module_loader has it
#   {"op": "action_error", "kind": "fail"|"skip", "msg", "escapes"} -> an action plugin's failure result
#   {"op": "mkdtemp"}                            -> the command that makes Ansible's remote temp dir
#   {"op": "async_build", <build's fields>, "async_val", "tmpdir"} -> files to upload, the command
#                                                   that starts async_wrapper, the async dir
#   {"op": "async_status", "jid", "mode", "async_dir", "module_result"} -> the action's result
#   {"op": "async_dir"}                          -> where async jobs keep their status (unexpanded)
#   {"op": "copy_args", "args"}                  -> the copy action's args for the copy/file modules
#   {"op": "copy_finish", "args", "result", "no_log"} -> the copy action's result, finished
#   {"op": "action_run", "action", "args", "connection", "staging", <options>} -> the result of
#                                                   ansible-core's own action plugin, run in a
#                                                   thread; everything it does on the host or with
#                                                   controller files is asked of the Rust host:
#       {"call": N, "for": id, "what": "exec", "cmd", "in_data", "tty"} -> {"rc", "stdout", "stderr"}
#       {"call": N, "for": id, "what": "put", "path", "data"}           -> {}
#       {"call": N, "for": id, "what": "module", "module", "args"}      -> {"result"}
#       {"call": N, "for": id, "what": "find", "kind", "path"}          -> {"path"} | {"searched"}
#       {"call": N, "for": id, "what": "reset"}                         -> {}
#     answered by {"reply": N, ...} lines ({"unreachable": msg} when the host is gone, {"error"}).
#   {"op": "when", "result", "changed_when", "failed_when", "no_log"} -> the result as this version's
#                                                   TaskExecutor leaves it after those keywords
#   {"op": "managed"}                            -> the ansible_managed setting, and whether a
#                                                   variable of that name set by the job wins
#   {"op": "catalog", "prefix"}                  -> every module of ansible-core and the collections
#                                                   (name, short description), for `ftl2-runner modules`
#   {"op": "doc", "module"}                      -> one module's documentation (arguments), resolved
#                                                   as a call resolves it, for `ftl2-runner doc`
# Every request carries an "id", echoed in its answer: {"ok": true, ...} or {"ok": false, "msg"}.
import ast
import base64
import difflib
import inspect
import itertools
import json
import os
import queue
import re
import sys
import threading
import traceback

_out = sys.stdout
sys.stdout = sys.stderr  # anything ansible prints must not corrupt the protocol

for _attempt in (1, 2):
    try:
        from ansible import constants as C
        from ansible import release
        from ansible.parsing.dataloader import DataLoader
        from ansible.playbook.play_context import PlayContext
        from ansible.playbook.task import Task
        from ansible.plugins import loader as plugin_loader
        from ansible.plugins.action import ActionBase
        from ansible.utils.display import Display
        break
    except Exception as e:  # noqa: BLE001 - any import failure means: no usable ansible-core here
        if _attempt == 1 and "Unable to create local directories" in str(e) \
                and "ANSIBLE_LOCAL_TEMP" not in os.environ:
            # Its local temp dir (~/.ansible/tmp) cannot be made: HOME unset or read-only, as an
            # EE may run. The helper's own temp files go to a directory of its own instead.
            import atexit
            import shutil
            import tempfile

            for _name in [m for m in sys.modules if m == "ansible" or m.startswith("ansible.")]:
                del sys.modules[_name]
            _local = tempfile.mkdtemp(prefix="ftl2-ansible-local-")
            atexit.register(shutil.rmtree, _local, True)
            os.environ["ANSIBLE_LOCAL_TEMP"] = _local
            continue
        _out.write(json.dumps({"ok": False, "no_ansible": True, "msg": f"{type(e).__name__}: {e}"}) + "\n")
        _out.flush()
        sys.exit(0)

if tuple(int(p) for p in re.findall(r"\d+", release.__version__)[:2]) < (2, 15):
    _out.write(json.dumps({"ok": False, "unsupported": release.__version__}) + "\n")
    _out.flush()
    sys.exit(0)

try:
    from ansible.template import Templar
except Exception:  # noqa: BLE001
    Templar = None

try:  # <= 2.19; 2.21 parses into a UnifiedTaskResult that cleans itself
    from ansible.vars.clean import remove_internal_keys
except ImportError:
    remove_internal_keys = None

_THREAD = threading.local()
_WRITE = threading.Lock()


def _warnings():
    """The warnings of the request this thread serves."""
    if not hasattr(_THREAD, "warnings"):
        _THREAD.warnings = []
    return _THREAD.warnings


def _send(obj):
    with _WRITE:
        _out.write(json.dumps(obj, default=_jsonable) + "\n")
        _out.flush()


def _collect_warning(self, msg, *args, **kwargs):
    _warnings().append(str(msg))


def _collect_deprecation(self, msg, *args, **kwargs):
    _warnings().append("DEPRECATION: " + str(msg))


_REAL_WARNING, _REAL_DEPRECATED, _REAL_DISPLAY = Display.warning, Display.deprecated, Display.display
Display.warning = _collect_warning
Display.deprecated = _collect_deprecation
display = Display()

if hasattr(plugin_loader, "init_plugin_loader"):
    plugin_loader.init_plugin_loader()

LOADER = DataLoader()


def _parse_each_module_util_once():
    """Every build finds the module_utils its module needs by parsing each one's source into a
    syntax tree (module_common's `compile(..., ast.PyCF_ONLY_AST)`, in every version from 2.15),
    and most are the same for all modules (`basic` and the ~40 files it imports): ~150 ms of each
    build here. The helper keeps each tree once parsed. The dependency scan only reads the trees,
    so a payload is the same whatever was built before it in the job."""
    from ansible.executor import module_common

    trees = {}

    def compile_once(source, filename, mode, flags=0, *rest, **kwargs):
        if flags != ast.PyCF_ONLY_AST or rest or kwargs or not isinstance(source, (str, bytes)):
            return compile(source, filename, mode, flags, *rest, **kwargs)
        key = (type(source), source, str(filename), mode)
        tree = trees.get(key)
        if tree is None:
            tree = trees[key] = compile(source, filename, mode, flags)
        return tree

    module_common.compile = compile_once


_parse_each_module_util_once()


class _Action(ActionBase):
    """ActionBase with nothing but what building and parsing need."""

    def run(self, tmp=None, task_vars=None):  # pragma: no cover - never run
        raise NotImplementedError


def _connection():
    pc = PlayContext()
    conn = plugin_loader.connection_loader.get("ssh", pc)
    return pc, conn


PC, CONN = _connection()


def _task(action, args, check_mode, diff, no_log):
    """A task as TaskExecutor hands it to an action (no async, no environment)."""
    task = Task()
    task.action = action
    task.args = dict(args or {})
    return _handed(task, check_mode, diff, no_log)


def _handed(task, check_mode, diff, no_log):
    """`task` with the options TaskExecutor sets before handing it to an action."""
    task.check_mode = bool(check_mode)
    task.diff = bool(diff)
    task.no_log = bool(no_log)
    task.async_val = 0
    task.environment = []
    return task


def _templar():
    return Templar(loader=LOADER) if Templar else None


def _action(module, check_mode, diff, no_log):
    task = _task(module, {}, check_mode, diff, no_log)
    return _Action(task, CONN, PC, LOADER, _templar(), plugin_loader)


def _real_action(name, req, args):
    """ansible-core's own action plugin `name` for a task with `args` and the request's options."""
    task = _task(name, args, req.get("check_mode"), req.get("diff"), req.get("no_log"))
    PC.no_log = task.no_log
    return plugin_loader.action_loader.get(
        name, task=task, connection=CONN, play_context=PC, loader=LOADER, templar=_templar(),
        shared_loader_obj=plugin_loader,
    )


def _task_vars(req):
    tv = dict(req.get("vars") or {})
    tv["ansible_facts"] = {}
    tv["inventory_hostname"] = req.get("host", "localhost")
    if req.get("interpreter"):
        tv["ansible_python_interpreter"] = req["interpreter"]
    return tv


def _module_dirs():
    dirs = []
    for d in plugin_loader.module_loader._get_paths():
        if d not in dirs and os.path.basename(d) != "__pycache__":
            dirs.append(d)
    return dirs


def _collection_paths():
    """Where collections are looked for: the configured path, then sys.path (pip's `ansible`)."""
    paths = [os.path.expanduser(p) for p in (C.COLLECTIONS_PATHS or [])]
    for p in sys.path:
        if p and os.path.isdir(os.path.join(p, "ansible_collections")) and p not in paths:
            paths.append(p)
    return paths


def _known_modules():
    names = set()
    for d in _module_dirs():
        try:
            for f in os.listdir(d):
                if f.endswith(".py") and not f.startswith("_"):
                    names.add(f[:-3])
        except OSError:
            pass
    for root in _collection_paths():
        base = os.path.join(os.path.expanduser(root), "ansible_collections")
        try:
            namespaces = os.listdir(base)
        except OSError:
            continue
        for ns in namespaces:
            try:
                colls = os.listdir(os.path.join(base, ns))
            except OSError:
                continue
            for coll in colls:
                mdir = os.path.join(base, ns, coll, "plugins", "modules")
                try:
                    for f in os.listdir(mdir):
                        if f.endswith(".py") and not f.startswith("_"):
                            names.add(f"{ns}.{coll}.{f[:-3]}")
                except OSError:
                    pass
    return sorted(names)


def _not_found(module, base):
    leaf = module.rsplit(".", 1)[-1]
    known = _known_modules()
    close = difflib.get_close_matches(module, known, n=3, cutoff=0.75)
    for c in difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in known], n=3, cutoff=0.75):
        for k in known:
            if k.rsplit(".", 1)[-1] == c and k not in close:
                close.append(k)
    msg = f"{base}. Searched: ansible-core {release.__version__} modules ({', '.join(_module_dirs())})"
    msg += f" and collections in {':'.join(_collection_paths())}."
    if close:
        msg += f" Did you mean: {', '.join(close[:5])}?"
    return msg


def _short_description(path):
    """A module's short description as `ansible-doc -l` finds it (ansible-core's read_docstub,
    which reads the DOCUMENTATION text up to short_description without parsing the rest), its
    doc markup as plain text. A sidecar .yml holds the docs of some modules."""
    from ansible.parsing.plugin_docs import read_docstub

    base = os.path.splitext(path)[0]
    for candidate in (path, base + ".yml", base + ".yaml"):
        try:
            doc = read_docstub(candidate) if os.path.exists(candidate) else None
        except Exception:  # noqa: BLE001 - a broken docstring must not hide the rest of the list
            doc = None
        if isinstance(doc, dict):
            return _doc_text(str(doc.get("short_description", "INVALID SHORT DESCRIPTION")).strip())
    return "UNDOCUMENTED"


def op_catalog(req):
    """Every module a call can name, as ansible-core lists them (`ansible-doc -l`): its own as
    ansible.builtin.*, the configured module paths' by short name, each collection's by its
    full name (the first collection path holding a collection wins, as the loader picks)."""
    from ansible.plugins.list import list_plugins

    prefix = req.get("prefix") or ""
    parts = prefix.split(".")
    found = list_plugins("module", prefix) if len(parts) == 2 else list_plugins("module")
    modules = []
    for name in sorted(found):
        if prefix and name != prefix and not name.startswith(prefix + "."):
            continue
        entry = found[name]
        path = entry[0] if isinstance(entry, tuple) else getattr(entry, "path", entry)
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        modules.append({"name": name, "description": _short_description(path)})
    return {
        "ansible_version": release.__version__,
        "collection_paths": _collection_paths(),
        "collections": len({m["name"].rsplit(".", 1)[0] for m in modules if m["name"].count(".") >= 2}),
        "modules": modules,
    }


def _doc_text(value):
    """Ansible's doc markup (I(), C(), O(), V(), L() ...) as plain text, by this version's own
    ansible-doc; lists of paragraphs joined."""
    from ansible.cli.doc import DocCLI

    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(_doc_text(v) for v in value)
    return DocCLI.tty_ify(str(value))


def _doc_options(options):
    out = []
    for name in sorted(options or {}):
        o = options[name] or {}
        entry = {
            "name": name,
            "description": _doc_text(o.get("description")),
            "type": o.get("type") or "str",
            "required": bool(o.get("required")),
        }
        for key in ("elements", "choices", "aliases", "default", "version_added"):
            if o.get(key) is not None:
                entry[key] = _plain(o[key])
        if o.get("suboptions"):
            entry["suboptions"] = _doc_options(o["suboptions"])
        out.append(entry)
    return out


def op_doc(req):
    from ansible.utils.plugin_docs import get_docstring

    module = req["module"]
    found = plugin_loader.module_loader.find_plugin_with_context(module, collection_list=[])
    if not found.resolved:
        return _unresolved(module, found)
    resolved = found.resolved_fqcn
    path = found.plugin_resolved_path
    doc, examples, returns, _meta = get_docstring(
        path, plugin_loader.fragment_loader, collection_name=found.plugin_resolved_collection or None,
        is_module=True)
    doc = doc or {}
    del _warnings()[:]  # the deprecation the loader warned of is in the answer
    return {
        "resolved": resolved,
        "path": path,
        "ansible_version": release.__version__,
        "redirects": [r for r in (found.redirect_list or []) if r != resolved],
        "deprecation": _doc_text((getattr(found, "deprecation_warnings", None) or [""])[0]) if found.deprecated else "",
        "short_description": _doc_text(doc.get("short_description")),
        "description": _doc_text(doc.get("description")),
        "options": _doc_options(doc.get("options")),
        "notes": [_doc_text(n) for n in (doc.get("notes") or [])],
        "requirements": [_doc_text(r) for r in (doc.get("requirements") or [])],
        "check_mode": _plain(((doc.get("attributes") or {}).get("check_mode") or {}).get("support")),
        "action_plugin": _action_plugin(resolved),
        "examples": examples or "",
    }


def _unresolved(module, found):
    """The answer for a module name the loader did not resolve: a redirect to nothing, a removal
    (the collection's own words), or not found with the places searched and the closest names."""
    if found.redirect_list and len(found.redirect_list) > 1:
        return {"ok": False, "msg": f"The module {module} was redirected to {found.redirect_list[-1]}, which could not be loaded."}
    reason = getattr(found, "exit_reason", "") or ""
    if "tombstone" in reason.lower() or "removed" in reason.lower():
        return {"ok": False, "msg": reason}
    return {"ok": False, "msg": _not_found(module, f"The module {module} was not found in configured module paths")}


def _action_plugin(resolved):
    """The controller-side action plugin Ansible would run for this module, if any."""
    try:
        ctx = plugin_loader.action_loader.find_plugin_with_context(resolved, collection_list=[])
    except Exception:  # noqa: BLE001
        return None
    if not getattr(ctx, "resolved", False):
        return None
    return ctx.resolved_fqcn


def op_hello(req):
    fallback = C.config.get_config_value("INTERPRETER_PYTHON_FALLBACK")
    return {
        "ansible_version": release.__version__,
        "python": sys.executable,
        "interpreter_fallback": list(fallback),
    }


# Up to 2.18 a playbook task's load moves `cmd` of command, shell and script into `_raw_params`
# (their modules have no `cmd` then); read from this version's own code.
_MOVES_CMD = "_ACTION_HAS_CMD" in inspect.getsource(sys.modules[Task.__module__])


def _shell_as_command(req):
    """The call's arguments as a playbook task's load leaves them; and the shell action runs the
    command module with `_uses_shell` (shell has no module code)."""
    args = req.get("args") or {}
    if _MOVES_CMD and req["module"] in C._ACTION_HAS_CMD and "cmd" in args:
        if args.get("_raw_params", "") not in ("", None):
            raise ValueError("The 'cmd' argument cannot be used when other raw parameters are specified. "
                             "Please put everything in one or the other place.")
        args = dict(args)
        args["_raw_params"] = args.pop("cmd")
        req = dict(req, args=args)
    found = plugin_loader.module_loader.find_plugin_with_context(req["module"], collection_list=[])
    if getattr(found, "resolved", False) and found.resolved_fqcn == "ansible.builtin.shell":
        req = dict(req, module="ansible.legacy.command", args=dict(req.get("args") or {}, _uses_shell=True))
    return req


def op_build(req):
    req = _shell_as_command(req)
    module = req["module"]
    found = plugin_loader.module_loader.find_plugin_with_context(module, collection_list=[])
    if not found.resolved:
        return _unresolved(module, found)
    resolved = found.resolved_fqcn
    # The name as the task wrote it, as the normal action passes it (messages name it so).
    action = _action(module, req.get("check_mode"), req.get("diff"), req.get("no_log"))
    display.verbosity = int(req.get("verbosity") or 0)
    args = dict(req.get("args") or {})
    tv = _task_vars(req)
    # An action plugin's own module call may tolerate options this version's module lacks.
    if args.pop("_ansible_ignore_unknown_opts", False) and \
            "ignore_unknown_opts" in inspect.signature(action._update_module_args).parameters:
        action._update_module_args(module, args, tv, ignore_unknown_opts=True)
    else:
        action._update_module_args(module, args, tv)
    built = action._configure_module(module_name=module, module_args=args, task_vars=tv)
    if isinstance(built, tuple) and len(built) == 4:  # ansible-core <= 2.18
        style, shebang, data, _path = built
        profile = None
    else:
        bits, _path = built
        style, shebang, data = bits.module_style, bits.shebang, bits.b_module_data
        profile = getattr(bits, "serialization_profile", None)
    if style != "new":
        return {"ok": False, "msg": f"The module {resolved} is a {style}-style module; ftl2-runner runs new-style (AnsiballZ) modules only."}
    if not shebang:
        return {"ok": False, "msg": f"module ({resolved}) is missing interpreter line"}
    cmd = CONN._shell.build_module_command("", shebang, "", arg_path=None).strip()
    return {
        "resolved": resolved,
        "action_plugin": _action_plugin(resolved),
        "payload": base64.b64encode(data).decode(),
        "interpreter": shebang[2:].strip(),
        "command": cmd,
        "profile": profile,
    }


def op_has(req):
    return {"has": bool(plugin_loader.module_loader.has_plugin(req["module"]))}


def _deprecation_lines(deprecations):
    """What this version's callback prints for a result's deprecations (its own Display code,
    output captured): [(text, SGR colour)]. 2.19+ also says once per job how to turn them off."""
    lines = []

    def capture(self, msg, color=None, *args, **kwargs):
        try:
            from ansible.utils.color import parsecolor

            code = parsecolor(color) if color else ""
        except Exception:  # noqa: BLE001
            code = ""
        lines.append([str(msg), code])

    saved = (Display.warning, Display.deprecated, Display.display)
    Display.warning, Display.deprecated, Display.display = _REAL_WARNING, _REAL_DEPRECATED, capture
    try:
        for d in deprecations or []:
            if isinstance(d, dict):
                if hasattr(display, "_deprecated"):  # 2.19+, from a plain result
                    display.deprecated(**{k: v for k, v in d.items() if k in ("msg", "version", "date", "collection_name")})
                else:
                    display.deprecated(**d)
            else:
                display._deprecated(d)
    except Exception:  # noqa: BLE001 - a deprecation we cannot format is not worth a failed task
        pass
    finally:
        Display.warning, Display.deprecated, Display.display = saved
    return lines


def op_parse(req):
    action = _action(req.get("module", "x"), False, False, False)
    action._used_interpreter = "#!" + req["interpreter"] if req.get("interpreter") else None
    res = {"stdout": req.get("stdout", ""), "stderr": req.get("stderr", ""), "rc": req.get("rc", 0)}
    if len(inspect.signature(action._parse_returned_data).parameters) >= 2:
        parsed = action._parse_returned_data(res, req.get("profile"))
    else:
        parsed = action._parse_returned_data(res)
    if hasattr(parsed, "as_result_dict"):  # 2.21+: a result object that cleans itself
        shown = _deprecation_lines(getattr(parsed, "deprecations", None))
        parsed.remove_internal_keys()
        return {
            "result": _task_defaults(_plain(parsed.as_result_dict(for_round_trip=True))),
            "deprecation_lines": shown,
        }
    shown = _deprecation_lines((parsed or {}).get("deprecations") if isinstance(parsed, dict) else None)
    data = _plain(parsed)
    data.pop("_ansible_suppress_tmpdir_delete", None)
    if "results" in data and (not isinstance(data["results"], list)):
        data["ansible_module_results"] = data.pop("results")
        _warnings().append("Found internal 'results' key in module return, renamed to 'ansible_module_results'.")
    remove_internal_keys(data)
    for std in ("stdout", "stderr"):
        if std in data and f"{std}_lines" not in data:
            data[f"{std}_lines"] = (data.get(std) or "").splitlines()
    # TaskExecutor marks every result; these versions' callbacks show the mark.
    data["_ansible_no_log"] = bool(req.get("no_log") or data.get("_ansible_no_log"))
    return {"result": _task_defaults(data), "deprecation_lines": shown}


def _plain(data):
    return json.loads(json.dumps(_native(data), default=_jsonable))


def _task_defaults(data):
    """What TaskExecutor adds to every action result."""
    if "failed" not in data:
        data["failed"] = bool("rc" in data and data["rc"] not in (0, "0"))
    if "changed" not in data:
        data["changed"] = False
    return data


def op_managed(req):
    """How this version makes the template plugin's `ansible_managed`."""
    from ansible import constants as C

    try:  # 2.19+: the plugin keeps a job's own ansible_managed variable
        from ansible._internal._templating import _template_vars  # noqa: F401
        user_value_wins = True
    except ImportError:
        user_value_wins = False
    return {"format": str(C.config.get_config_value("DEFAULT_MANAGED_STR")), "user_value_wins": user_value_wins}


def op_action_error(req):
    """The result an action plugin's AnsibleActionFail/AnsibleActionSkip gives in this version;
    `escapes`: the plugin lets it out of its run() (fetch) rather than catching it into the
    dict it returns (copy and most others), which up to 2.15 skips TaskExecutor's no_log mark."""
    from ansible.errors import AnsibleActionFail, AnsibleActionSkip

    try:  # raised, as the plugin raises it (the result tells a raised error by its traceback)
        raise (AnsibleActionSkip if req.get("kind") == "skip" else AnsibleActionFail)(req["msg"])
    except (AnsibleActionFail, AnsibleActionSkip) as e:
        return {"result": _raised_result(e, req.get("no_log"), escapes=bool(req.get("escapes")))}


def _raised_result(exc, no_log, escapes=False):
    """What TaskExecutor of this version makes of an exception an action raised."""
    from ansible.errors import AnsibleActionSkip

    try:  # 2.19+: TaskExecutor wraps what the action raised in an AnsibleTaskError
        from ansible.errors import AnsibleTaskError
    except ImportError:
        if hasattr(exc, "result"):
            data = _plain(dict(exc.result))
        else:  # any other AnsibleError: TaskExecutor's own failure
            data = {"failed": True, "msg": str(exc)}
        if not (escapes and hasattr(exc, "result")):  # an escaped AnsibleAction: its result as is
            data["_ansible_no_log"] = bool(no_log)
        return _task_defaults(data)
    try:
        raise AnsibleTaskError() from exc
    except AnsibleTaskError as atex:
        wrapped = atex
    try:
        from ansible._internal._task import UnifiedTaskResult  # 2.21+
    except ImportError:
        from ansible._internal._errors import _error_utils

        data = _plain(_error_utils.result_dict_from_exception(wrapped, accept_result_contribution=True))
        data["_ansible_no_log"] = bool(no_log)
        return _task_defaults(data)
    try:  # create_from_action_exception without recording into a live TaskContext
        utr = UnifiedTaskResult._create_from_exception(wrapped, accept_result_contribution=True,
                                                       source_is_module=False)
    except Exception:  # noqa: BLE001 - should the private part change: the shape it gives
        if isinstance(exc, AnsibleActionSkip):
            return _task_defaults({"skipped": True, "msg": str(exc)})
        return _task_defaults({"failed": True, "msg": str(exc), "exception": "(traceback unavailable)"})
    return _task_defaults(_plain(utr.as_result_dict(for_round_trip=True)))


def _finished_action_result(result, no_log):
    """What TaskExecutor of this version makes of the dict an action returned."""
    try:
        from ansible._internal._task import UnifiedTaskResult  # 2.21+
    except ImportError:
        UnifiedTaskResult = None
    if UnifiedTaskResult is not None:
        utr = UnifiedTaskResult.from_action_result_dict(dict(result or {}))
        utr.remove_internal_keys()
        return _task_defaults(_plain(utr.as_result_dict(for_round_trip=True)))
    result = dict(result or {})
    try:  # 2.19: a failed result is raised as a captured error and turned back into a result
        from ansible._internal._errors import _captured, _error_utils
        from ansible.errors import AnsibleTaskError
    except ImportError:
        pass
    else:
        try:
            _captured.AnsibleActionCapturedError.maybe_raise_on_result(result)
        except Exception as ex:  # noqa: BLE001 - as TaskExecutor._execute catches it
            try:
                raise AnsibleTaskError() from ex
            except AnsibleTaskError as atex:
                result = _error_utils.result_dict_from_exception(atex, accept_result_contribution=True)
                result.setdefault("changed", False)
    data = _plain(result)
    for std in ("stdout", "stderr"):
        if std in data and f"{std}_lines" not in data:
            data[f"{std}_lines"] = (data.get(std) or "").splitlines()
    data.pop("_ansible_suppress_tmpdir_delete", None)
    if remove_internal_keys is not None:  # <= 2.19: TaskExecutor's mark, which callbacks show
        data["_ansible_no_log"] = bool(no_log or data.get("_ansible_no_log"))
    return _task_defaults(data)


def op_when(req):
    """A call's `changed_when`/`failed_when` (booleans) applied to its result by this version's
    own TaskExecutor logic (2.21's UnifiedTaskResult setters and error normalization; earlier,
    its dict updates)."""
    result = dict(req.get("result") or {})
    cw, fw = req.get("changed_when"), req.get("failed_when")
    try:
        from ansible._internal._task import UnifiedTaskResult  # 2.21+
    except ImportError:
        UnifiedTaskResult = None
    if UnifiedTaskResult is not None and hasattr(UnifiedTaskResult, "set_failed_when_result"):
        from ansible.errors import AnsibleTaskError

        utr = UnifiedTaskResult.from_action_result_dict(result)
        if cw is not None:
            utr.set_changed_when_result(bool(cw))
        if fw is not None:
            utr.set_failed_when_result(bool(fw))
        try:
            utr.maybe_raise_on_result()
        except Exception as ex:  # noqa: BLE001 - as TaskExecutor._execute normalizes it
            try:
                raise AnsibleTaskError() from ex
            except AnsibleTaskError as atex:
                utr = UnifiedTaskResult._create_from_exception(atex, accept_result_contribution=True,
                                                               source_is_module=False)
        return {"result": _task_defaults(_plain(utr.as_result_dict(for_round_trip=True)))}
    from ansible.executor import task_executor

    if cw is not None:
        result["changed"] = bool(cw)
    if fw is not None:
        result["failed_when_result"] = result["failed"] = bool(fw)
        if not fw and "failed_when_suppressed_exception" in inspect.getsource(task_executor) \
                and result.get("exception"):
            result["failed_when_suppressed_exception"] = result.pop("exception")
    return {"result": _finished_action_result(result, req.get("no_log"))}


def _native(data):
    """Results as callbacks see them: 2.19+ turns its error/warning objects into plain values."""
    try:
        from ansible.utils.vars import transform_to_native_types
    except ImportError:
        return data
    return transform_to_native_types(data)


def _jsonable(o):
    if hasattr(o, "_asdict"):
        return o._asdict()
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses
        return dataclasses.asdict(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "surrogateescape")
    return str(o)


class _Launched(Exception):
    """Stops `_execute_module` where it would run the command on the host."""


def op_mkdtemp(req):
    """The command Ansible's `_make_tmp_path` runs to make the remote temp dir."""
    import random
    import time

    basefile = "ansible-tmp-%s-%s-%s" % (time.time(), os.getpid(), random.randint(0, 2**48))
    remote_tmp = CONN._shell.get_option("remote_tmp")
    return {"command": CONN._shell.mkdtemp(basefile, False, 0o700, remote_tmp), "basefile": basefile}


def op_async_build(req):
    """What Ansible's `_execute_module(wrap_async=True)` does before running anything: the files
    it uploads into the temp dir (the AnsiballZ module, `async_wrapper`) and the command that
    starts async_wrapper, recorded from ansible-core's own code for this version."""
    req = _shell_as_command(req)
    module = req["module"]
    found = plugin_loader.module_loader.find_plugin_with_context(module, collection_list=[])
    if not found.resolved:
        return op_build(req)  # the same "not found" answers
    action = _action(module, req.get("check_mode"), req.get("diff"), req.get("no_log"))
    action._task.async_val = int(req["async_val"])
    display.verbosity = int(req.get("verbosity") or 0)
    files, launch = [], {}

    def transfer(remote_path, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        files.append({"path": remote_path, "data": base64.b64encode(data).decode()})
        return remote_path

    def low_level(cmd, sudoable=True, in_data=None, **_kw):
        launch["command"] = cmd
        raise _Launched()

    configure = action._configure_module
    built = []

    def configure_once(*a, **k):
        r = configure(*a, **k)
        built.append(r)
        return r

    action._configure_module = configure_once
    action._transfer_data = transfer
    action._fixup_perms2 = lambda *a, **k: None
    action._low_level_execute_command = low_level
    CONN._shell.tmpdir = req["tmpdir"]
    try:
        action._execute_module(
            module_name=module, module_args=dict(req.get("args") or {}), task_vars=_task_vars(req), wrap_async=True
        )
    except _Launched:
        pass
    finally:
        CONN._shell.tmpdir = None
    if "command" not in launch or not built:
        return {"ok": False, "msg": f"ansible-core did not start {module} asynchronously"}
    bits = built[0][0]
    return {
        "profile": getattr(bits, "serialization_profile", None),
        "resolved": found.resolved_fqcn,
        "action_plugin": _action_plugin(found.resolved_fqcn),
        "files": files,
        "command": launch["command"],
        "interpreter": (action._used_interpreter or "#!")[2:].strip(),
        "async_dir": action.get_shell_option("async_dir", default="~/.ansible_async"),
    }


def op_async_status(req):
    """ansible-core's own async_status action around a result of the async_status module (run by
    us), so the shape (2.15's 0/1 against 2.21's booleans, stdout defaults) is this version's."""
    args = {"jid": req["jid"], "mode": req.get("mode") or "status"}
    action = _real_action("ansible.legacy.async_status", req, args)
    action._get_async_dir = lambda: req["async_dir"]
    action._execute_module = lambda *a, **k: dict(req["module_result"])
    return {"result": _plain(action.run(task_vars={}))}


def _copy_action(req):
    return _real_action("ansible.legacy.copy", req, req.get("args"))


def op_copy_args(req):
    """The copy action's own argument splits: what goes to the copy module (`_create_remote_copy_
    args`) and to the file module (`_create_remote_file_args`) in this version."""
    import importlib

    import random
    import string

    copy_action = importlib.import_module(type(_copy_action(req)).__module__)
    args = dict(req.get("args") or {})
    # How this version names the uploaded file (2.15: `source`; later `.source` + the
    # destination's suffix) and the local file it writes `content` to (its name becomes
    # `_original_basename`): read from the plugin's own code, not assumed from a version number.
    copy_file = inspect.getsource(copy_action.ActionModule._copy_file)
    content_file = inspect.getsource(copy_action.ActionModule._create_content_tempfile)
    prefix = "." if "prefix='.'" in content_file or 'prefix="."' in content_file else "tmp"
    name = prefix + "".join(random.choice(string.ascii_lowercase + string.digits + "_") for _ in range(8))
    return {
        "copy_args": copy_action._create_remote_copy_args(args),
        "file_args": copy_action._create_remote_file_args(args),
        "tmp_source": ".source" if "'.source'" in copy_file else "source",
        "suffix": "suffix" in copy_file,
        "content_file": os.path.join(C.DEFAULT_LOCAL_TMP, name),
    }


def op_copy_finish(req):
    """The copy action's last touches on its result (`_ensure_invocation`), then TaskExecutor's."""
    action = _copy_action(req)
    result = dict(req.get("result") or {})
    if len(inspect.signature(action._ensure_invocation).parameters) >= 2:
        result = action._ensure_invocation(result, {})
    else:
        result = action._ensure_invocation(result)
    result = _plain(result)
    if remove_internal_keys is not None:  # <= 2.19: TaskExecutor's mark, which callbacks show
        result["_ansible_no_log"] = bool(req.get("no_log") or result.get("_ansible_no_log"))
    return {"result": _task_defaults(result)}


def op_async_dir(req):
    return {"async_dir": CONN._shell.get_option("async_dir") or "~/.ansible_async"}


# The action plugins run here (`action_run`): ansible-core's own, reviewed for what they do on the
# controller. None templates its arguments (no lookup can run), and every controller file they read
# is one the Rust host staged after checking the script may read it (`find`).
_BRIDGED = {
    "ansible.builtin.script",
    "ansible.builtin.unarchive",
    "ansible.builtin.assemble",
    "ansible.builtin.uri",
    "ansible.builtin.reboot",
    "ansible.builtin.copy",
}
_REPLIES = {}
_CALL_IDS = itertools.count(1)


def _call(rid, what, **fields):
    """Ask the Rust host to do `what` for request `rid` and wait for its answer."""
    from ansible.errors import AnsibleConnectionFailure, AnsibleError

    cid = next(_CALL_IDS)
    box = queue.Queue(maxsize=1)
    _REPLIES[cid] = box
    try:
        _send({"call": cid, "for": rid, "what": what, **fields})
        answer = box.get()
    finally:
        _REPLIES.pop(cid, None)
    if "unreachable" in answer:
        raise AnsibleConnectionFailure(answer["unreachable"])
    if "error" in answer:
        raise AnsibleError(answer["error"])
    return answer


def _b64(data):
    if data is None:
        return None
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return base64.b64encode(data).decode()


def _bridged_connection(rid, req, pc):
    """A connection plugin of the host's kind whose every touch of the host is a call to Rust."""
    from ansible.errors import AnsibleError

    conn = plugin_loader.connection_loader.get(req.get("connection") or "ssh", pc)
    allowed = [os.path.realpath(p) for p in (req.get("staging"), C.DEFAULT_LOCAL_TMP) if p]

    def exec_command(cmd, in_data=None, sudoable=True):
        tty = False
        if conn.transport.endswith("ssh") and not in_data and sudoable:
            try:  # the ssh plugin's own rule for `-tt`
                tty = bool(conn.get_option("use_tty"))
            except Exception:  # noqa: BLE001 - its default
                tty = True
        ans = _call(rid, "exec", cmd=cmd, in_data=_b64(in_data), tty=tty)
        return ans["rc"], base64.b64decode(ans["stdout"]), base64.b64decode(ans["stderr"])

    def put_file(in_path, out_path):
        real = os.path.realpath(in_path)
        if not any(real == a or real.startswith(a + os.sep) for a in allowed):
            raise AnsibleError(f"ftl2-runner transfers only files the job staged, not {in_path}")
        with open(real, "rb") as f:
            data = f.read()
        _call(rid, "put", path=out_path, data=_b64(data))

    def fetch_file(in_path, out_path):
        raise AnsibleError("ftl2-runner does not fetch files for this action")

    conn.exec_command = exec_command
    conn.put_file = put_file
    conn.fetch_file = fetch_file
    conn.reset = lambda: _call(rid, "reset")
    conn.close = lambda: None
    return conn


def op_action_run(req):
    """Run ansible-core's own action plugin with the host reached only through the Rust host."""
    from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound

    name = req.get("module") or req["action"]
    found = plugin_loader.action_loader.find_plugin_with_context(name, collection_list=[])
    if not getattr(found, "resolved", False) or found.resolved_fqcn not in _BRIDGED:
        return {"ok": False, "msg": f"ftl2-runner does not run the action plugin of {name}"}
    rid = req["id"]
    display.verbosity = int(req.get("verbosity") or 0)
    pc = PlayContext()
    pc.check_mode = bool(req.get("check_mode"))
    pc.diff = bool(req.get("diff"))
    pc.no_log = bool(req.get("no_log"))
    conn = _bridged_connection(rid, req, pc)
    try:  # as a playbook task is loaded (2.15 moves `cmd` of script into `_raw_params` here)
        task = Task.load({name: dict(req.get("args") or {})}, loader=LOADER)
    except AnsibleError as e:
        return {"result": _raised_result(e, req.get("no_log"))}
    task = _handed(task, req.get("check_mode"), req.get("diff"), req.get("no_log"))
    action = plugin_loader.action_loader.get(
        name, task=task, connection=conn, play_context=pc, loader=LOADER, templar=_templar(),
        shared_loader_obj=plugin_loader,
    )

    def find_needle(dirname, needle):
        ans = _call(rid, "find", kind=dirname, path=needle)
        if "path" in ans:
            return ans["path"]
        raise AnsibleFileNotFound(file_name=needle, paths=ans.get("searched") or [])

    def execute_module(module_name=None, module_args=None, tmp=None, task_vars=None, persist_files=False,
                       delete_remote_tmp=None, wrap_async=False, **_kw):
        if wrap_async:
            raise AnsibleError("ftl2-runner runs the modules of action plugins without async")
        args = dict(task.args if module_args is None else module_args)
        if _kw.get("ignore_unknown_opts"):
            args["_ansible_ignore_unknown_opts"] = True
        return _call(rid, "module", module=module_name or task.action, args=args)["result"]

    action._find_needle = find_needle
    action._execute_module = execute_module
    try:
        result = action.run(task_vars=_task_vars(req))
    except AnsibleConnectionFailure as e:
        return {"unreachable": str(e)}
    except AnsibleError as e:
        return {"result": _raised_result(e, req.get("no_log"))}
    finally:
        try:
            action.cleanup()
        except Exception:  # noqa: BLE001 - a temp dir left on an unreachable host
            pass
    return {"result": _finished_action_result(result, req.get("no_log"))}


OPS = {
    "hello": op_hello,
    "catalog": op_catalog,
    "doc": op_doc,
    "copy_args": op_copy_args,
    "copy_finish": op_copy_finish,
    "async_dir": op_async_dir,
    "async_status": op_async_status,
    "build": op_build,
    "parse": op_parse,
    "has": op_has,
    "action_error": op_action_error,
    "managed": op_managed,
    "mkdtemp": op_mkdtemp,
    "async_build": op_async_build,
    "action_run": op_action_run,
    "when": op_when,
}


def _serve(req):
    """One request's answer (with the warnings it raised)."""
    del _warnings()[:]
    try:
        resp = OPS[req["op"]](req)
        resp.setdefault("ok", True)
    except Exception as e:  # noqa: BLE001 - every failure is an answer, never a dead helper
        msg = str(e) or type(e).__name__
        resp = {"ok": False, "msg": msg, "traceback": traceback.format_exc()}
    if _warnings():
        resp["warnings"] = list(_warnings())
    resp["id"] = req.get("id")
    _send(resp)


def main():
    import signal

    # Ended with the job: exit normally, so ansible-core's atexit removes its local temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _send({"ok": True, "ready": True})
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        if "reply" in req:
            waiting = _REPLIES.get(req["reply"])
            if waiting is not None:
                waiting.put(req)
        elif req.get("op") == "action_run":
            threading.Thread(target=_serve, args=(req,), daemon=True).start()
        else:
            _serve(req)


main()
