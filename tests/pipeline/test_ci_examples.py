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


def test_each_stack_deploys_one_release_at_a_time() -> None:
    # two tags pushed close together: the second's deploy waits for the first's instead of
    # being refused by the stack's lock (exit 75) half-way through its pipeline
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    groups = {job: workflow["jobs"][job]["concurrency"] for job in ("staging", "production")}
    assert all(g["cancel-in-progress"] is False for g in groups.values())
    assert len({g["group"] for g in groups.values()}) == 2
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert {pipeline[job]["resource_group"] for job in ("staging", "production")} == {
        "staging", "production"}


def test_the_checker_catches_a_wrong_option() -> None:
    with pytest.raises(AssertionError, match="has no --modle-version"):
        _check_call(["promote", "--modle-version", "v2"])
    with pytest.raises(AssertionError, match="has no command deploy"):
        _check_call(["deploy"])


def _pushed_to(scripts: list[str]) -> dict[str, str]:
    """{file an `image push --json` writes: the stack whose registry it pushed to}."""
    pushed = {}
    for line in (line for script in scripts for line in script.splitlines()):
        found = re.search(r"llmcloud image push .*--stack (\S+) .*> (\S+)", line)
        if found:
            pushed[found[2]] = found[1]
    return pushed


def _rolled(script_lines: list[str]) -> list[tuple[str, str]]:
    """(stack, --image value) of every `llmcloud update` in the lines."""
    rolled = []
    for line in script_lines:
        found = re.search(r"llmcloud update .*--stack (\S+) .*--image (\"[^\"]+\"|\S+)", line)
        if found:
            rolled.append((found[1], found[2].strip('"')))
    return rolled


def test_github_rolls_each_stack_to_an_image_in_its_own_registry() -> None:
    # a stack's servers may pull from its own registry only (AWS: the instance role's
    # PullImage names that one repository): production rolled staging's image and could
    # not pull it
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    build = workflow["jobs"]["build"]
    pushed = _pushed_to(_scripts(build))
    step_output = {}
    for line in "\n".join(_scripts(build)).splitlines():
        found = re.search(r'echo "(\w+)=\$\(jq -r \.pinned (\S+)\)" >> "\$GITHUB_OUTPUT"', line)
        if found:
            step_output[found[1]] = pushed[found[2]]
    job_output = {name: step_output[re.search(r"steps\.push\.outputs\.(\w+)", value)[1]]
                  for name, value in build["outputs"].items()}
    rolled = [r for job in workflow["jobs"].values()
              for r in _rolled("\n".join(_scripts(job)).splitlines())]
    assert {stack for stack, _ in rolled} == {"staging", "prod"}
    for stack, image in rolled:
        output = re.fullmatch(r"\$\{\{ needs\.build\.outputs\.(\w+) \}\}", image)[1]
        assert job_output[output] == stack, f"{stack} rolls the image pushed to " \
                                            f"{job_output[output]}'s registry"


def test_gitlab_rolls_each_stack_to_an_image_in_its_own_registry() -> None:
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    pushed = _pushed_to(pipeline["build"]["script"])
    assert set(pipeline["build"]["artifacts"]["paths"]) == set(pushed)
    rolled_stacks = set()
    for job in ("staging", "production"):
        lines = [str(line) for line in pipeline[job]["script"]]
        for stack, image in _rolled(lines):
            assert image == "$IMAGE"
            source = next(line for line in lines if line.startswith("IMAGE="))
            read = re.search(r'open\("([^"]+)"\)', source)[1]
            assert pushed[read] == stack, f"{stack} rolls the image pushed to " \
                                          f"{pushed[read]}'s registry"
            rolled_stacks.add(stack)
    assert rolled_stacks == {"staging", "prod"}
