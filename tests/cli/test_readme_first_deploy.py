"""A platform engineer's first deployment, as the README and the first `up` tell it: every
`llmcloud` command they show exists with its options and required arguments, in an order
that works, and what they read from a command's output is where the command prints it.

Found by following them literally: the first `up`'s `next_step` said to run `model upload`
without its required `--version`; the GCP and Azure walkthroughs deployed the image without
ever uploading the model its servers load; the SageMaker walkthrough ran its first `up`
before writing the stack file that names the model, so that `up` made an ECR repository
named after the default model, which the stack file then replaced, deleting the image
pushed to it; and it read `.endpoint_url` from `llmcloud outputs --json`, whose outputs are
under `.outputs`."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from llmcloud.cli.app import app
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.first_up import next_step
from llmcloud.stacks.plan import declare
from tests.providers.declared import spec_for
from tests.stacks.fakes import FakeStack

ROOT = Path(__file__).resolve().parents[2]
#: the README and the reference pages in docs/ it links to, by path: the walkthroughs a
#: first deployment follows live in both
PAGES = {path.relative_to(ROOT).as_posix(): path.read_text()
         for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}

QUICK_START = "### Quick start"
SHIPPING = "## Shipping a model version: image, model, promote"
T5 = "### The example: T5 translating English to French"
GCP = "## Plan, up, destroy\n\n```bash\nllmcloud plan --provider gcp"
AZURE = "## Plan, up, destroy\n\n```bash\nllmcloud plan --provider azure"
#: the walkthroughs a first deployment follows, each on one cloud
FIRST_DEPLOYS = {"aws-sagemaker": T5, "gcp": GCP, "azure": AZURE, "shipping": SHIPPING}
#: the model folders the walkthroughs upload, made in the test's folder (`model upload`
#: takes an existing folder)
FOLDERS = ("qwen", "t5", "model", "FOLDER")


def _section(heading: str) -> str:
    """The page that holds `heading` (the README or one in docs/), from it to the next
    heading of the same or a higher level (a `#` line inside a fenced block is a comment,
    not a heading)."""
    level = len(heading) - len(heading.lstrip("#"))
    starts = re.compile(rf"^{re.escape(heading)}", re.M)
    (text, start), = [(text, found.start()) for text in PAGES.values()
                      if (found := starts.search(text))]
    lines = text[start:].splitlines(keepends=True)
    fenced = False
    for number, line in enumerate(lines[1:], start=1):
        fenced ^= line.startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "".join(lines[:number])
    return "".join(lines)


def _blocks(section: str, language: str) -> list[tuple[int, str]]:
    """The section's fenced blocks of `language`, with where each starts."""
    return [(m.start(), m.group(1))
            for m in re.finditer(rf"^```{language}\n(.*?)^```", section, re.M | re.S)]


def _calls(script: str) -> list[list[str]]:
    """The `llmcloud` calls of a shell script (comments, `$(...)` and `VAR=` prefixes
    aside)."""
    calls = []
    script = re.sub(r"\$\((?:[^()]|\([^()]*\))*\)", "SUBST", script.replace("\\\n", " "))
    for line in script.splitlines():
        line = line.split(" #", 1)[0]
        for part in re.split(r"&&|\|\||;|\|", line):
            if not part.strip().startswith(("llmcloud ", "LLMCLOUD_")):
                continue  # (a line of `python -c "..."` is no shell line of its own)
            words = shlex.split(part.split(">")[0])
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]
            if words[:1] == ["llmcloud"]:
                calls.append(words[1:])
    return calls


def _parse(args: list[str]) -> tuple[str, dict]:
    """Parse `llmcloud ARGS` as the CLI does (commands, options, required ones, values):
    the command's name and its parameters, or the CLI's usage error."""
    command = get_command(app)
    names = []
    while hasattr(command, "commands"):
        assert args and args[0] in command.commands, f"llmcloud {' '.join(names)}: {args}"
        names.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    context = command.make_context(" ".join(["llmcloud", *names]), list(args))
    return " ".join(names), context.params


@pytest.fixture
def folders(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in FOLDERS:
        (tmp_path / name).mkdir()
    return tmp_path


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_first_ups_next_step_runs_as_printed(cloud, folders):
    """The real program's `next_step` output, each command in it parsed by the real CLI."""
    _, outputs = declare(spec_for(cloud, model={"version": "v3"}), "dev", preview=False)
    commands = re.findall(r"\((llmcloud [^)]*)\)", outputs["next_step"])
    parsed = [_parse(shlex.split(command)[1:]) for command in commands]
    assert [name for name, _ in parsed] == ["image build", "image push", "model upload", "up"]
    for name, params in parsed[1:]:
        assert (params["provider"], params["stack"]) == (cloud, "dev"), name
    # the version the stack file names: the one its servers load
    assert parsed[2][1]["version"] == "v3" and parsed[3][1]["image"]


def test_next_step_names_the_version_the_servers_load():
    assert "--version v7 --provider aws --stack prod" in next_step("aws", "prod", "v7")


@pytest.mark.parametrize("heading", [QUICK_START, *FIRST_DEPLOYS.values()],
                         ids=["quick-start", *FIRST_DEPLOYS])
def test_every_walkthrough_command_exists_with_its_options(heading, folders):
    calls = [call for _, block in _blocks(_section(heading), "bash") for call in _calls(block)]
    assert len(calls) >= 3
    for call in calls:
        _parse(call)


@pytest.mark.parametrize("walkthrough", FIRST_DEPLOYS)
def test_a_first_deploy_builds_pushes_and_uploads_before_the_up_with_the_image(walkthrough,
                                                                                folders):
    calls = [_parse(call) for _, block in _blocks(_section(FIRST_DEPLOYS[walkthrough]), "bash")
             for call in _calls(block)]
    names = [name for name, _ in calls]
    deploy = next(i for i, (name, params) in enumerate(calls)
                  if name in ("up", "update") and params.get("image"))
    first_up = names.index("up")
    missing = [needed for needed in ("image build", "image push", "model upload")
               if needed not in names[first_up:deploy]]
    assert missing == [], f"{walkthrough} deploys the image without: {missing}"
    assert names.index("image build") < names.index("image push")


def _plan(cli, stack_file: str | None) -> dict:
    Path("Pulumi.dev.yaml").unlink(missing_ok=True)
    if stack_file is not None:
        Path("Pulumi.dev.yaml").write_text(stack_file)
    result = cli("plan", "--provider", "aws", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_sagemaker_example_keeps_the_registry_its_first_up_made(project, cli):
    """The registry the walkthrough's first `up` makes (with the stack files written before
    it) is the one its `up --image` deploys, and the upload is the version it serves."""
    section = _section(T5)
    (stack_at, stack_file), = _blocks(section, "yaml")
    calls = [(at, call) for at, block in _blocks(section, "bash") for call in _calls(block)]
    # `model upload` and `image push` read the deployed stack's outputs: its first `up`
    # came no later than the first of them
    first_up = next(at for at, call in calls
                    if call[0] == "up" or call[:2] in (["model", "upload"], ["image", "push"]))
    at_first_up = _plan(cli, stack_file if stack_at < first_up else None)
    deployed = _plan(cli, stack_file)
    assert at_first_up["outputs"]["registry_url"] == deployed["outputs"]["registry_url"]
    assert deployed["outputs"]["registry_url"].endswith("/llm-dev/t5-server")
    assert not deployed["budget"]["exceeded"]
    assert all(check["passed"] for check in deployed["checks"])

    model = yaml.safe_load(stack_file)["config"]["llmcloud:model"]
    upload = next(call for _, call in calls if call[:2] == ["model", "upload"])
    assert upload[upload.index("--name") + 1] == model["name"]
    assert upload[upload.index("--version") + 1] == model["version"]


def _jq(document: dict, path: str):
    for key in path.strip(".").split("."):
        document = document.get(key) if isinstance(document, dict) else None
    return document


def test_the_sagemaker_example_reads_the_outputs_where_they_are_printed(project, cli,
                                                                        monkeypatch):
    """`llmcloud outputs --json` of a stack whose outputs are the real program's; the
    README's `jq` paths applied to what it prints."""
    section = _section(T5)
    (_, stack_file), = _blocks(section, "yaml")
    outputs = _plan(cli, stack_file)["outputs"]
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    monkeypatch.setattr(AwsProvider, "stack_opener", FakeStack.opener(stack_outputs=outputs))
    result = cli("outputs", "--provider", "aws", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)

    paths = re.findall(r"llmcloud outputs [^|]*--json \| jq -r (\S+?)\)", section)
    assert len(paths) == 2
    read = {path.rsplit(".", 1)[-1]: _jq(printed, path) for path in paths}
    assert read == {"endpoint_url": outputs["endpoint_url"],
                    "api_key_id": outputs["api_key_id"]}
