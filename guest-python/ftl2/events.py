"""FTL2's module event protocol (`ftl2.events`): progress, log and data events as JSON lines on
stderr, and the parsers that separate them from other stderr text. As in FTL2 0.4.7; in a
script, an emitted event is a JSON line in the job output.
"""

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ModuleEvent:
    """An event: its type and when it was made (Unix time)."""

    event: str
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """The event's fields."""
        return asdict(self)

    def to_json(self) -> str:
        """The event as one JSON line."""
        return json.dumps(self.to_dict())

    def emit(self) -> None:
        """Write the event to stderr as a JSON line, flushed."""
        print(self.to_json(), file=sys.stderr, flush=True)


@dataclass
class ProgressEvent(ModuleEvent):
    """How far a long operation has got."""

    event: str = field(default="progress", init=False)
    percent: int = 0
    message: str = ""
    current: int | None = None
    total: int | None = None
    task_id: str | None = None


@dataclass
class LogEvent(ModuleEvent):
    """A log line meant for the user while the work runs."""

    event: str = field(default="log", init=False)
    level: str = "info"
    message: str = ""


@dataclass
class DataEvent(ModuleEvent):
    """A piece of streamed output."""

    event: str = field(default="data", init=False)
    stream: str = "stdout"
    data: str = ""


def emit_progress(percent: int, message: str = "", current: int | None = None,
                  total: int | None = None, task_id: str | None = None) -> None:
    """Emit a ProgressEvent."""
    ProgressEvent(percent=percent, message=message, current=current, total=total,
                  task_id=task_id).emit()


def emit_log(message: str, level: str = "info") -> None:
    """Emit a LogEvent."""
    LogEvent(message=message, level=level).emit()


def emit_data(data: str, stream: str = "stdout") -> None:
    """Emit a DataEvent."""
    DataEvent(data=data, stream=stream).emit()


def parse_event(line: str) -> dict[str, Any] | None:
    """The event a line holds (a JSON object with an `event` key), else None."""
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and "event" in value else None


def parse_events(stderr: str) -> tuple[list[dict[str, Any]], str]:
    """The events in a stderr text, and the rest of its lines joined again."""
    found: list[dict[str, Any]] = []
    rest: list[str] = []
    for line in stderr.splitlines():
        event = parse_event(line)
        if event is None:
            rest.append(line)
        else:
            found.append(event)
    return found, "\n".join(rest)
