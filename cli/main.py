"""The console script `llmcloud`."""

from __future__ import annotations


def run() -> None:
    """Run the `llmcloud` command line."""
    import sys

    from llmcloud.cli.app import app
    from llmcloud.cli.output import silence_stdout

    try:
        app(prog_name="llmcloud")
    finally:
        try:  # a short result still in the buffer meets a closed pipe only here
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()


if __name__ == "__main__":
    run()
