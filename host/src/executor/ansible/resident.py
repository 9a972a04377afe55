# ftl2-runner's resident module runner: one per host (and become user and interpreter) per job.
#
# It runs each AnsiballZ payload exactly as Ansible's pipelining does (`python` reading the payload
# from its stdin), but in a forked child of a long-lived process instead of a new interpreter, so
# a module costs a fork instead of an interpreter start plus compiling ansible.module_utils from a
# zip (~250 ms per task on a small host). Each task still gets its own process: a module that
# calls sys.exit, changes global state, reads stdin or leaves threads behaves as under Ansible.
#
# Protocol on stdin/stdout (nothing else is ever written to stdout):
#   -> FTL2-RESIDENT 1 <python version>\n            once, when ready
#   <- RUN <n>\n<n bytes of payload>                   one task
#   -> DONE <rc> <stdout bytes> <stderr bytes>\n<stdout><stderr>
# EOF on stdin ends it. It never runs anything but the payloads it is given.

import os
import sys


def main():
    if sys.version_info < (3, 6) or not hasattr(os, "fork"):
        return 3
    import base64
    import binascii
    import hashlib
    import importlib
    import io
    import re
    import shutil
    import tempfile
    import zipfile

    import signal

    # Ended by the worker (a canceled job): clean up like at EOF; children get the default back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    base_path = list(sys.path)
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="ftl2-resident-"))
    seen = set()
    state = {"buf": b""}

    def write(data):
        while data:
            n = os.write(proto_out, data)
            data = data[n:]

    def read_line():
        while b"\n" not in state["buf"]:
            chunk = os.read(proto_in, 65536)
            if not chunk:
                return None
            state["buf"] += chunk
        line, _, state["buf"] = state["buf"].partition(b"\n")
        return line

    def read_exact(n):
        parts = [state["buf"][:n]]
        have = len(parts[0])
        state["buf"] = state["buf"][n:]
        while have < n:
            chunk = os.read(proto_in, min(1 << 20, n - have))
            if not chunk:
                return None
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    class PackagePath(object):
        """A preloaded package's __path__ that also looks in the payload zip on sys.path, so a
        task can import the submodules its own payload carries (its module, other utils)."""

        def __init__(self, name, orig):
            self._rel = name.replace(".", "/")
            self._orig = list(orig)

        def _entries(self):
            zips = [p + "/" + self._rel for p in sys.path if isinstance(p, str) and p.endswith(".zip")]
            return zips + self._orig

        def __iter__(self):
            return iter(self._entries())

        def __len__(self):
            return len(self._entries())

        def __getitem__(self, i):
            return self._entries()[i]

        def __contains__(self, item):
            return item in self._entries()

        def __repr__(self):
            return "PackagePath(%r)" % (self._entries(),)

    zip_run = re.compile(rb"[A-Za-z0-9+/=]{2048,}")
    # Source digests of the modules preloaded from payload zips, by path inside the zip.
    preloaded = {}

    def payload_zip(payload):
        """The zip an AnsiballZ payload carries (the one long base64 string in it), or None."""
        best = max(zip_run.finditer(payload), key=lambda m: m.end() - m.start(), default=None)
        if best is None:
            return None
        try:
            data = base64.b64decode(best.group(0))
            if data[:4] != b"PK\x03\x04":
                return None
            return data, zipfile.ZipFile(io.BytesIO(data))
        except (binascii.Error, ValueError, zipfile.BadZipFile):
            return None

    def matches_preload(zf):
        """Whether every preloaded module this payload also carries has the same source: a
        payload of another ansible-core must not run with this one's basic."""
        names = set(zf.namelist())
        for rel, digest in preloaded.items():
            if rel in names and hashlib.sha1(zf.read(rel)).hexdigest() != digest:
                return False
        return True

    def preload(found):
        """Import, once, the ansible.module_utils code every module of this ansible-core runs
        (basic and the AnsiballZ loader), from the first payload's own zip: children start with
        it imported instead of compiling it from the zip each time."""
        data, zf = found
        names = set(zf.namelist())
        roots = [
            m
            for m in ("ansible.module_utils._internal._ansiballz._loader", "ansible.module_utils.basic")
            if m.replace(".", "/") + ".py" in names and m not in sys.modules
        ]
        if not roots or state.get("no_preload"):
            return
        path = os.path.join(workdir, "preload-%d.zip" % len(preloaded))
        with open(path, "wb") as f:
            f.write(data)
        before = set(sys.modules)
        sys.path.insert(0, path)
        try:
            for name in roots:
                importlib.import_module(name)
        except Exception:
            # Not preloadable here: children import everything themselves, as Ansible's do.
            purge(set(sys.modules) - before)
            state["no_preload"] = True
            return
        finally:
            sys.path.remove(path)
        for name in set(sys.modules) - before:
            mod = sys.modules[name]
            where = getattr(mod, "__file__", None) or ""
            if where.startswith(path + "/"):
                rel = where[len(path) + 1 :]
                preloaded[rel] = hashlib.sha1(zf.read(rel)).hexdigest()
            if is_ansible(name) and isinstance(getattr(mod, "__path__", None), list):
                mod.__path__ = PackagePath(name, mod.__path__)

    def is_ansible(name):
        return name == "ansible" or name.startswith("ansible.")

    def purge(names):
        for name in names:
            if is_ansible(name):
                sys.modules.pop(name, None)

    def child(payload):
        """Run the payload as `python` with the payload on stdin would: a fresh __main__ (no
        __file__), argv [''], the interpreter's own sys.path; exit as that interpreter exits."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.close(proto_in)
        os.close(proto_out)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        out = os.open(os.path.join(workdir, "out"), flags, 0o600)
        err = os.open(os.path.join(workdir, "err"), flags, 0o600)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        import builtins
        import types

        rc = 0
        try:
            sys.argv[:] = [""]
            sys.path[:] = base_path
            main_mod = types.ModuleType("__main__")
            main_mod.__dict__["__builtins__"] = builtins
            sys.modules["__main__"] = main_mod
            exec(compile(payload, "<stdin>", "exec"), main_mod.__dict__)
        except SystemExit as e:
            rc = exit_code(e.code)
        except BaseException as e:
            rc = uncaught(e)
        try:
            if "threading" in sys.modules:
                sys.modules["threading"]._shutdown()
            import atexit

            atexit._run_exitfuncs()
        except BaseException:
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                rc = rc or 120
        os._exit(rc)

    def uncaught(e):
        """What the interpreter does with an exception nothing caught: `sys.excepthook` (some
        modules install one that fails the task as JSON), its traceback without our frame."""
        tb = e.__traceback__
        if tb is not None and tb.tb_frame.f_code is child.__code__:
            tb = tb.tb_next
        try:
            sys.excepthook(type(e), e, tb)
            return 1
        except SystemExit as done:
            return exit_code(done.code)
        except BaseException:
            import traceback

            sys.stderr.write("Error in sys.excepthook:\n")
            traceback.print_exc()
            sys.stderr.write("\nOriginal exception was:\n")
            traceback.print_exception(type(e), e, tb)
            return 1

    def exit_code(code):
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        try:
            sys.stderr.write("%s\n" % (code,))
        except BaseException:
            pass
        return 1

    def run(payload):
        fresh = False
        try:
            found = payload_zip(payload)
            if found is not None:
                if matches_preload(found[1]):
                    preload(found)
                else:
                    fresh = True
        except Exception:
            pass
        pid = os.fork()
        if pid == 0:
            try:
                if fresh:
                    purge(list(sys.modules))
                child(payload)
            finally:
                os._exit(121)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            rc = 128 + os.WTERMSIG(status)
        else:
            rc = os.WEXITSTATUS(status)
        with open(os.path.join(workdir, "out"), "rb") as f:
            out = f.read()
        with open(os.path.join(workdir, "err"), "rb") as f:
            err = f.read()
        write(b"DONE %d %d %d\n" % (rc, len(out), len(err)) + out + err)

    try:
        write(b"FTL2-RESIDENT 1 %d.%d\n" % sys.version_info[:2])
        while True:
            line = read_line()
            if line is None:
                return 0
            words = line.split()
            if len(words) != 2 or words[0] != b"RUN" or not words[1].isdigit():
                return 2
            payload = read_exact(int(words[1]))
            if payload is None:
                return 0
            run(payload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


sys.exit(main())
