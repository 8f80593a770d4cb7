"""The servers' log lines of a stack, read from wherever its provider keeps them.

Each provider's reader (`providers/<provider>/logs.py`) turns its own store (the local
replicas' files, CloudWatch Logs, Cloud Logging, Log Analytics) into `LogLine`s; this
module holds what they share: the line, `--since`, `--grep` and `--limit`, and the
bookkeeping `--follow` needs to print each line once.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from llmcloud.stacks.errors import ConfigError, DeploymentError, NotSupportedError

#: `--since` units, as `kubectl logs --since` and `journalctl` write them
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE = re.compile(r"(\d+)([smhd])")
#: the longest `--since`: ten years (far past every log store's retention), so a huge
#: number is a clear error rather than a date before the calendar's first
MOST_SINCE = timedelta(days=3650)


@dataclass(frozen=True)
class LogLine:
    """One line a server wrote: when (UTC), which server or replica, and the text."""

    time: datetime
    server: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """The line as `--json` prints it."""
        return {"time": iso_time(self.time), "server": self.server, "message": self.message}

    def text(self) -> str:
        """The line as a terminal shows it: time, server, message."""
        return f"{iso_time(self.time)} {self.server} {self.message}"


class LogReader(Protocol):
    """What each provider's log reader offers."""

    #: where the lines come from, for the line that says there are none yet
    where: str

    def read(self, since: datetime, limit: int, grep: str | None) -> list[LogLine]:
        """The newest `limit` lines written at or after `since` that hold `grep` (every
        line when None), oldest first."""
        ...


def iso_time(when: datetime) -> str:
    """`when` in UTC, to the millisecond, with a `Z` (as the servers' JSON lines write it)."""
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_since(text: str) -> timedelta:
    """`--since`: a whole number and a unit, s, m, h or d (`10m`, `2h`); ConfigError else."""
    found = _SINCE.fullmatch(text.strip())
    if not found or int(found[1]) == 0:
        raise ConfigError(f"--since {text!r} is not a duration",
                          context="a whole number above 0 and a unit: s, m, h or d",
                          hint="e.g. --since 10m, --since 2h, --since 1d")
    seconds = int(found[1]) * _UNITS[found[2]]
    if seconds > MOST_SINCE.total_seconds():
        raise ConfigError(f"--since {text!r} is too far back",
                          context=f"at most {MOST_SINCE.days}d",
                          hint=f"e.g. --since {MOST_SINCE.days}d for every line kept")
    return timedelta(seconds=seconds)


@contextmanager
def reaching(service: str, where: str) -> Iterator[None]:
    """Turn a failed HTTP connection to `service` (no network, DNS, a timeout) into a
    DeploymentError naming `where`, instead of an unexpected error."""
    import requests

    try:
        yield
    except requests.RequestException as exc:
        raise DeploymentError(f"could not reach {service} to read {where}",
                              context=f"{type(exc).__name__}: {exc}",
                              hint="check this machine's network access, then run it "
                                   "again") from None


def holds(line: LogLine, grep: str | None) -> bool:
    """Whether `line` is one `--grep` asks for (its text holds `grep`, case and all)."""
    return grep is None or grep in line.message or grep in line.server


def newest(lines: Iterable[LogLine], limit: int, grep: str | None) -> list[LogLine]:
    """The last `limit` of `lines` (oldest first) that hold `grep`."""
    return list(deque((line for line in lines if holds(line, grep)), maxlen=limit))


class Unseen:
    """What `--follow` has printed: it asks again from `LATE` before the newest line printed
    (a cloud's store shows a line seconds after it was written, not always in order), and
    prints only the lines it has not printed yet."""

    #: how late a line may reach the store, after lines written later, and still be shown
    LATE = timedelta(seconds=30)

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.newest: datetime | None = None
        self._printed: Counter[tuple[datetime, str, str]] = Counter()

    def ask_from(self) -> datetime:
        """The time to ask again from."""
        return self.start if self.newest is None else max(self.start, self.newest - self.LATE)

    def take(self, lines: list[LogLine]) -> list[LogLine]:
        """The lines of `lines` (the answer from `ask_from()` on) not printed yet;
        remembers them as printed."""
        answered = Counter((line.time, line.server, line.message) for line in lines)
        left = Counter(self._printed)
        fresh = []
        for line in lines:
            key = (line.time, line.server, line.message)
            if line.time < self.ask_from():
                continue
            if left[key] > 0:
                left[key] -= 1  # printed before (the same line twice is printed twice)
                continue
            fresh.append(line)
        for key, count in answered.items():
            self._printed[key] = max(self._printed[key], count)
        if lines:
            self.newest = max(self.newest or lines[-1].time, *(line.time for line in lines))
        horizon = self.ask_from()
        self._printed = Counter({k: n for k, n in self._printed.items() if k[0] >= horizon})
        return fresh


def log_reader(provider: Any, ctx: Any) -> LogReader:
    """The reader of the servers' logs of the stack `ctx` on `provider`; a cloud stack's
    outputs say where its logs are (one read of them here)."""
    if provider.name == "local":
        from llmcloud.providers.local.logs import LocalLogs

        return LocalLogs.of(ctx)
    outputs = provider.outputs(ctx)["outputs"]
    if provider.name == "aws":
        from llmcloud.providers.aws.logs import CloudWatchLogs

        return CloudWatchLogs.of(ctx, outputs)
    if provider.name == "gcp":
        from llmcloud.providers.gcp.logs import CloudLogging

        return CloudLogging.of(provider, ctx, outputs)
    if provider.name == "azure":
        from llmcloud.providers.azure.logs import LogAnalytics

        return LogAnalytics.of(ctx, outputs)
    raise NotSupportedError(
        f"`llmcloud logs` does not read {provider.name}'s logs yet",
        hint="see docs/commands.md (Logs) for where they are and how to read them")
