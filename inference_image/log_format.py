"""How the server's log lines are written: plain text for a terminal, or one JSON object a
line for log pipelines (CloudWatch Logs Insights, Cloud Logging, Loki, Datadog), which
then see each request's counts and timings as typed fields instead of text to parse."""

from __future__ import annotations

import json
import logging
import re
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What a caller's request id may be to reach the log: no spaces or line breaks that could
# forge a log line, and not so long that it floods one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/=+-]{1,128}")


def loggable_request_id(value: str | None) -> str | None:
    """``value`` if a request's log line can carry it as its caller's request id, else None.
    The local gateway holds the ids it passes on to the same rule."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


class JsonFormatter(logging.Formatter):
    """A record as ``{"time", "level", "severity", "logger", "message"}``, plus the
    ``fields`` a caller attached (``extra={"fields": {...}}``) and any exception's
    traceback. ``severity`` is the key Google's log agents read the level from."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str, environ) -> None:
    """Send every logger's records (uvicorn's too, which then installs none of its own)
    to standard error, in ``log_format``, from ``level`` up, unless the process has set up
    logging already. In JSON nothing else may write there: Python's warnings become
    records, and Hugging Face's progress bars (set in ``environ`` before it is imported)
    are off."""
    root = logging.getLogger()
    if root.handlers:  # as logging.basicConfig: a host process (a test runner) set them up
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    if log_format == "json":
        logging.captureWarnings(True)
        environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
