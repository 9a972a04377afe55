"""The per-host result of a module call, as FTL2 returns it for host and group targets."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ExecuteResult:
    """One host's outcome of one module call."""

    success: bool
    changed: bool = False
    output: dict = field(default_factory=dict)
    error: str = ""
    module: str = ""
    host: str = ""
    params: dict = field(default_factory=dict)
    duration: float = 0.0
    status: str = "ok"

    @property
    def failed(self) -> bool:
        return not self.success

    @property
    def unreachable(self) -> bool:
        return self.status == "unreachable"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def __getitem__(self, key: str) -> Any:
        # Convenience some scripts use: result["stdout"].
        return self.output[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.output.get(key, default)
