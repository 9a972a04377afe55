"""FTL2's policy engine (`ftl2.policy`): deny rules matched against each module call (module,
host, environment label, parameter values) before it runs, as in FTL2 0.4.7. A script uses it
through `automation(policy="rules.yml", environment="prod")`, or directly.

Rules deny only ("allow" is refused, as FTL2 refuses it). A rule naming one of shell, command
and raw denies all three, so a rule cannot be bypassed through a twin module.
"""

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ErrorContext, FTL2Error


class PolicyDeniedError(FTL2Error):
    """A policy rule denied a module call; `rule` is the rule that matched."""

    def __init__(self, message: str, rule: "PolicyRule | None" = None):
        super().__init__(message, context=ErrorContext(error_type="PolicyDenied", message=message))
        self.rule = rule


VALID_DECISIONS = frozenset({"allow", "deny"})
VALID_MATCH_KEYS = frozenset({"module", "host", "environment"})

# Modules that each run arbitrary commands: a rule for one is a rule for all.
_TWINS = frozenset({"shell", "command", "raw"})


@dataclass
class PolicyRule:
    """One rule: `decision` "deny", the conditions in `match` (fnmatch patterns, all must hold;
    keys module, host, environment or param.NAME) and the reason shown when it denies."""

    decision: str
    match: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self):
        if self.decision not in VALID_DECISIONS:
            raise ValueError(
                f"Invalid decision {self.decision!r}; must be one of {sorted(VALID_DECISIONS)}")
        if self.decision == "allow":
            raise ValueError("allow rules are not supported; the policy engine uses a deny-list model")
        for key in self.match:
            if key not in VALID_MATCH_KEYS and not key.startswith("param."):
                raise ValueError(f"Unknown match key {key!r}; must be one of "
                                 f"{sorted(VALID_MATCH_KEYS)} or 'param.<name>'")

    def to_dict(self) -> dict[str, Any]:
        """The rule as data (for audit events and `Policy.to_wire`)."""
        return {"decision": self.decision, "match": self.match, "reason": self.reason}


@dataclass
class PolicyResult:
    """The outcome of evaluating a call: permitted or not, by which rule, why."""

    permitted: bool
    rule: PolicyRule | None = None
    reason: str = ""


def _module_matches(module: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(module, pattern):
        return True
    if any(c in pattern for c in "*?["):
        return False
    return pattern.rsplit(".", 1)[-1] in _TWINS and module.rsplit(".", 1)[-1] in _TWINS


class Policy:
    """Rules evaluated top to bottom: the first matching deny rule denies; otherwise permitted."""

    def __init__(self, rules: list[PolicyRule]):
        self.rules = rules

    def evaluate(self, module_name: str, params: dict[str, Any], host: str = "localhost",
                 environment: str = "") -> PolicyResult:
        """Whether `module_name` with `params` may run on `host` in `environment`."""
        for rule in self.rules:
            if rule.decision == "deny" and self._matches(rule, module_name, params, host, environment):
                return PolicyResult(permitted=False, rule=rule, reason=rule.reason)
        return PolicyResult(permitted=True, reason="No matching deny rule")

    @staticmethod
    def _matches(rule: PolicyRule, module_name: str, params: dict[str, Any], host: str,
                 environment: str) -> bool:
        for key, pattern in rule.match.items():
            pattern = str(pattern)
            if key == "module":
                ok = _module_matches(module_name, pattern)
            elif key == "host":
                ok = fnmatch.fnmatchcase(host, pattern)
            elif key == "environment":
                ok = fnmatch.fnmatchcase(environment, pattern)
            elif key.startswith("param."):
                ok = fnmatch.fnmatchcase(str(params.get(key[len("param."):], "")), pattern)
            else:
                ok = False
            if not ok:
                return False
        return True

    def to_wire(self) -> list[dict]:
        """The rules as data."""
        return [rule.to_dict() for rule in self.rules]

    @classmethod
    def from_wire(cls, data: list[dict] | None) -> "Policy":
        """A policy from `to_wire`'s data (None or empty: permit everything)."""
        return cls([PolicyRule(**entry) for entry in data]) if data else cls.empty()

    @classmethod
    def from_file(cls, path: "str | Path") -> "Policy":
        """A policy from a YAML file with a `rules:` list (a directory: use from_directory)."""
        import yaml

        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a directory, not a file. "
                f"Use Policy.from_directory() to load all policy files from a directory.")
        data = yaml.safe_load(path.read_text()) or {}
        return cls([PolicyRule(decision=e.get("decision", "deny"), match=e.get("match", {}),
                               reason=e.get("reason", "")) for e in data.get("rules") or []])

    @classmethod
    def from_files(cls, paths: "list[str | Path]") -> "Policy":
        """The rules of several files, in order (earlier files win)."""
        rules: list[PolicyRule] = []
        for path in paths:
            rules.extend(cls.from_file(path).rules)
        return cls(rules) if paths else cls.empty()

    @classmethod
    def from_directory(cls, directory: "str | Path") -> "Policy":
        """The rules of a directory's `*.yaml`/`*.yml` files, by file name."""
        directory = Path(directory)
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} is not a directory. "
                                     f"Use Policy.from_file() to load a single policy file.")
        paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        return cls.from_files(paths) if paths else cls.empty()

    @classmethod
    def empty(cls) -> "Policy":
        """A policy that permits everything."""
        return cls(rules=[])
