"""`python -m llmcloud.cli` runs the `llmcloud` command."""

from llmcloud.cli.main import run

run()
