"""FTL2's configuration and result types (`ftl2.types`), with FTL2 0.4.7's fields, defaults and
helpers, for scripts that build or inspect them. `HostConfig` is also what `ftl.hosts[...]` and
`add_host()` give a script.

One difference: `GateConfig` does not create its cache directory (ftl2-runner has no gates, and
the sandbox cannot write outside its scratch space).
"""

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _user():
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "root"


@dataclass(frozen=True)
class BecomeConfig:
    """Privilege escalation: whether, to whom and how (sudo, su or doas)."""

    become: bool = False
    become_user: str = "root"
    become_method: str = "sudo"

    def with_overrides(self, become: bool | None = None, become_user: str | None = None,
                       become_method: str | None = None) -> "BecomeConfig":
        """A copy with the values that are not None replaced."""
        return BecomeConfig(
            become=self.become if become is None else become,
            become_user=self.become_user if become_user is None else become_user,
            become_method=self.become_method if become_method is None else become_method,
        )

    @property
    def effective(self) -> bool:
        """Whether commands run escalated."""
        return self.become

    def sudo_prefix(self, cmd: str) -> str:
        """FTL2's older name of become_prefix."""
        return self.become_prefix(cmd)

    def become_prefix(self, cmd: str) -> str:
        """`cmd` wrapped in the escalation command FTL2 uses (unchanged when not escalating)."""
        if not self.become:
            return cmd
        user, method = self.become_user, self.become_method
        if method == "sudo":
            if user == "root":
                return f"sudo -n -H {cmd}"
            return f"sudo -n -H -u {user} sh -c {shlex.quote('cd ~ && ' + cmd)}"
        if method == "doas":
            return f"doas -n {cmd}" if user == "root" else f"doas -n -u {user} {cmd}"
        if method == "su":
            return f"su - {user} -c {shlex.quote(cmd)}"
        raise ValueError(f"Unsupported become_method: {method!r}. Supported: sudo, su, doas")


def gate_cache_key(host_name: str, become: "BecomeConfig | None" = None) -> str:
    """FTL2's key for one host's remote helper under one escalation."""
    if become and become.effective:
        return f"{host_name}:become={become.become_user}:method={become.become_method}"
    return host_name


@dataclass
class HostConfig:
    """One inventory host: its connection settings and variables."""

    name: str
    ansible_host: str
    ansible_port: int = 22
    ansible_user: str = field(default_factory=_user)
    ansible_connection: str = "ssh"
    ansible_python_interpreter: str = "python3"
    ansible_become: bool = False
    ansible_become_user: str = "root"
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """Runs on the controller (connection `local`)."""
        return self.ansible_connection == "local"

    @property
    def is_remote(self) -> bool:
        """Runs over SSH."""
        return not self.is_local

    @property
    def become_config(self) -> BecomeConfig:
        """The host's escalation settings."""
        return BecomeConfig(become=self.ansible_become, become_user=self.ansible_become_user)

    def get_var(self, key: str, default: Any = None) -> Any:
        """A host variable, or `default`."""
        return self.vars.get(key, default)

    def set_var(self, key: str, value: Any) -> None:
        """Set a host variable on this object (the job's inventory is changed by add_host)."""
        self.vars[key] = value


@dataclass
class ExecutionConfig:
    """What module to run with which arguments (FTL2's executor input)."""

    module_name: str
    module_dirs: list[Path] = field(default_factory=list)
    module_args: dict[str, Any] = field(default_factory=dict)
    host_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.module_name not in self.modules:
            self.modules.append(self.module_name)
        self.module_dirs = [Path(d) if isinstance(d, str) else d for d in self.module_dirs]


@dataclass
class GateConfig:
    """Settings of FTL2's remote helper (kept so scripts that build one still load)."""

    interpreter: str = "python3"
    local_interpreter: str = "python3"
    cache_dir: Path | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.cache_dir is None:
            self.cache_dir = Path.home() / ".ftl2" / "gates"
        if isinstance(self.cache_dir, str):
            self.cache_dir = Path(self.cache_dir)


@dataclass
class ModuleResult:
    """One host's result of one module run, as FTL2's executor reports it."""

    host_name: str
    success: bool
    changed: bool = False
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_context: Any = None

    @property
    def is_success(self) -> bool:
        """The run succeeded."""
        return self.success

    @property
    def is_failure(self) -> bool:
        """The run failed."""
        return not self.success

    @classmethod
    def success_result(cls, host_name: str, output: dict[str, Any],
                       changed: bool = False) -> "ModuleResult":
        """A successful result."""
        return cls(host_name=host_name, success=True, changed=changed, output=output)

    @classmethod
    def error_result(cls, host_name: str, error: str, error_context: Any = None) -> "ModuleResult":
        """A failed result whose output is `{"error": True, "msg": error}`."""
        return cls(host_name=host_name, success=False, output={"error": True, "msg": error},
                   error=error, error_context=error_context)
