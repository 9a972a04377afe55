"""The FTL2 automation API inside the ftl2-runner sandbox.

Scripts written for FTL2 (`from ftl2 import automation`) run unchanged; every module call goes
to the ftl2-runner host, which runs it on the inventory's hosts and records it for AWX.
"""

from .automation import AutomationContext, AutomationError, automation
from .ftl_modules import ExecuteResult

__all__ = ["automation", "AutomationContext", "AutomationError", "ExecuteResult"]
__version__ = "0.4.7+ftl2runner"
