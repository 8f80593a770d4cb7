"""How a command talks to the user: results on stdout, progress and errors on stderr.

With `--json` a command prints exactly one JSON document on stdout, whatever happens; the
human-readable lines go to stderr so pipelines can parse stdout safely.
"""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

_current: ContextVar[Output | None] = ContextVar("llmcloud_output", default=None)


@dataclass
class Output:
    """The output mode of the running command."""

    json: bool = False
    debug: bool = False
    #: JSON Lines (`logs --json`): a document, an error's too, is one line among the others
    lines: bool = False
    _printed: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, *, json: bool = False, lines: bool = False) -> Output:
        """Set the output mode for this command (read back by the error handler)."""
        previous = _current.get()
        out = cls(json=json, debug=previous.debug if previous else False, lines=lines)
        _current.set(out)
        return out

    @staticmethod
    def current() -> Output:
        """The running command's output mode (plain text when none was set)."""
        return _current.get() or Output()

    def info(self, message: str) -> None:
        """A progress or status line on stderr."""
        print(message, file=sys.stderr, flush=True)

    def result(self, document: Any, human: str | None = None) -> None:
        """The command's result: the JSON document with --json, else `human` (or YAML-ish)."""
        if self.json:
            if self._printed:
                raise RuntimeError("a command printed two JSON documents")
            self._printed = True
            # allow_nan=False: Infinity or NaN is not JSON; a value that slips through fails
            # here, loudly, rather than in the reader's parser
            print(json.dumps(document, indent=None if self.lines else 2, default=str,
                             sort_keys=False, allow_nan=False))
        elif human is not None:
            print(human)
        else:
            print(format_mapping(document))


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone (a broken pipe), so that neither
    a later print nor the flush at exit fails on it again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test runner's buffer): nothing to silence


def set_debug(debug: bool) -> None:
    """Remember `--debug` for the error handler."""
    _current.set(Output(debug=debug))


def format_mapping(document: Any, indent: int = 0) -> str:
    """A plain `key: value` rendering of a JSON-like value for terminals."""
    pad = "  " * indent
    if isinstance(document, dict):
        lines = []
        for key, value in document.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{key}:")
                lines.append(format_mapping(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
        return "\n".join(lines)
    if isinstance(document, list):
        return "\n".join(
            f"{pad}- {format_mapping(item, indent + 1).lstrip()}"
            if isinstance(item, dict)
            else f"{pad}- {_scalar(item)}"
            for item in document
        )
    return f"{pad}{_scalar(document)}"


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value == {} or value == []:
        return "none"
    return str(value)
