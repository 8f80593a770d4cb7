"""The one place where errors become what the user sees: three lines and an exit code."""

from __future__ import annotations

import sys
import traceback

from llmcloud.cli.output import Output
from llmcloud.stacks.errors import ExitCode, LlmcloudError

_interrupted = False


def on_interrupt(signum: int, frame: object) -> None:
    """SIGINT's handler for the `llmcloud` command: Python's own (a KeyboardInterrupt), and
    remembers that the user pressed Ctrl-C.

    A KeyboardInterrupt does not always come out as one: raised inside a lazily imported
    cloud SDK module (pulumi-azure-native's), it left the module half made and surfaced as
    an AttributeError ("unexpected error ... a bug in llmcloud", exit 1), and raised inside
    Pulumi's nested event loop, asyncio logged a RuntimeError's traceback on its way out.
    Once the user has interrupted, an error llmcloud did not foresee that ends the command is
    the interruption, and llmcloud's own errors (a promote's restore) keep their words but
    exit 130.
    """
    import logging

    global _interrupted
    _interrupted = True
    logging.getLogger("asyncio").disabled = True  # its tracebacks now follow from Ctrl-C
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether the user pressed Ctrl-C while this command ran."""
    return _interrupted


def report(exc: BaseException, *, json_asked: bool = False) -> int:
    """Print `exc` for the user (stderr; plus one JSON document with --json); return the code.
    `json_asked`: the command line has --json, though the error came before the command set
    its output mode (Ctrl-C while its modules load): stdout still gets its one document."""
    if json_asked and not Output.current().json:
        Output.start(json=True)
    out = Output.current()
    if isinstance(exc, LlmcloudError):
        # what it says stands (a promote interrupted says which version serves now); only
        # its code is the interruption's
        error = exc
        if interrupted():
            error.exit_code = ExitCode.INTERRUPTED
    elif isinstance(exc, KeyboardInterrupt) or interrupted():
        error = LlmcloudError("interrupted", hint="run the command again to continue")
        error.exit_code = ExitCode.INTERRUPTED
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
