"""FTL2's exception types, importable from the same paths FTL2 scripts use."""


class FTL2Error(Exception):
    """Base class of FTL2 errors."""


class FTL2ConnectionError(FTL2Error):
    """A host could not be reached."""


class AuthenticationError(FTL2ConnectionError):
    """A host refused the credentials."""


class ModuleNotFound(FTL2Error):
    """No such module."""


class ExcludedModuleError(FTL2Error):
    """A playbook keyword (debug, set_fact, ...) was called as if it were a module."""


class ModuleNotAllowedError(FTL2Error):
    """A module outside the `modules=` allowlist of `automation()` was called."""


class UnsupportedParameterError(NotImplementedError, FTL2Error):
    """An `automation()` parameter that cannot work inside the sandbox."""
