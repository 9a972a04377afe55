"""Where in the script a call was made: the `file:line` AWX shows as a task's path, and which
frames are the library's rather than the script's (also left out of tracebacks)."""

import os
import sys

# The ftl2 package: frames in it are ours, not the script's.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def call_site():
    """`file:line` of the script line that made the call being set up (Ansible's task path):
    the nearest caller outside this package, taken when the call is made, before any task or
    gather separates the coroutine from the line that made it."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
