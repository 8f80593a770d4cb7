"""The Automation API seam: what the engine is asked, how its events become progress, and
how its errors become ones a user can act on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi.automation import events as ev

from llmcloud.cli.progress import EngineProgress
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.stacks.automation import (
    PulumiStack,
    open_stack,
    translate_command_error,
    workspace_env,
)
from llmcloud.stacks.errors import (
    CredentialsError,
    DeploymentError,
    ExitCode,
    MissingToolError,
)
from tests.stacks.fakes import FakeStack, fake_aws_project


def _result(stderr: str) -> auto.CommandResult:
    return auto.CommandResult(stdout="", stderr=stderr, code=255)


def test_real_workspace_without_pulumi_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError) as caught:
        open_stack(tmp_path, "dev", {})
    assert caught.value.exit_code == ExitCode.MISSING_TOOL
    assert caught.value.hint.startswith("install the Pulumi CLI")


def test_concurrent_update_hints_pulumi_cancel() -> None:
    error = auto.ConcurrentUpdateError(
        _result("error: [409] Conflict: Another update is currently in progress.")
    )
    translated = translate_command_error(error, "prod")
    assert isinstance(translated, DeploymentError)
    assert translated.exit_code == ExitCode.BUSY  # refused before it began: retry later
    assert translated.hint == "wait for it, or if it died: pulumi cancel --stack prod --yes"


def test_pending_operations_hint_refresh() -> None:
    error = auto.CommandError(_result(
        "error: the current deployment has 1 resource(s) with pending operations:\n"
        "  * urn:pulumi:prod::llmcloud::aws:ec2/instance:Instance::x, interrupted while creating"
    ))
    assert translate_command_error(error, "prod").hint == "llmcloud refresh --stack prod"


@pytest.mark.parametrize(("stderr", "kind", "hint"), [
    ("error: getting secrets manager: failed to decrypt: incorrect passphrase, please set "
     "PULUMI_CONFIG_PASSPHRASE to the correct passphrase or set PULUMI_CONFIG_PASSPHRASE_FILE "
     "to a file containing the passphrase", CredentialsError, "PULUMI_CONFIG_PASSPHRASE"),
    ("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions",
     CredentialsError, "pulumi login"),
    ("error: could not load plugin for aws provider 'urn:pulumi:dev::llmcloud::pulumi:"
     "providers:aws::default': no resource plugin 'pulumi-resource-aws' found in the "
     "workspace at version v7.2.0 or on your $PATH, install the plugin using `pulumi plugin "
     "install resource aws v7.2.0`", MissingToolError,
     "pulumi plugin install resource aws v7.2.0"),
])
def test_a_missing_passphrase_login_or_plugin_is_exit_3_with_its_fix(stderr, kind, hint):
    # each was "the Pulumi engine failed" (exit 1, "run again with --debug"), while the
    # README gives exit 3 to what is missing: a tool or credentials
    translated = translate_command_error(auto.CommandError(_result(stderr)), "dev")
    assert isinstance(translated, kind) and translated.exit_code == ExitCode.MISSING_TOOL
    assert hint in translated.hint


@pytest.mark.parametrize("stderr", [
    "error: deleting urn:pulumi:prod::llmcloud::aws:s3/bucket:Bucket::llm-prod-store-models: "
    "1 error occurred:\n* deleting S3 Bucket (llm-models-2024): operation error S3: "
    "DeleteBucket, https response error StatusCode: 409, api error BucketNotEmpty: The bucket "
    "you tried to delete is not empty. You must delete all versions in the bucket.",
    "error: deleting urn:pulumi:prod::llmcloud::gcp:storage/bucket:Bucket::llm-prod-store-models:"
    " Error trying to delete bucket llm-prod-models containing objects without `force_destroy` "
    "set to true",
], ids=["aws", "gcp"])
def test_a_destroy_stopped_by_a_bucket_with_models_says_what_to_do(stderr) -> None:
    # it was "the Pulumi engine failed", hinting --debug: the model store keeps its objects
    translated = translate_command_error(auto.CommandError(_result(stderr)), "prod")
    assert translated.message == ("destroy of stack 'prod' stopped at a bucket that still "
                                  "holds objects")
    assert "empty the bucket" in translated.hint and "llm-" in translated.context


def test_other_engine_errors_keep_the_last_error_line() -> None:
    error = auto.CommandError(_result("warning: x\nerror: creating EC2 VPC: VpcLimitExceeded\n"))
    translated = translate_command_error(error, "dev")
    assert translated.context == "error: creating EC2 VPC: VpcLimitExceeded"


def test_engine_env_carries_overrides_flags_and_this_python(monkeypatch) -> None:
    import sys

    env = workspace_env({"LLMCLOUD_REGION": "eu-west-1", "HOME": "/root", "AWS_PROFILE": "p"},
                        {"compute.max_replicas": 4, "model.version": "v7", "region": None})
    assert env == {
        "LLMCLOUD_REGION": "eu-west-1",
        "LLMCLOUD_COMPUTE__MAX_REPLICAS": "4",
        "LLMCLOUD_MODEL__VERSION": "v7",
        "LLMCLOUD_RUN_BY_CLI": "1",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }


def _event(seq: int, **kwargs) -> ev.EngineEvent:
    return ev.EngineEvent(sequence=seq, timestamp=seq, **kwargs)


def _meta(name: str, type_: str, op: ev.OpType) -> ev.StepEventMetadata:
    urn = f"urn:pulumi:dev::llmcloud::{type_}::{name}"
    return ev.StepEventMetadata(op=op, urn=urn, type=type_, provider="")


ENGINE_EVENTS = [
    _event(1, resource_pre_event=ev.ResourcePreEvent(
        _meta("dev", "pulumi:pulumi:Stack", ev.OpType.CREATE))),
    _event(2, resource_pre_event=ev.ResourcePreEvent(
        _meta("models", "aws:s3/bucket:Bucket", ev.OpType.CREATE))),
    _event(3, resource_pre_event=ev.ResourcePreEvent(
        _meta("vpc", "aws:ec2/vpc:Vpc", ev.OpType.SAME))),
    _event(4, resource_pre_event=ev.ResourcePreEvent(
        _meta("servers", "aws:autoscaling/group:Group", ev.OpType.UPDATE))),
    _event(5, res_outputs_event=ev.ResOutputsEvent(
        _meta("models", "aws:s3/bucket:Bucket", ev.OpType.CREATE))),
    _event(6, res_op_failed_event=ev.ResOpFailedEvent(
        _meta("servers", "aws:autoscaling/group:Group", ev.OpType.UPDATE), status=1, steps=1)),
    _event(7, diagnostic_event=ev.DiagnosticEvent(
        message="error: waiting for ASG capacity\n", color="never", severity="error")),
]


def test_engine_events_become_progress() -> None:
    stream = io.StringIO()
    clock = iter(range(100)).__next__
    progress = EngineProgress(stream=stream, live=False, clock=lambda: float(clock()))
    for event in ENGINE_EVENTS:
        progress(event)
    steps = {step.name: (step.op, step.state) for step in progress.steps.values()}
    assert steps == {"models": ("create", "done"), "servers": ("update", "failed")}
    assert progress.errors == ["error: waiting for ASG capacity"]
    assert progress.summary() == {"create": 1, "update": 1}
    lines = stream.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["create", "update"]
    assert lines[0].split()[1:4] == ["aws:s3/bucket:Bucket", "models", "done"]


def test_live_view_renders_a_table() -> None:
    from rich.console import Console

    progress = EngineProgress(stream=io.StringIO(), live=False)
    for event in ENGINE_EVENTS[:5]:
        progress(event)
    console = Console(file=io.StringIO(), width=160)
    console.print(progress.render())
    text = console.file.getvalue()
    assert "models" in text and "done" in text and "running" in text


def test_pulumi_stack_passes_on_event_and_unwraps_outputs(tmp_path: Path) -> None:
    opener = FakeStack.opener(events=ENGINE_EVENTS, stack_outputs={"endpoint_url": "https://x"})
    seen = []
    stack = PulumiStack(tmp_path, "dev", {}, opener=opener, on_event=seen.append)
    assert stack.up() == {"endpoint_url": "https://x"}
    assert len(seen) == len(ENGINE_EVENTS)
    assert opener.opened[0].calls == [("up", {"color": "never", "on_event": seen.append})]


@pytest.fixture
def aws_with_fake_engine(monkeypatch, tmp_path: Path):
    """AWS with its engine replaced by a recording fake; credentials present."""
    fake_aws_project(monkeypatch, tmp_path)
    opener = FakeStack.opener(events=ENGINE_EVENTS[:6],
                              stack_outputs={"endpoint_url": "https://api.example"})
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    return opener


def test_up_through_the_cli_records_stack_config_and_env(aws_with_fake_engine, cli) -> None:
    result = cli("up", "--provider", "aws", "--stack", "prod", "--max-replicas", "4",
                 "--model-version", "v7", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == {
        "provider": "aws", "stack": "prod", "operation": "up",
        "outputs": {"endpoint_url": "https://api.example"},
    }
    fake = aws_with_fake_engine.opened[0]
    assert fake.name == "prod"
    assert [name for name, _ in fake.calls] == ["set_all_config", "up"]
    assert fake.calls[0][1] == {"path": True}
    assert fake.config == {
        "llmcloud:provider": "aws",
        "llmcloud:compute.max_replicas": "4",
        "llmcloud:model.version": "v7",
    }
    assert fake.env["LLMCLOUD_COMPUTE__MAX_REPLICAS"] == "4"
    assert fake.env["LLMCLOUD_PROVIDER"] == "aws"
    assert "create" in result.stderr and "aws:s3/bucket:Bucket" in result.stderr


def test_preview_writes_no_config(aws_with_fake_engine, cli) -> None:
    result = cli("preview", "--provider", "aws", "--max-replicas", "3", "--json")
    assert result.exit_code == 0, result.output
    fake = aws_with_fake_engine.opened[0]
    assert [name for name, _ in fake.calls] == ["preview"]
    assert json.loads(result.stdout)["changes"] == {"create": 3}
    assert fake.env["LLMCLOUD_COMPUTE__MAX_REPLICAS"] == "3"


def test_engine_failure_during_up_is_reported(aws_with_fake_engine, cli, monkeypatch) -> None:
    error = auto.ConcurrentUpdateError(_result("[409] Conflict: Another update is currently"
                                               " in progress."))
    monkeypatch.setattr(AwsProvider, "stack_opener", FakeStack.opener(fail_with=error))
    result = cli("up", "--provider", "aws")
    assert result.exit_code == 75  # busy: run it again later
    assert result.stderr.splitlines()[-3:] == [
        "error: another update of stack 'dev' is in progress",
        "  Pulumi holds a lock on the stack while an update runs",
        "hint: wait for it, or if it died: pulumi cancel --stack dev --yes",
    ]


@pytest.mark.parametrize("command", ["outputs", "status", "refresh", "destroy"])
def test_other_lifecycle_commands_reach_the_engine(aws_with_fake_engine, cli, command) -> None:
    # a deployed stack's commands run where its stack file is
    Path("Pulumi.dev.yaml").write_text("config:\n  llmcloud:provider: aws\n")
    result = cli(command, "--provider", "aws", "--json", "--yes") if command == "destroy" \
        else cli(command, "--provider", "aws", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["operation"] == command
    if command == "status":
        assert document["endpoint"] == "https://api.example"


def test_an_old_pulumi_cli_is_a_missing_tool_not_a_bug(tmp_path: Path, monkeypatch) -> None:
    # the Automation API refuses a CLI older than its minimum with InvalidVersionError,
    # which is no CommandError: it surfaced as "unexpected error ... a bug in llmcloud"
    old = tmp_path / "pulumi"
    old.write_text("#!/bin/sh\necho v2.25.2\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)
    with pytest.raises(MissingToolError) as caught:
        open_stack(tmp_path, "dev", {})
    assert caught.value.exit_code == ExitCode.MISSING_TOOL
    assert "2.25.2" in caught.value.context
    assert caught.value.hint == "update the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh"
