"""The Ansible modules that are playbook keywords, not work on a host: FTL2 refuses them with
the Python to write instead (`ExcludedModuleError`), under their short and `ansible.builtin`
names."""

from dataclasses import dataclass


@dataclass
class ExcludedModule:
    """Why one keyword does not apply to a script, and what to write instead."""

    name: str
    reason: str
    alternative: str
    example: str | None = None


_MODULES = [
    ExcludedModule("meta", "Controls Ansible playbook execution flow (flush_handlers, end_play, etc.)",
                   "Python control flow (return, break, sys.exit())"),
    ExcludedModule("include_tasks", "Ansible playbook structure", "Python imports and function calls"),
    ExcludedModule("import_tasks", "Ansible playbook structure", "Python imports and function calls"),
    ExcludedModule("include", "Ansible playbook structure", "Python imports and function calls"),
    ExcludedModule("import_playbook", "Ansible playbook structure", "Python imports and function calls"),
    ExcludedModule("include_role", "Ansible role system", "Python imports and function calls"),
    ExcludedModule("import_role", "Ansible role system", "Python imports and function calls"),
    ExcludedModule("include_vars", "Ansible variable loading",
                   "Python: yaml.safe_load() or json.load()"),
    ExcludedModule("set_fact", "Ansible host fact system", "Python variables"),
    ExcludedModule("set_stats", "Ansible playbook statistics", "Python variables or logging"),
    ExcludedModule("group_by", "Ansible dynamic group creation from facts",
                   "ftl.add_host(..., groups=[...])"),
    ExcludedModule("debug", "Ansible debug output", "print() or Python logging"),
    ExcludedModule("fail", "Ansible task failure", "raise Exception()"),
    ExcludedModule("assert", "Ansible assertion", "Python assert statement"),
    ExcludedModule("pause", "Ansible playbook pause", "await asyncio.sleep() or input()"),
]

# FTL2 knows the short and ansible.builtin names; ansible.legacy names the same keywords.
EXCLUDED = {key: m for m in _MODULES
            for key in (m.name, f"ansible.builtin.{m.name}", f"ansible.legacy.{m.name}")}


def excluded(module):
    """The exclusion of `module` (short name or FQCN), or None for a module that may run."""
    return EXCLUDED.get(module)
