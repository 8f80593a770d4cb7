"""The one place where errors become what the user sees: three lines and an exit code."""

from __future__ import annotations

import sys
import traceback

from llmcloud.cli.output import Output
from llmcloud.stacks.errors import ExitCode, LlmcloudError


def report(exc: BaseException) -> int:
    """Print `exc` for the user (stderr; plus one JSON document with --json); return the code."""
    out = Output.current()
    if isinstance(exc, KeyboardInterrupt):
        error = LlmcloudError("interrupted", hint="run the command again to continue")
        error.exit_code = ExitCode.INTERRUPTED
    elif isinstance(exc, LlmcloudError):
        error = exc
    else:
        error = LlmcloudError(
            f"unexpected error: {type(exc).__name__}: {exc}",
            context="this is a bug in llmcloud",
            hint="run again with --debug and report the traceback",
        )
    if out.debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    lines = [f"error: {error.message}"]
    if error.context:
        lines.append(f"  {error.context}")
    if error.hint:
        lines.append(f"hint: {error.hint}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    if out.json and not out._printed:
        out.result(error.to_dict())
    return int(error.exit_code)
