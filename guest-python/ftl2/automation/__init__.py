"""`automation()`: FTL2's context for running modules, backed by the ftl2-runner host. Laid out
as FTL2's package is (`ftl2.automation.context`, `ftl2.automation.proxy`).

Forms scripts use (see FTL2-API.md):
    await ftl.ping()                       controller; returns the result dict
    await ftl.community.general.x(...)     controller, fully qualified name
    await ftl.local.command(cmd=...)       controller
    await ftl.webservers.ping()            every host of a group, concurrently: list[ExecuteResult]
    await ftl["db-1"].command(cmd=...)     one inventory host: list[ExecuteResult]
    await ftl.run_on("web:&prod", "ping")  any host pattern: list[ExecuteResult]
"""

from .context import (
    AutomationContext,
    AutomationError,
    EventCallback,
    OutputMode,
    any_failures,
    contexts_entered,
)
from .proxy import HostScopedModuleProxy, HostScopedProxy, ModuleProxy, NamespaceProxy

__all__ = [
    "automation",
    "AutomationContext",
    "AutomationError",
    "ModuleProxy",
    "NamespaceProxy",
    "HostScopedProxy",
    "HostScopedModuleProxy",
    "OutputMode",
]


def automation(modules=None, inventory=None, secrets=None, secret_bindings=None, check_mode=False,
               verbose=True, quiet=False, on_event=None, fail_fast=True, print_summary=True,
               print_errors=True, auto_install_deps=False, record_deps=False,
               deps_file=".ftl2-deps.txt", modules_file=".ftl2-modules.txt", gate_modules=None,
               gate_dependencies=None, gate_subsystem=False, state_file=".ftl2-state.json",
               import_state_files=None, record=None, replay=None, vault_secrets=None, policy=None,
               environment="", policy_audit=None, ignore_missing_inventory=True,
               log_file="ftl2.log", name=None):
    """`async with automation(...) as ftl:` -- FTL2's parameters (see AutomationContext), plus
    `name`, the play name the job output shows."""
    return AutomationContext(
        modules=modules, inventory=inventory, secrets=secrets, secret_bindings=secret_bindings,
        check_mode=check_mode, verbose=verbose, quiet=quiet, on_event=on_event,
        fail_fast=fail_fast, print_summary=print_summary, print_errors=print_errors,
        auto_install_deps=auto_install_deps, record_deps=record_deps, deps_file=deps_file,
        modules_file=modules_file, gate_modules=gate_modules, gate_dependencies=gate_dependencies,
        gate_subsystem=gate_subsystem, state_file=state_file,
        import_state_files=import_state_files, log_file=log_file, record=record, replay=replay,
        vault_secrets=vault_secrets, policy=policy, environment=environment,
        policy_audit=policy_audit, ignore_missing_inventory=ignore_missing_inventory, name=name)
