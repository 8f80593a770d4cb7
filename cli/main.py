"""The console script `llmcloud`."""

from __future__ import annotations


def run() -> None:
    """Run the `llmcloud` command line."""
    import signal
    import sys

    from llmcloud.cli.errors import on_interrupt, on_terminate, report
    from llmcloud.cli.output import silence_stdout

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_interrupt)  # (left alone where SIGINT is ignored)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_terminate)  # a CI job cancelled: as Ctrl-C, 143
    try:
        from llmcloud.cli.app import app

        app(prog_name="llmcloud")
    except KeyboardInterrupt as exc:
        # Ctrl-C while the modules load or Typer builds the commands (a good part of a
        # short command's time), before a command's own error handling: it was a traceback
        raise SystemExit(report(exc, json_asked="--json" in sys.argv[1:])) from None
    finally:
        try:  # a short result still in the buffer meets a closed pipe only here
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()


if __name__ == "__main__":
    run()
