"""FTL2's state (`ftl.state`): hosts added at run time and resources a script provisioned, kept
in a JSON file so a later `automation()` block (or FTL2 run) finds them. Same data layout and
methods as FTL2 0.4.7's `ftl2.state.State`.

In ftl2-runner the file lives in the job's scratch directory: state carries across the
`automation()` blocks of one job, never across jobs (AWX runs each job in a fresh container).
"""

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _empty() -> dict[str, Any]:
    now = _now()
    return {"version": 1, "created_at": now, "updated_at": now, "hosts": {}, "resources": {}}


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return _empty()
    try:
        return json.loads(text) if text.strip() else _empty()
    except json.JSONDecodeError:
        return _empty()


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ftl2-state-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class State:
    """Hosts and resources, saved to `path` on every change."""

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        self.data = _read(self.path)

    def _save(self) -> None:
        self.data["updated_at"] = _now()
        _write(self.path, self.data)

    # hosts
    def has_host(self, name: str) -> bool:
        """Whether a host is recorded."""
        return name in self.data.get("hosts", {})

    def get_host(self, name: str) -> dict[str, Any] | None:
        """A recorded host's data, or None."""
        return self.data.get("hosts", {}).get(name)

    def add_host(self, name: str, ansible_host: str | None = None, ansible_user: str | None = None,
                 ansible_port: int = 22, groups: list[str] | None = None, **extra: Any) -> None:
        """Record a host (what `ftl.add_host` records)."""
        entry: dict[str, Any] = {"ansible_host": ansible_host or name, "ansible_port": ansible_port,
                                 "groups": groups or [], "added_at": _now()}
        if ansible_user:
            entry["ansible_user"] = ansible_user
        entry.update(extra)
        self.data.setdefault("hosts", {})[name] = entry
        self._save()

    def remove_host(self, name: str) -> bool:
        """Forget a host; whether it was recorded."""
        if name not in self.data.get("hosts", {}):
            return False
        del self.data["hosts"][name]
        self._save()
        return True

    def hosts(self) -> list[str]:
        """The recorded host names."""
        return list(self.data.get("hosts", {}))

    # resources
    def has_resource(self, name: str) -> bool:
        """Whether a resource is recorded."""
        return name in self.data.get("resources", {})

    def get_resource(self, name: str) -> dict[str, Any] | None:
        """A recorded resource's data, or None."""
        return self.data.get("resources", {}).get(name)

    def add_resource(self, name: str, data: dict[str, Any]) -> None:
        """Record a resource (with its creation time)."""
        self.data.setdefault("resources", {})[name] = {"created_at": _now(), **data}
        self._save()

    def update_resource(self, name: str, data: dict[str, Any]) -> bool:
        """Merge `data` into a recorded resource; whether it was recorded."""
        if name not in self.data.get("resources", {}):
            return False
        self.data["resources"][name].update(data)
        self.data["resources"][name]["last_seen"] = _now()
        self._save()
        return True

    def remove_resource(self, name: str) -> bool:
        """Forget a resource; whether it was recorded."""
        if name not in self.data.get("resources", {}):
            return False
        del self.data["resources"][name]
        self._save()
        return True

    def resources(self, provider: str | None = None) -> dict[str, dict[str, Any]]:
        """The recorded resources, those of one provider if given."""
        found = self.data.get("resources", {})
        if provider is None:
            return dict(found)
        return {n: d for n, d in found.items() if d.get("provider") == provider}

    # either
    def has(self, name: str) -> bool:
        """Whether `name` is a recorded host or resource."""
        return self.has_host(name) or self.has_resource(name)

    def get(self, name: str) -> dict[str, Any] | None:
        """A resource's data, else a host's, else None."""
        return self.get_resource(name) or self.get_host(name)

    def add(self, name: str, data: dict[str, Any]) -> None:
        """Record a resource."""
        self.add_resource(name, data)

    def remove(self, name: str) -> bool:
        """Forget `name` as host and as resource; whether anything was recorded."""
        removed_host = self.remove_host(name)
        removed_resource = self.remove_resource(name)
        return removed_host or removed_resource

    def __repr__(self) -> str:
        return (f"State({self.path}, hosts={len(self.data.get('hosts', {}))}, "
                f"resources={len(self.data.get('resources', {}))})")
