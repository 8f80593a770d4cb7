"""`llmcloud --help` lists every command, each command has help, and help loads nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

COMMANDS = [
    "init", "up", "plan", "preview", "update", "destroy", "refresh", "status", "outputs",
    "logs", "promote", "rollback", "console", "image", "model", "keys",
]
SUBCOMMANDS = [
    ("image", "build"), ("image", "push"), ("model", "upload"), ("model", "list"),
    ("model", "delete"),
    ("keys", "create"), ("keys", "list"), ("keys", "revoke"),
]
HEAVY = [
    "pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_azure_native", "boto3", "botocore",
    "torch", "transformers", "google.cloud", "azure", "httpx", "yaml", "pydantic",
]


def test_help_lists_every_command(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == COMMANDS


@pytest.mark.parametrize("group,command", SUBCOMMANDS)
def test_groups_list_their_commands(cli, group: str, command: str) -> None:
    result = cli(group, "--help")
    assert result.exit_code == 0
    assert f"  {command}  " in result.stdout or f"  {command}\n" in result.stdout


@pytest.mark.parametrize("args", [[c] for c in COMMANDS] + [list(s) for s in SUBCOMMANDS])
def test_every_command_has_help(cli, args: list[str]) -> None:
    result = cli(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: llmcloud" in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["up", "--help"], ["plan", "--help"],
                                  ["keys", "create", "--help"]])
def test_help_imports_no_sdk(args: list[str]) -> None:
    code = (
        "import sys, json\n"
        "from llmcloud.cli.app import app\n"
        "try:\n"
        f"    app({args!r}, prog_name='llmcloud')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded for h in HEAVY if m == h or m.startswith(h + "."))
    assert heavy == []


def test_version(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("llmcloud 0.")


def _options(command: str) -> set[str]:
    import typer.main

    from llmcloud.cli.app import app

    group = typer.main.get_command(app)
    return {name for param in group.commands[command].params for name in param.opts
            if name.startswith("--")}


@pytest.mark.parametrize("command", ["plan", "preview"])
def test_plan_and_preview_take_every_flag_up_takes(command: str) -> None:
    # what they show is what that same `up` would do
    assert _options("up") - {"--yes"} <= _options(command)


def test_plan_shows_the_image_and_replicas_flags_give(project, cli) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm@sha256:" + "a" * 64
    assert cli("init", "--provider", "aws").exit_code == 0
    one = json.loads(cli("plan", "--json", "--replicas", "1").stdout)
    result = cli("plan", "--json", "--replicas", "3", "--image", image)
    assert result.exit_code == 0, result.output
    three = json.loads(result.stdout)
    assert three["outputs"]["image"] == image
    assert three["cost"]["hourly_min"] > one["cost"]["hourly_min"]  # three replicas at least
