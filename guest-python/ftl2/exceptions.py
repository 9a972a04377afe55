"""FTL2's exception types, importable from the same paths FTL2 scripts use, with FTL2 0.4.7's
classes, hierarchy, constructor parameters and error context (`err.context.format_text()`), so a
script's `except` clauses and error reports behave as under FTL2.

Two classes are ftl2-runner's own (FTL2 has no sandbox to refuse things in):
`ModuleNotAllowedError` and `UnsupportedParameterError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ErrorContext:
    """What is known about a failure (host, module, suggestions...), for people and for tools."""

    host: str = ""
    host_address: str = ""
    user: str = ""
    module: str = ""
    error_type: str = "Unknown"
    message: str = ""
    exit_code: int | None = None
    attempt: int = 0
    max_attempts: int = 0
    suggestions: list[str] = field(default_factory=list)
    debug_command: str = ""
    related_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The context as JSON-ready data: type and message always, the rest when known."""
        out: dict[str, Any] = {"error_type": self.error_type, "message": self.message}
        for key in ("host", "host_address", "user", "module"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
        if self.attempt:
            out["attempt"] = self.attempt
            out["max_attempts"] = self.max_attempts
        if self.suggestions:
            out["suggestions"] = self.suggestions
        if self.debug_command:
            out["debug_command"] = self.debug_command
        if self.related_errors:
            out["related_hosts"] = self.related_errors
        return out

    def format_text(self) -> str:
        """The context as the indented report FTL2 prints."""
        lines = [f"Error on host '{self.host}'" if self.host else "Error",
                 f"  Type: {self.error_type}", f"  Message: {self.message}"]
        if self.host_address or self.user or self.module or self.exit_code is not None:
            lines += ["", "  Context:"]
            if self.host_address:
                lines.append(f"    Host: {self.host_address}")
            if self.user:
                lines.append(f"    User: {self.user}")
            if self.module:
                lines.append(f"    Module: {self.module}")
            if self.exit_code is not None:
                lines.append(f"    Exit Code: {self.exit_code}")
            if self.attempt:
                lines.append(f"    Attempt: {self.attempt} of {self.max_attempts}")
        if self.suggestions:
            lines += ["", "  Suggested Actions:"]
            lines += [f"    {n}. {s}" for n, s in enumerate(self.suggestions, 1)]
        if self.debug_command:
            lines += ["", f"  Debug Command: {self.debug_command}"]
        if self.related_errors:
            lines += ["", f"  Related Hosts (same error): {', '.join(self.related_errors)}"]
        return "\n".join(lines)


class ErrorTypes:
    """The error classifications FTL2 puts in `ErrorContext.error_type`."""

    CONNECTION_TIMEOUT = "ConnectionTimeout"
    CONNECTION_REFUSED = "ConnectionRefused"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    HOST_UNREACHABLE = "HostUnreachable"
    MODULE_NOT_FOUND = "ModuleNotFound"
    MODULE_EXECUTION_ERROR = "ModuleExecutionError"
    MODULE_TIMEOUT = "ModuleTimeout"
    PERMISSION_DENIED = "PermissionDenied"
    INVENTORY_ERROR = "InventoryError"
    GATE_ERROR = "GateError"
    GATE_TIMEOUT = "GateTimeout"
    GATE_UNRESPONSIVE = "GateUnresponsive"
    UNKNOWN = "Unknown"


# What to try next, per error type ({host}, {port}, ... filled in by get_suggestions).
ERROR_SUGGESTIONS: dict[str, list[str]] = {
    ErrorTypes.CONNECTION_TIMEOUT: [
        "Verify host is reachable: ping {host_address}",
        "Check if SSH port is open: nc -zv {host} {port}",
        "Verify firewall allows connections on port {port}",
        "Check network connectivity between this machine and target",
    ],
    ErrorTypes.CONNECTION_REFUSED: [
        "Verify SSH daemon is running on target: systemctl status sshd",
        "Check SSH is listening on port {port}: ss -tlnp | grep {port}",
        "Verify correct port in inventory (current: {port})",
    ],
    ErrorTypes.AUTHENTICATION_FAILED: [
        "Verify SSH credentials are correct",
        "Check SSH key is in authorized_keys: ssh-copy-id {user}@{host}",
        "Verify SSH key file exists and has correct permissions (600)",
        "Try connecting manually: ssh -i {key_file} {user}@{host}",
    ],
    ErrorTypes.HOST_UNREACHABLE: [
        "Verify host is powered on and connected to network",
        "Check DNS resolution: nslookup {host}",
        "Verify IP address is correct in inventory",
    ],
    ErrorTypes.MODULE_NOT_FOUND: [
        "Check module name spelling",
        "Verify module exists in module directories",
        "Use -M to specify additional module directories",
        "List available modules with: ftl2 run --list-modules",
    ],
    ErrorTypes.MODULE_EXECUTION_ERROR: [
        "Check module arguments are correct",
        "Review module output for specific error details",
        "Run with --verbose for more details",
    ],
    ErrorTypes.PERMISSION_DENIED: [
        "Verify user has required permissions on target",
        "Check if sudo/become is needed for this operation",
        "Review file/directory permissions on target",
    ],
}


def get_suggestions(error_type: str, **context: Any) -> list[str]:
    """The suggestions for `error_type` with `context` filled in (`<value>` where it lacks a key)."""
    out = []
    for text in ERROR_SUGGESTIONS.get(error_type, []):
        try:
            out.append(text.format(**context))
        except KeyError:
            out.append(re.sub(r"\{[^}]+\}", "<value>", text))
    return out


class FTL2Error(Exception):
    """Base class of FTL2's errors; `context` says what is known about the failure."""

    def __init__(self, message: str, context: ErrorContext | None = None):
        super().__init__(message)
        self.context = context or ErrorContext(message=message)

    def with_context(self, **kwargs: Any) -> FTL2Error:
        """Set known context fields (unknown names are ignored, as FTL2 does) and return self."""
        for key, value in kwargs.items():
            if hasattr(self.context, key):
                setattr(self.context, key, value)
        return self


class ModuleNotFound(FTL2Error):
    """No module of that name."""

    def __init__(self, message: str, module_name: str = "", search_paths: list[str] | None = None):
        super().__init__(message, ErrorContext(
            error_type=ErrorTypes.MODULE_NOT_FOUND, message=message, module=module_name,
            suggestions=get_suggestions(ErrorTypes.MODULE_NOT_FOUND)))
        self.module_name = module_name
        self.search_paths = search_paths or []


class ModuleExecutionError(FTL2Error):
    """A module ran and failed."""

    def __init__(self, message: str, host: str = "", module: str = "", exit_code: int | None = None,
                 error_type: str = ErrorTypes.MODULE_EXECUTION_ERROR):
        super().__init__(message, ErrorContext(
            error_type=error_type, message=message, host=host, module=module, exit_code=exit_code,
            suggestions=get_suggestions(error_type)))


class FTL2ConnectionError(FTL2Error):
    """A host could not be reached."""

    def __init__(self, message: str, host: str = "", host_address: str = "", port: int = 22,
                 user: str = "", error_type: str = ErrorTypes.CONNECTION_TIMEOUT, attempt: int = 0,
                 max_attempts: int = 3):
        super().__init__(message, ErrorContext(
            error_type=error_type, message=message, host=host, host_address=f"{host_address}:{port}",
            user=user, attempt=attempt, max_attempts=max_attempts,
            suggestions=get_suggestions(error_type, host=host, host_address=host_address, port=port,
                                        user=user),
            debug_command="ftl2 test-ssh -i <inventory> --timeout 30"))


# FTL2's older name (it shadows Python's builtin ConnectionError when imported).
ConnectionError = FTL2ConnectionError


class AuthenticationError(FTL2Error):
    """A host refused the credentials."""

    def __init__(self, message: str, host: str = "", host_address: str = "", port: int = 22,
                 user: str = "", key_file: str = ""):
        super().__init__(message, ErrorContext(
            error_type=ErrorTypes.AUTHENTICATION_FAILED, message=message, host=host,
            host_address=f"{host_address}:{port}", user=user,
            suggestions=get_suggestions(ErrorTypes.AUTHENTICATION_FAILED, host=host_address, port=port,
                                        user=user, key_file=key_file or "~/.ssh/id_rsa")))


class GateError(FTL2Error):
    """FTL2's remote helper failed (ftl2-runner has none; kept for `except` clauses)."""

    def __init__(self, message: str, host: str = ""):
        super().__init__(message, ErrorContext(error_type=ErrorTypes.GATE_ERROR, message=message,
                                               host=host))


class InventoryError(FTL2Error):
    """The inventory could not be loaded or changed."""

    def __init__(self, message: str):
        super().__init__(message, ErrorContext(error_type=ErrorTypes.INVENTORY_ERROR, message=message))


class GateRequestTimeoutError(ModuleExecutionError):
    """One request to FTL2's remote helper timed out (kept for `except` clauses)."""

    def __init__(self, message: str, host: str = "", module: str = ""):
        super().__init__(message, host=host, module=module, error_type=ErrorTypes.GATE_TIMEOUT)


class GateHandshakeTimeoutError(FTL2ConnectionError):
    """FTL2's remote helper did not start (kept for `except` clauses)."""

    def __init__(self, message: str, host: str = ""):
        super().__init__(message, host=host, error_type=ErrorTypes.GATE_TIMEOUT)


class GateUnresponsiveError(FTL2ConnectionError):
    """FTL2's remote helper stopped answering (kept for `except` clauses)."""

    def __init__(self, message: str, host: str = ""):
        super().__init__(message, host=host, error_type=ErrorTypes.GATE_UNRESPONSIVE)


class ExcludedModuleError(FTL2Error):
    """A playbook keyword (debug, set_fact, include_tasks, ...) was called as if it were a module;
    `module` says why it does not apply and what to write in Python instead."""

    def __init__(self, module: Any):
        self.module = module
        super().__init__(self._format_message())

    def _format_message(self) -> str:
        rule = "=" * 60
        lines = ["", rule, f"Module '{self.module.name}' is not available in FTL2", rule, "",
                 f"Reason: {self.module.reason}", "", f"Alternative: {self.module.alternative}"]
        if self.module.example:
            lines.append(f"\nExample:{self.module.example}")
        return "\n".join(lines)


class ModuleNotAllowedError(FTL2Error):
    """ftl2-runner's own: a module outside the `modules=` allowlist of `automation()` was called
    through a host or `run_on` (FTL2 checks only some call forms)."""


class UnsupportedParameterError(NotImplementedError, FTL2Error):
    """ftl2-runner's own: an `automation()` parameter that cannot work inside the sandbox."""

    def __init__(self, message: str):
        FTL2Error.__init__(self, message)
