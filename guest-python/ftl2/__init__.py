"""The FTL2 automation API inside the ftl2-runner sandbox.

Scripts written for FTL2 (`from ftl2 import automation`) run unchanged; every module call goes
to the ftl2-runner host, which runs it on the inventory's hosts and records it for AWX. The
public names of FTL2 0.4.7's modules (`ftl2`, `ftl2.automation`, `ftl2.exceptions`,
`ftl2.ftl_modules`, `ftl2.policy`, `ftl2.types`, `ftl2.events`) are all here; `ftl2.job` is
ftl2-runner's own (what the job gives a script).
"""

# FTL2 0.4.7 reports this version string; scripts that print or compare it see the same.
__version__ = "0.1.0"

from . import events, exceptions, ftl_modules, policy, types  # noqa: E402,F401 -- as FTL2 exposes them
from .automation import AutomationContext, AutomationError, automation  # noqa: E402
from .ftl_modules import ExecuteResult  # noqa: E402

__all__ = ["__version__", "automation", "AutomationContext", "AutomationError", "ExecuteResult"]
