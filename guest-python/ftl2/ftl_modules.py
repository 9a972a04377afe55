"""FTL2's module layer (`ftl2.ftl_modules`): the per-host result type, the module registry, the
executor functions and the `ftl_*` module functions, with FTL2 0.4.7's names and signatures.

FTL2 runs its `ftl_*` functions in its own process. A sandboxed script has no host access of its
own, so here each one runs the Ansible module of the same name on the controller through the
ftl2-runner host (recorded in the job like any call) and returns that module's result: a superset
of the keys FTL2's function returns. As in FTL2, a failure raises `FTLModuleError` whose `result`
is the failed result; `ftl_command`/`ftl_shell` report a non-zero rc without raising unless
`check=True`. The cloud functions (`ftl_ec2_instance`, ...) need FTL2's cloud SDK extras, which
the sandbox cannot hold: they raise `FTLModuleMissingDependencyError` naming the Ansible module
to call instead (e.g. `ftl.amazon.aws.ec2_instance(...)`).
"""

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _host
from ._site import call_site


class FTLModuleError(Exception):
    """A module failed; `result` is its failed result (`failed`, `msg` and any fields given)."""

    def __init__(self, msg: str, **result_fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result: dict[str, Any] = {"failed": True, "msg": msg, **result_fields}

    def __str__(self) -> str:
        return self.msg


class FTLModuleCheckModeError(FTLModuleError):
    """A module cannot predict its changes in check mode."""

    def __init__(self, module_name: str) -> None:
        super().__init__(f"Module '{module_name}' does not support check mode", module=module_name,
                         check_mode_supported=False)


class FTLModuleNotFoundError(FTLModuleError):
    """No module of that name."""

    def __init__(self, module_name: str) -> None:
        super().__init__(f"Module '{module_name}' not found", module=module_name)


class FTLModuleMissingDependencyError(FTLModuleError):
    """A module needs something the environment lacks (FTL2: a pip extra)."""

    def __init__(self, module_name: str, extra: str, package: str) -> None:
        super().__init__(
            f"{module_name} requires the '{extra}' extra, which cannot run inside ftl2-runner's "
            f"sandbox; call the Ansible module {package} instead (ftl.{package}(...))",
            module=module_name, extra=extra, package=package)


@dataclass
class ExecuteResult:
    """One host's outcome of one module call. `status` (ftl2-runner's addition) is the outcome
    AWX shows: ok, failed, unreachable or skipped."""

    success: bool
    changed: bool = False
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    module: str = ""
    host: str = "localhost"
    used_ftl: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    timestamp: float = 0.0
    replayed: bool = False
    status: str = "ok"

    @classmethod
    def from_module_output(cls, output: dict[str, Any], module: str, host: str = "localhost",
                           used_ftl: bool = True) -> "ExecuteResult":
        """A result from a module's output: failed when it says so or its rc is not 0."""
        failed = output.get("failed", False) or output.get("rc", 0) != 0
        return cls(success=not failed, changed=output.get("changed", False), output=output,
                   error=output.get("msg", "") if failed else "", module=module, host=host,
                   used_ftl=used_ftl, status="failed" if failed else "ok")

    @classmethod
    def from_error(cls, error: str, module: str, host: str = "localhost", *,
                   used_ftl: bool = False) -> "ExecuteResult":
        """A failed result from an error message."""
        return cls(success=False, changed=False, output={"failed": True, "msg": error}, error=error,
                   module=module, host=host, used_ftl=used_ftl, status="failed")

    @property
    def failed(self) -> bool:
        """Whether the call failed on this host (FTL2's `not success`)."""
        return not self.success

    @property
    def unreachable(self) -> bool:
        """Whether the host could not be reached."""
        return self.status == "unreachable"

    @property
    def skipped(self) -> bool:
        """Whether the call was skipped on this host (check mode, tags, creates=...)."""
        return self.status == "skipped"

    def __getitem__(self, key: str) -> Any:
        # Convenience some scripts use: result["stdout"].
        return self.output[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A key of the module's result, or `default`."""
        return self.output.get(key, default)


@dataclass
class LocalHost:
    """The controller as an execution target."""

    name: str = "localhost"
    is_local: bool = True


# -- running an Ansible module for an ftl_* function or the executor ---------------------------

def _options(options: dict | None, host: str) -> dict:
    """The call options: the caller's, the controller flag for localhost, the script's line."""
    opts = dict(options or {})
    if host == "localhost":
        opts["controller"] = True
    site = call_site()
    if site:
        opts["task_path"] = site
    return opts


async def _run(module: str, params: dict, host: str = "localhost", options: dict | None = None):
    """Run `module` on `host` (the controller for localhost) through the host; the raw results."""
    return await _host.call_module(asyncio.get_running_loop(), host, module, params,
                                   _options(options, host))


def _run_blocking(module: str, params: dict, options: dict | None = None) -> list:
    """`_run` for FTL2's synchronous functions: waits for this call here, completing any other
    call that finishes meanwhile (the host runs them all concurrently)."""
    loop = asyncio.get_running_loop()
    fut = _host.call_module(loop, "localhost", module, params, _options(options, "localhost"))
    while not fut.done():
        _host.pump(None)
    return fut.result()


def _given(values: dict, defaults: dict) -> dict:
    """The arguments a caller set: not None and not left at the FTL2 function's own default."""
    return {k: v for k, v in values.items() if v is not None and not (k in defaults and v == defaults[k])}


def _output(raw: list, module: str, check_rc: bool = True) -> dict:
    """The module's result, or FTLModuleError with it when it failed."""
    if not raw:
        raise FTLModuleError(f"{module}: the controller did not run it")
    result = dict(raw[0].get("result") or {})
    status = raw[0].get("status", "ok")
    if not check_rc and result.get("rc") and result.get("msg") in _NON_ZERO:
        # An rc the caller reads itself (the task ran with failed_when=False): no error text.
        result.pop("failed", None)
        result.pop("msg", None)
    if status in ("failed", "unreachable"):
        fields = {k: v for k, v in result.items() if k not in ("failed", "msg")}
        raise FTLModuleError(str(result.get("msg") or status), **fields)
    return result


# ansible-core's texts for a command that exited non-zero (up to 2.19, 2.21 on).
_NON_ZERO = ("non-zero return code", "The command exited with a non-zero return code.")


def _defaults(fn) -> dict:
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _sync_module(module: str, fn, values: dict, extra: dict | None = None, check_rc: bool = True,
                 options: dict | None = None) -> dict:
    params = _given(values, _defaults(fn))
    params.update(extra or {})
    return _output(_run_blocking(module, params, options), module, check_rc)


async def _async_module(module: str, fn, values: dict, extra: dict | None = None) -> dict:
    params = _given(values, _defaults(fn))
    params.update(extra or {})
    return _output(await _run(module, params), module)


# -- the ftl_* functions -----------------------------------------------------------------------

def ftl_file(path: str | None = None, state: str = "file", mode: str | None = None,
             owner: str | None = None, group: str | None = None, src: str | None = None,
             dest: str | None = None, recurse: bool = False, force: bool = False,
             **kwargs: Any) -> dict[str, Any]:
    """ansible.builtin.file on the controller."""
    values = dict(path=path, state=state, mode=mode, owner=owner, group=group, src=src, dest=dest,
                  recurse=recurse, force=force)
    return _sync_module("ansible.builtin.file", ftl_file, values, kwargs)


def ftl_copy(src: str, dest: str, mode: str | None = None, force: bool = True, backup: bool = False,
             emit_events: bool = True) -> dict[str, Any]:
    """ansible.builtin.copy on the controller (progress events: the job shows the task)."""
    values = dict(src=src, dest=dest, mode=mode, force=force, backup=backup)
    return _sync_module("ansible.builtin.copy", ftl_copy, values, {"src": src, "dest": dest})


def ftl_template(src: str, dest: str, variables: dict[str, Any] | None = None,
                 mode: str | None = None) -> dict[str, Any]:
    """ansible.builtin.template on the controller, rendered with `variables`."""
    values = dict(src=src, dest=dest, mode=mode)
    options = {"vars": dict(variables)} if variables else None
    return _sync_module("ansible.builtin.template", ftl_template, values, options=options)


def ftl_command(cmd: str, chdir: str | None = None, creates: str | None = None,
                removes: str | None = None, timeout: int | None = None,
                check: bool = False) -> dict[str, Any]:
    """`cmd` through the shell on the controller (as FTL2: shell syntax; a non-zero rc is
    returned, raised only with check=True)."""
    if timeout is not None:
        raise FTLModuleError("ftl_command(timeout=...) is not supported by ftl2-runner: run the "
                             "call with _async=<seconds> through ftl.local.shell instead", cmd=cmd)
    values = dict(cmd=cmd, chdir=chdir, creates=creates, removes=removes)
    # Without check, a non-zero rc is a result, not a failed task (as in FTL2).
    options = None if check else {"failed_when": False}
    return _sync_module("ansible.builtin.shell", ftl_command, values, check_rc=check, options=options)


def ftl_shell(cmd: str, **kwargs: Any) -> dict[str, Any]:
    """ftl_command under its shell name."""
    return ftl_command(cmd, **kwargs)


def ftl_pip(name: str | list[str] | None = None, requirements: str | None = None,
            state: str = "present", virtualenv: str | None = None,
            extra_args: str | None = None) -> dict[str, Any]:
    """ansible.builtin.pip on the controller."""
    values = dict(name=name, requirements=requirements, state=state, virtualenv=virtualenv,
                  extra_args=extra_args)
    return _sync_module("ansible.builtin.pip", ftl_pip, values)


def ftl_wait_for(host: str = "127.0.0.1", port: int | None = None, timeout: int = 300,
                 delay: int = 0, sleep: int = 1, state: str = "started",
                 connect_timeout: int = 5) -> dict[str, Any]:
    """ansible.builtin.wait_for on the controller."""
    values = dict(host=host, port=port, timeout=timeout, delay=delay, sleep=sleep, state=state,
                  connect_timeout=connect_timeout)
    return _sync_module("ansible.builtin.wait_for", ftl_wait_for, values)


async def ftl_uri(url: str, method: str = "GET", body: str | bytes | dict | list | None = None,
                  body_format: str = "raw", headers: dict[str, str] | None = None,
                  timeout: int = 30, return_content: bool = True,
                  status_code: int | list[int] | None = None, url_username: str | None = None,
                  url_password: str | None = None, force_basic_auth: bool = False,
                  bearer_token: str | None = None) -> dict[str, Any]:
    """ansible.builtin.uri on the controller (bearer_token becomes the Authorization header)."""
    headers = dict(headers or {})
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    if isinstance(body, bytes):
        body = body.decode()
    values = dict(url=url, method=method, body=body, body_format=body_format, timeout=timeout,
                  status_code=status_code, url_username=url_username, url_password=url_password,
                  force_basic_auth=force_basic_auth)
    extra = {"return_content": return_content}
    if headers:
        extra["headers"] = headers
    return await _async_module("ansible.builtin.uri", ftl_uri, values, extra)


async def ftl_get_url(url: str, dest: str, checksum: str | None = None, force: bool = True,
                      timeout: int = 300, headers: dict[str, str] | None = None,
                      emit_events: bool = True) -> dict[str, Any]:
    """ansible.builtin.get_url on the controller."""
    values = dict(url=url, dest=dest, checksum=checksum, timeout=timeout, headers=headers)
    return await _async_module("ansible.builtin.get_url", ftl_get_url, values, {"force": force})


async def ftl_dnf(name: str | list[str] | None = None, state: str = "present",
                  update_cache: bool = False, enablerepo: str | None = None,
                  disablerepo: str | None = None, disable_gpg_check: bool = False,
                  installroot: str | None = None, allowerasing: bool = False,
                  **kwargs: Any) -> dict[str, Any]:
    """ansible.builtin.dnf on the controller."""
    values = dict(name=name, state=state, update_cache=update_cache, enablerepo=enablerepo,
                  disablerepo=disablerepo, disable_gpg_check=disable_gpg_check,
                  installroot=installroot, allowerasing=allowerasing)
    return await _async_module("ansible.builtin.dnf", ftl_dnf, values, kwargs)


def _cloud(short: str, extra: str, ansible: str) -> Callable[..., Any]:
    async def unavailable(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise FTLModuleMissingDependencyError(short, extra, ansible)

    unavailable.__name__ = f"ftl_{short}"
    unavailable.__doc__ = f"FTL2's in-process {short}: call the Ansible module {ansible} instead."
    return unavailable


ftl_ec2_instance = _cloud("ec2_instance", "aws", "amazon.aws.ec2_instance")
ftl_ec2_instance_info = _cloud("ec2_instance_info", "aws", "amazon.aws.ec2_instance_info")
ftl_route53_record = _cloud("route53_record", "aws", "amazon.aws.route53")
ftl_route53_info = _cloud("route53_info", "aws", "amazon.aws.route53_info")
ftl_cloud_run_service = _cloud("cloud_run_service", "gcp", "google.cloud.gcp_run_service")
ftl_artifact_registry_repository = _cloud("artifact_registry_repository", "gcp",
                                          "google.cloud.gcp_artifactregistry_repository")
ftl_secret_manager_secret = _cloud("secret_manager_secret", "gcp",
                                   "google.cloud.gcp_secret_manager")
ftl_gcp_compute_instance = _cloud("gcp_compute_instance", "gcp", "google.cloud.gcp_compute_instance")
ftl_gcp_compute_instance_info = _cloud("gcp_compute_instance_info", "gcp",
                                       "google.cloud.gcp_compute_instance_info")

ModuleFunc = Callable[..., dict[str, Any]]

# FTL2's registry: short names and the Ansible names they stand for.
FTL_MODULES: dict[str, ModuleFunc] = {
    "file": ftl_file, "copy": ftl_copy, "template": ftl_template, "uri": ftl_uri,
    "get_url": ftl_get_url, "command": ftl_command, "shell": ftl_shell, "pip": ftl_pip,
    "dnf": ftl_dnf, "dnf5": ftl_dnf, "wait_for": ftl_wait_for,
    "ec2_instance": ftl_ec2_instance, "ec2_instance_info": ftl_ec2_instance_info,
    "route53_record": ftl_route53_record, "route53_info": ftl_route53_info,
    "cloud_run_service": ftl_cloud_run_service,
    "artifact_registry_repository": ftl_artifact_registry_repository,
    "secret_manager_secret": ftl_secret_manager_secret,
    "gcp_compute_instance": ftl_gcp_compute_instance,
    "gcp_compute_instance_info": ftl_gcp_compute_instance_info,
}

ANSIBLE_COMPAT: dict[str, ModuleFunc] = {
    **{f"ansible.builtin.{name}": FTL_MODULES[name] for name in (
        "file", "copy", "template", "uri", "get_url", "command", "shell", "pip", "dnf", "dnf5",
        "wait_for")},
    "amazon.aws.ec2_instance": ftl_ec2_instance,
    "amazon.aws.ec2_instance_info": ftl_ec2_instance_info,
    "amazon.aws.route53": ftl_route53_record,
    "amazon.aws.route53_info": ftl_route53_info,
    **{f"google.cloud.{name}": FTL_MODULES[name] for name in (
        "cloud_run_service", "artifact_registry_repository", "secret_manager_secret",
        "gcp_compute_instance", "gcp_compute_instance_info")},
}


def get_module(name: str) -> ModuleFunc | None:
    """The FTL2 function for a short name or Ansible name, or None."""
    return FTL_MODULES.get(name) or ANSIBLE_COMPAT.get(name)


def has_ftl_module(name: str) -> bool:
    """Whether FTL2 has an in-process function for `name`."""
    return get_module(name) is not None


def list_modules() -> list[str]:
    """The short names of FTL2's module functions."""
    return list(FTL_MODULES)


def list_ansible_compat() -> list[str]:
    """The Ansible names FTL2's module functions stand for."""
    return list(ANSIBLE_COMPAT)


# -- the executor --------------------------------------------------------------------------------

async def execute(module_name: str, params: dict[str, Any], host: Any = None,
                  check_mode: bool = False, auto_install_deps: bool = False) -> ExecuteResult:
    """Run any module on `host` (None or LocalHost: the controller; else an inventory host by its
    `name`) and return its ExecuteResult; failures are results, never exceptions."""
    host = host if host is not None else LocalHost()
    name = getattr(host, "name", None) or str(host)
    local = bool(getattr(host, "is_local", False)) or name in ("localhost", "local")
    options = {"check_mode": True} if check_mode else {}
    try:
        raw = await _run(module_name, dict(params), "localhost" if local else name, options)
    except Exception as e:  # noqa: BLE001 -- FTL2 reports every failure as a result
        return ExecuteResult.from_error(str(e), module_name, name)
    if not raw:
        return ExecuteResult.from_error(f"no host matched {name!r}", module_name, name)
    r = raw[0]
    output = dict(r.get("result") or {})
    failed = r.get("status") in ("failed", "unreachable")
    return ExecuteResult(success=not failed, changed=bool(output.get("changed")), output=output,
                         error=str(output.get("msg") or r.get("status")) if failed else "",
                         module=module_name, host=r.get("host") or name,
                         used_ftl=local and has_ftl_module(module_name), params=dict(params),
                         status=r.get("status", "ok"))


async def execute_on_hosts(hosts: list, module_name: str, params: dict[str, Any],
                           check_mode: bool = False) -> list[ExecuteResult]:
    """`execute` on several hosts at once, results in the hosts' order."""
    return list(await asyncio.gather(*(execute(module_name, params, h, check_mode) for h in hosts)))


async def execute_batch(tasks_list: list, check_mode: bool = False) -> list[ExecuteResult]:
    """Several (module, params, host) calls at once, results in order."""
    return list(await asyncio.gather(*(execute(m, p, h, check_mode) for m, p, h in tasks_list)))


async def run(module_name: str, **params: Any) -> ExecuteResult:
    """`execute` on the controller."""
    return await execute(module_name, params)


async def run_on(host: Any, module_name: str, **params: Any) -> ExecuteResult:
    """`execute` on one host."""
    return await execute(module_name, params, host)


__all__ = [
    "FTLModuleError", "FTLModuleCheckModeError", "FTLModuleNotFoundError",
    "FTL_MODULES", "ANSIBLE_COMPAT", "get_module", "has_ftl_module", "list_modules",
    "list_ansible_compat",
    "execute", "execute_on_hosts", "execute_batch", "run", "run_on", "ExecuteResult", "LocalHost",
    "ftl_file", "ftl_copy", "ftl_template", "ftl_uri", "ftl_get_url", "ftl_command", "ftl_shell",
    "ftl_pip", "ftl_dnf", "ftl_wait_for",
    "ftl_ec2_instance", "ftl_ec2_instance_info", "ftl_route53_record", "ftl_route53_info",
    "ftl_cloud_run_service", "ftl_artifact_registry_repository", "ftl_secret_manager_secret",
    "ftl_gcp_compute_instance", "ftl_gcp_compute_instance_info",
]
