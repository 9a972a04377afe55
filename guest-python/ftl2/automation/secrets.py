"""Secrets as a script sees them: declared names, which of them have a value, and references
the host fills in (the value never enters the sandbox)."""

import os

from .. import _host

MASK = "********"


class SecretRef(str):
    """`ftl.secrets["NAME"]`: a secret as the script sees it. It is the masked text `********`
    wherever the script looks (str, repr, f-strings, slicing, len); passed as a module argument
    (or inside one's dict/list) it is the secret itself, which the host fills in, so the value
    never enters the sandbox. String formatting cannot carry the value: an argument whose text
    contains the mask is refused (see `_reject_masked`)."""

    def __new__(cls, name, own_value=None):
        ref = super().__new__(cls, MASK)
        ref.name = name
        ref._own = own_value
        return ref

    def __ftl2_json__(self):
        marker = {"__ftl2_secret__": self.name}
        if self._own is not None:
            marker["__ftl2_value__"] = self._own
        return marker

    def __reduce__(self):
        raise TypeError(f"secret {self.name!r} cannot be pickled or copied out of the sandbox")


class SecretsView:
    """`ftl.secrets`: the secrets declared with `automation(secrets=[...])`, as FTL2's
    SecretsProxy behaves: `in`, `len`, `get` and `loaded_keys()` count a secret only when it has a
    value (from the job's credentials, or the script's own `os.environ` when it declared it)."""

    def __init__(self, declared):
        self._declared = list(dict.fromkeys(declared or []))
        available = set(_host.job_info().get("secret_names") or [])
        self._own = {n: os.environ[n] for n in self._declared
                     if n not in available and n in os.environ}
        self._loaded = [n for n in self._declared if n in available or n in self._own]

    def __getitem__(self, name):
        if name not in self._declared:
            raise KeyError(f"Secret '{name}' was not requested in automation(secrets=[...])")
        if name not in self._loaded:
            raise KeyError(f"Secret '{name}' is not set in environment")
        return self.ref(name)

    def ref(self, name):
        """The reference to a secret by name (for `secret_bindings`, also one not declared: the
        host fills in the job's value, or says the secret is missing)."""
        own = self._own.get(name)
        if own is None and name not in self._declared and name in os.environ:
            own = os.environ[name]
        return SecretRef(name, own)

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name):
        return name in self._loaded

    def keys(self):
        """The declared names."""
        return list(self._declared)

    def loaded_keys(self):
        """The declared names that have a value."""
        return list(self._loaded)

    def __len__(self):
        return len(self._loaded)

    def __repr__(self):
        missing = [n for n in self._declared if n not in self._loaded]
        return f"SecretsProxy(loaded={self._loaded}, missing={missing})"

    def __str__(self):
        return f"<SecretsProxy: {len(self._loaded)} secrets loaded>"


def without_secrets(params):
    """Call arguments as results, events and policy checks may show them: secrets left out."""
    return {k: v for k, v in params.items() if not isinstance(v, SecretRef)}


def _reject_masked(value, path="", declared=()):
    """A module argument whose text contains a secret's mask was made by formatting a secret
    (`f"Bearer {token}"`), which carries the mask, not the value: refuse it rather than send
    asterisks as a password."""
    if isinstance(value, SecretRef):
        return
    if isinstance(value, str):
        if MASK in value:
            raise ValueError(
                f"module argument {path or 'value'} contains {MASK!r}, the masked text of a secret "
                f"({', '.join(declared)}): string formatting cannot carry a secret's value; pass "
                "ftl.secrets[NAME] itself as the argument (or as a value inside a dict or list)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _reject_masked(v, f"{path}.{k}" if path else str(k), declared)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _reject_masked(v, f"{path}[{i}]", declared)
