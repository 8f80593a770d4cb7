"""The one place where errors become what the user sees: three lines and an exit code."""

from __future__ import annotations

import sys
import traceback

from llmcloud.cli.output import Output
from llmcloud.stacks.errors import ExitCode, LlmcloudError

_interrupted = False
_terminated = False


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


def on_terminate(signum: int, frame: object) -> None:
    """SIGTERM's handler for the `llmcloud` command: an interruption, as Ctrl-C is, that
    exits 143 (128 + SIGTERM).

    A CI job cancelled or timed out gets SIGTERM (GitLab's runner, `docker stop`,
    Kubernetes). Python's default ended llmcloud at once: nothing on stdout under --json,
    no error line, and what Ctrl-C undoes was left as it was (a promote's bake, its new
    version kept in service unproven, where Ctrl-C puts the previous one back).
    """
    global _terminated
    _terminated = True
    try:
        on_interrupt(signum, frame)
    except KeyboardInterrupt:
        pass
    automation = sys.modules.get("llmcloud.stacks.automation")
    # during a cloud operation, `run_to_the_end` knows a SIGTERM by its own class: it lets
    # the engine cancel cleanly and waits for it longer than after a Ctrl-C
    raise automation._Terminated if automation is not None else KeyboardInterrupt


def interrupted() -> bool:
    """Whether the user pressed Ctrl-C (or sent SIGTERM) while this command ran."""
    return _interrupted


def terminated() -> bool:
    """Whether llmcloud got SIGTERM while this command ran."""
    return _terminated


def interrupted_code() -> ExitCode:
    """The exit code of an interrupted command: 130 after Ctrl-C, 143 after SIGTERM."""
    return ExitCode.TERMINATED if _terminated else ExitCode.INTERRUPTED


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
            error.exit_code = interrupted_code()
    elif isinstance(exc, KeyboardInterrupt) or interrupted():
        error = LlmcloudError("interrupted (SIGTERM)" if terminated() else "interrupted",
                              hint="run the command again to continue")
        error.exit_code = interrupted_code()
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
