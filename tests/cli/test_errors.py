"""What a user sees when something is wrong: exit codes and the three lines, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.aws.provider import AwsProvider


@pytest.fixture
def aws_up_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS as a provider whose `up` is offered (whatever this build declares)."""
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)


def test_unknown_provider_is_a_usage_error(project: Path, cli) -> None:
    result = cli("up", "--provider", "oracle")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: unknown provider 'oracle'",
        "  choose one of: local, aws, gcp, azure",
        "hint: llmcloud up --provider local",
    ]
    assert result.stdout == ""


def test_invalid_stack_file_value_names_key_value_and_file(project: Path, cli) -> None:
    (project / "Pulumi.dev.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:compute:\n    max_replicas: -3\n"
    )
    result = cli("plan")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        "error: invalid value for llmcloud:compute.max_replicas",
        "  Input should be greater than or equal to 1 (value -3 from Pulumi.dev.yaml)",
    ]
    assert result.stderr.splitlines()[2].startswith("hint: ")


def test_invalid_environment_value_names_the_variable(
    project: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCLOUD_COMPUTE__SPOT", "sometimes")
    result = cli("status", "--provider", "aws")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        "error: invalid value for llmcloud:compute.spot",
        "  Input should be a valid boolean, unable to interpret input (value \"sometimes\" "
        "from LLMCLOUD_COMPUTE__SPOT)",
    ]


def test_invalid_flag_fails_before_anything_runs(project: Path, cli) -> None:
    result = cli("up", "--provider", "aws", "--min-replicas", "3", "--max-replicas", "2")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        "error: invalid value for llmcloud:compute.max_replicas",
        "  must be at least min_replicas (3) (value 2 from a command-line flag)",
    ]


def test_bad_model_version_on_promote(project: Path, cli) -> None:
    result = cli("promote", "--model-version", "v 7!")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: invalid value for llmcloud:model.version"


def test_unsupported_operation_exits_4_with_the_reason(
    project: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AwsProvider, "unsupported", {"up": "no GPUs left on Earth"})
    result = cli("up", "--provider", "aws")
    assert result.exit_code == 4
    assert result.stderr.splitlines() == [
        "error: 'up' is not supported by the aws provider",
        "  no GPUs left on Earth",
        "hint: llmcloud --help lists the operations; `llmcloud plan` works on every cloud",
    ]


def test_up_without_pulumi_cli_exits_3_without_traceback(
    project: Path, cli, aws_up_supported: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the real Automation API raises FileNotFoundError
    result = cli("up", "--provider", "aws")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "error: the pulumi CLI is not installed",
        "  llmcloud runs cloud stacks through the Pulumi engine (No such file or directory)",
        "hint: install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh",
    ]
    assert "Traceback" not in result.output


def test_json_error_is_one_document_on_stdout(
    project: Path, cli, aws_up_supported: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("up", "--provider", "aws", "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document == {
        "error": "the pulumi CLI is not installed",
        "context": "llmcloud runs cloud stacks through the Pulumi engine "
        "(No such file or directory)",
        "hint": "install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh",
        "exit_code": 3,
    }


def test_debug_shows_the_traceback(
    project: Path, cli, aws_up_supported: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("--debug", "up", "--provider", "aws")
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr


def test_unexpected_errors_are_reported_as_bugs(
    project: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("llmcloud.cli.context.load_stack", boom)
    result = cli("status")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: unexpected error: RuntimeError: disk on fire",
        "  this is a bug in llmcloud",
        "hint: run again with --debug and report the traceback",
    ]


def deployed_here(project: Path, provider: str = "aws") -> None:
    """The stack file a cloud stack is managed from (destroy, refresh, status, outputs)."""
    (project / "Pulumi.dev.yaml").write_text(f"config:\n  llmcloud:provider: {provider}\n")


def test_destroy_without_terminal_needs_yes(project: Path, cli, aws_up_supported: None) -> None:
    deployed_here(project)
    result = cli("destroy", "--provider", "aws")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: 'destroy' needs confirmation, and there is no terminal to ask on",
        "  stdin is not a terminal (a CI job or a pipe)",
        "hint: llmcloud destroy --stack dev --yes",
    ]


def test_destroy_declined_on_a_terminal_changes_nothing(
    project: Path, cli, aws_up_supported: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed_here(project)
    opened = []
    monkeypatch.setattr(AwsProvider, "stack_opener", lambda *a: opened.append(a))
    monkeypatch.setattr("llmcloud.cli.stack_commands.interactive", lambda: True)
    result = cli("destroy", "--provider", "aws", input="n\n")
    assert result.exit_code == 1
    assert "destroy cancelled; nothing was changed" in result.stderr
    assert opened == []


def test_destroy_confirmed_on_a_terminal_runs(
    project: Path, cli, aws_up_supported: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.stacks.fakes import FakeStack

    deployed_here(project)
    opener = FakeStack.opener()
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    monkeypatch.setattr(AwsProvider, "check_credentials", lambda self, env: None)
    monkeypatch.setattr("llmcloud.cli.stack_commands.interactive", lambda: True)
    result = cli("destroy", "--provider", "aws", "--json", input="y\n")
    assert result.exit_code == 0, result.output
    assert [name for name, _ in opener.opened[0].calls] == ["destroy"]
    # the test runner echoes the typed answer onto stdout, as a terminal would show it
    document = json.loads(result.stdout[result.stdout.index("{"):])
    assert document["changes"] == {"delete": 3}


def test_missing_aws_credentials_name_the_fix(
    project: Path, cli, aws_up_supported: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.stacks.fakes import FakeStack

    monkeypatch.setattr(AwsProvider, "stack_opener", FakeStack.opener())
    result = cli("up", "--provider", "aws")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == "error: no AWS credentials found"
    assert result.stderr.splitlines()[-1] == "hint: aws configure  (or: aws sso login)"


@pytest.mark.parametrize(
    "provider,first,hint",
    [
        ("gcp", "error: no Google Cloud credentials found",
         "hint: gcloud auth application-default login"),
        ("azure", "error: no Azure credentials found", "hint: az login"),
    ],
)
def test_missing_credentials_other_clouds(
    project: Path, cli, monkeypatch: pytest.MonkeyPatch, provider: str, first: str, hint: str
) -> None:
    from llmcloud.providers.registry import get_provider
    from tests.stacks.fakes import FakeStack

    cls = type(get_provider(provider))
    monkeypatch.setattr(cls, "unsupported", {})
    monkeypatch.setattr(cls, "require_sdk", lambda self: None)
    monkeypatch.setattr(cls, "stack_opener", FakeStack.opener())
    deployed_here(project, provider)
    result = cli("refresh", "--provider", provider)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == first
    assert result.stderr.splitlines()[-1] == hint


def test_no_pulumi_project_hints_init(tmp_path: Path, cli, monkeypatch, aws_up_supported) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("up", "--provider", "aws")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: no Pulumi.yaml in {tmp_path.resolve()}"
    assert result.stderr.splitlines()[-1] == "hint: llmcloud init --provider aws --stack dev"


@pytest.mark.parametrize("variable", [
    "LLMCLOUD_BUDGET_MAX_HOURLY_USD",  # one underscore
    "LLMCLOUD_BUGDET__MAX_HOURLY_USD",  # a misspelt section
])
def test_a_misspelt_spec_variable_is_refused_not_ignored(
        project: Path, cli, monkeypatch, variable) -> None:
    # skipped as "not a spec value", it turned the budget gate off without a word
    monkeypatch.setenv(variable, "1")
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == (
        f"{variable} is not a spec variable: did you mean "
        "LLMCLOUD_BUDGET__MAX_HOURLY_USD?")
    monkeypatch.delenv(variable)
    monkeypatch.setenv("LLMCLOUD_MODEL_VERSION", "v3")  # the model server's own variable
    assert cli("plan", "--provider", "aws", "--json").exit_code == 0


def test_an_infinite_budget_is_refused(project: Path, cli) -> None:
    # it turned the gate off, and `--json` printed Infinity, which is not JSON
    result = cli("plan", "--provider", "aws", "--json", "--budget", "inf")
    assert result.exit_code == 2 and "finite number" in json.loads(result.stdout)["context"]


def test_a_cloud_stack_without_its_stack_file_here_is_not_destroyed_as_empty(
        project: Path, cli) -> None:
    # the Automation API created an empty stack of that name, destroyed nothing, exit 0
    result = cli("destroy", "--provider", "aws", "--stack", "prod", "--yes", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == f"there is no Pulumi.prod.yaml in {project}"


def test_plan_json_is_the_same_bytes_run_after_run(project: Path, cli) -> None:
    # the mocks see inputs in thread-timing order: CI diffs of plans were noise
    first = cli("plan", "--provider", "aws", "--json").stdout
    assert cli("plan", "--provider", "aws", "--json").stdout == first


@pytest.mark.parametrize("args", [["plan", "--json", "--max-replicas", "abc"],
                                  ["plan", "--json", "--bogus"], ["promote", "--json"]])
def test_a_usage_error_with_json_is_one_json_document_too(project: Path, cli, args) -> None:
    # stdout was empty: a pipeline reading it got nothing to parse
    result = cli(*args)
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and document["error"]
    assert document["hint"] == f"llmcloud {args[0]} --help"
    assert "Error:" in result.stderr  # and the usual message for a person
