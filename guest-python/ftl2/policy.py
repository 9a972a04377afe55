"""FTL2's policy module: only the exception scripts import is provided (policies need host files)."""

from .exceptions import FTL2Error


class PolicyDeniedError(FTL2Error):
    """A policy refused an action."""
