"""The CI examples parse, and every `llmcloud` command they call exists with the options
they use."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from llmcloud.cli.app import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"


def _scripts(document: object) -> list[str]:
    """Every shell script in a GitHub workflow (`run:`) or GitLab file (`script:`)."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "run" and isinstance(value, str):
                found.append(value)
            elif key in ("script", "before_script") and isinstance(value, list):
                found.extend(str(line) for line in value)
            else:
                found.extend(_scripts(value))
    elif isinstance(document, list):
        for item in document:
            found.extend(_scripts(item))
    return found


def _without_substitutions(line: str) -> str:
    """`$( ... )` (nested, with quotes inside) replaced by a plain word."""
    out, depth, i = [], 0, 0
    while i < len(line):
        if line.startswith("$(", i):
            depth += 1
            i += 2
            continue
        if depth and line[i] == "(":
            depth += 1
        elif depth and line[i] == ")":
            depth -= 1
            if depth == 0:
                out.append("SUBST")
        elif not depth:
            out.append(line[i])
        i += 1
    return "".join(out)


def _llmcloud_calls(script: str) -> list[list[str]]:
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        line = _without_substitutions(line)
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part.split(">")[0], posix=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words and words[0] == "llmcloud":
                calls.append(words[1:])
    return calls


def _check_call(args: list[str]) -> None:
    command = get_command(app)
    path = []
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        assert name in command.commands, f"llmcloud {' '.join(path)} has no command {name}"
        path.append(name)
        command = command.commands[name]
    assert not hasattr(command, "commands"), f"llmcloud {' '.join(path)} needs a subcommand"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in args:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"llmcloud {' '.join(path)} has no {word}"


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_example_calls_only_real_commands_and_options(name: str) -> None:
    document = yaml.safe_load((EXAMPLES / name).read_text())
    calls = [call for script in _scripts(document) for call in _llmcloud_calls(script)]
    used = {tuple(w for w in call if not w.startswith("-"))[:2] for call in calls}
    assert len(calls) >= 8
    for call in calls:
        _check_call(call)
    # the pipeline's steps are all there: image, model, budget gate, rollout, promotion
    for needed in ("image", "model", "plan", "update", "promote"):
        assert any(call[0] == needed for call in calls), f"{name} never runs {needed}"
    assert used


def test_github_production_waits_for_approval() -> None:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    production = workflow["jobs"]["production"]
    assert production["environment"] == "production"
    assert "staging" in production["needs"]
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True


def test_gitlab_production_is_manual() -> None:
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert pipeline["production"]["when"] == "manual"
    assert pipeline["stages"] == ["build", "staging", "production"]


def test_the_checker_catches_a_wrong_option() -> None:
    with pytest.raises(AssertionError, match="has no --modle-version"):
        _check_call(["promote", "--modle-version", "v2"])
    with pytest.raises(AssertionError, match="has no command deploy"):
        _check_call(["deploy"])
