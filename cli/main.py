"""The console script `llmcloud`."""

from __future__ import annotations


def run() -> None:
    """Run the `llmcloud` command line."""
    from llmcloud.cli.app import app

    app(prog_name="llmcloud")


if __name__ == "__main__":
    run()
