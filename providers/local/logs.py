"""A local stack's logs: `logs/controller.log` and each replica's `logs/replica-<id>.log`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmcloud.providers.logs import LogLine, newest

#: the text format's start (`%(asctime)s`, the machine's local time): controller and server
_TEXT_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


@dataclass(frozen=True)
class LocalLogs:
    """The log files of one local stack."""

    folder: Path

    @property
    def where(self) -> str:
        return str(self.folder)

    @classmethod
    def of(cls, ctx: Any) -> LocalLogs:
        from llmcloud.providers.local.state import StateFile, stack_dir

        return cls(StateFile(stack_dir(ctx.environ, ctx.stack)).logs)

    def read(self, since: datetime, limit: int, grep: str | None) -> list[LogLine]:
        lines = [line for path in self._files() for line in read_file(path)
                 if line.time >= since]
        lines.sort(key=lambda line: line.time)  # (stable: a file's own order stays)
        return newest(lines, limit, grep)

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.log")):
            rotated = path.with_name(path.name + ".1")  # procs.rotate_log's older part
            found += [rotated, path] if rotated.is_file() else [path]
        return found


def read_file(path: Path) -> Iterator[LogLine]:
    """The lines of one process's log, each with its time: a line that has none (a
    traceback's, uvicorn's) takes the time of the line before it."""
    server = path.name.split(".", 1)[0]  # replica-<id>, controller
    try:
        text = path.read_text(errors="replace")
        when = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except OSError:  # (pruned while listed)
        return
    for raw in text.splitlines():
        if not raw.strip():
            continue
        when = line_time(raw) or when
        yield LogLine(when, server, raw)


def line_time(raw: str) -> datetime | None:
    """The time at the start of a line of the text format (local time), or of a JSON
    line's `time` (UTC); None when it has none."""
    found = _TEXT_TIME.match(raw)
    if found:
        try:
            local = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S").astimezone()
            return local.replace(microsecond=int(found[2]) * 1000).astimezone(timezone.utc)
        # the shape of a time but none (9999-99-99 ...), or one that is no time in UTC
        # (9999-12-31 23:59 west of Greenwich): the line before's
        except (ValueError, OverflowError):
            return None
    if raw.startswith("{"):
        from llmcloud.providers.api_answers import api_time

        try:
            when = api_time(str(json.loads(raw).get("time", "")))
            # in UTC here: a time with a zone that has none in UTC (year 9999 at -05:00)
            # failed when the line was printed
            return when.astimezone(timezone.utc) if when is not None else None
        except (ValueError, AttributeError, OverflowError):
            return None
    return None
