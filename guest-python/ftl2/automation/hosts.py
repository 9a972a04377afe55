"""The inventory as FTL2 shows it to a script: HostConfig objects by host and group."""

from .. import _host

# The inventory variables HostConfig has fields for, and Ansible's magic variables; the rest
# go to its `vars`, as FTL2 fills them.
_HOST_FIELDS = {"ansible_host", "ansible_port", "ansible_user", "ansible_connection",
                "ansible_python_interpreter", "ansible_become", "ansible_become_user",
                "inventory_hostname", "inventory_hostname_short", "group_names", "groups",
                "inventory_dir", "inventory_file", "playbook_dir", "omit"}


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def host_config(name):
    """The HostConfig of an inventory host, from its variables as the host resolves them (group
    variables merged, children groups expanded, as Ansible does; passwords masked)."""
    from ..types import HostConfig

    hostvars = _host.host_vars(name) or {}
    port = hostvars.get("ansible_port", 22)
    try:
        port = int(port)
    except (TypeError, ValueError):
        pass
    return HostConfig(
        name=name,
        ansible_host=str(hostvars.get("ansible_host", name)),
        ansible_port=port,
        ansible_user=str(hostvars.get("ansible_user", "")),
        ansible_connection=str(hostvars.get("ansible_connection", "ssh")),
        ansible_python_interpreter=str(hostvars.get("ansible_python_interpreter", "python3")),
        ansible_become=_truthy(hostvars.get("ansible_become", False)),
        ansible_become_user=str(hostvars.get("ansible_become_user", "root")),
        vars={k: v for k, v in hostvars.items() if k not in _HOST_FIELDS},
    )


class HostsProxy:
    """`ftl.hosts`: the inventory as FTL2 shows it. `ftl.hosts["web"]` is the HostConfig of each
    host of a group (or of one host), iterating or `keys()` gives host names, `groups` the group
    names, `all` every host's HostConfig."""

    def __init__(self, ctx):
        self._ctx = ctx

    def _groups(self):
        return self._ctx._groups

    def _host_names(self):
        return list(self._groups().get("all", []))

    def __getitem__(self, key):
        groups = self._groups()
        if key in groups:
            return [host_config(h) for h in groups[key]]
        if key in self._host_names():
            return [host_config(key)]
        raise KeyError(f"Host or group '{key}' not found in inventory")

    def get(self, key, default=None):
        """`self[key]`, or `default` for a name that is neither host nor group."""
        return self[key] if key in self else default

    def __contains__(self, key):
        return key in self._groups() or key in self._host_names()

    def __iter__(self):
        return iter(self._host_names())

    def __len__(self):
        return len(self._host_names())

    def keys(self):
        """The host names."""
        return self._host_names()

    @property
    def all(self):
        """Every host's HostConfig."""
        return [host_config(h) for h in self._host_names()]

    @property
    def groups(self):
        """The group names (`ungrouped` when it has hosts; not `all`)."""
        return [g for g, hosts in self._groups().items()
                if g != "all" and (g != "ungrouped" or hosts)]

    def __repr__(self):
        return f"<hosts {self._host_names()}>"
