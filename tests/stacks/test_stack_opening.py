"""`open_stack` creates a stack only when asked to; otherwise it selects it, and a missing
stack is a usage error (exit 2), not an empty stack made in the user's backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi import automation as auto

from llmcloud.stacks.automation import (
    MissingStackError,
    PulumiStack,
    open_stack,
    translate_command_error,
)
from llmcloud.stacks.errors import CredentialsError, ExitCode
from tests.stacks.fakes import stack_not_found


@pytest.fixture
def automation(monkeypatch) -> list:
    """The Automation API's two openers, recording which one was called and with what;
    `select_stack` of a stack named `missing` fails as the real one does."""
    called: list = []

    def create_or_select_stack(stack, work_dir=None, opts=None):
        called.append(("create_or_select_stack", stack, work_dir, opts.env_vars))
        return f"stack {stack}"

    def select_stack(stack, work_dir=None, opts=None):
        called.append(("select_stack", stack, work_dir, opts.env_vars))
        if stack == "missing":
            raise stack_not_found(stack)
        return f"stack {stack}"

    monkeypatch.setattr(auto, "create_or_select_stack", create_or_select_stack)
    monkeypatch.setattr(auto, "select_stack", select_stack)
    return called


def test_a_stack_is_selected_unless_creating_it_is_asked(automation, tmp_path: Path) -> None:
    assert open_stack(tmp_path, "prod", {"A": "1"}) == "stack prod"
    assert automation == [("select_stack", "prod", str(tmp_path), {"A": "1"})]


def test_creating_a_stack_creates_or_selects_it(automation, tmp_path: Path) -> None:
    assert open_stack(tmp_path, "prod", {}, True) == "stack prod"
    assert [name for name, *_ in automation] == ["create_or_select_stack"]


@pytest.mark.parametrize("create, used", [(False, "select_stack"),
                                          (True, "create_or_select_stack")])
def test_pulumi_stack_opens_as_told(automation, tmp_path: Path, create, used) -> None:
    PulumiStack(tmp_path, "prod", {}, create=create)
    assert [name for name, *_ in automation] == [used]


def test_pulumi_stack_selects_by_default(automation, tmp_path: Path) -> None:
    PulumiStack(tmp_path, "prod", {})
    assert [name for name, *_ in automation] == ["select_stack"]


def test_a_missing_stack_is_a_usage_error_naming_the_backend(automation,
                                                              tmp_path: Path) -> None:
    with pytest.raises(MissingStackError) as caught:
        PulumiStack(tmp_path, "missing", {"PULUMI_BACKEND_URL": "s3://state/pulumi"})
    error = caught.value
    assert error.exit_code == ExitCode.USAGE
    assert error.message == "stack 'missing' does not exist in this project's Pulumi backend"
    assert error.context.startswith("the backend is s3://state/pulumi (PULUMI_BACKEND_URL)")
    assert error.hint.startswith("llmcloud up --stack missing creates it")
    assert [name for name, *_ in automation] == ["select_stack"]  # and nothing created


def test_without_a_backend_url_the_context_says_how_to_find_it(automation,
                                                                tmp_path: Path) -> None:
    with pytest.raises(MissingStackError) as caught:
        PulumiStack(tmp_path, "missing", {})
    assert "pulumi whoami --verbose" in caught.value.context


def test_other_engine_errors_on_opening_are_still_translated(tmp_path: Path) -> None:
    from pulumi.automation._cmd import CommandResult

    def opener(project_dir, stack, env, create):
        raise auto.errors.create_command_error(CommandResult(
            stdout="", code=255,
            stderr="error: incorrect passphrase, please set PULUMI_CONFIG_PASSPHRASE"))

    with pytest.raises(CredentialsError, match="passphrase of stack 'prod'"):
        PulumiStack(tmp_path, "prod", {}, opener=opener)


def test_a_stack_gone_during_an_operation_is_named_missing_too() -> None:
    error = translate_command_error(stack_not_found("prod"), "prod")
    assert isinstance(error, MissingStackError)
    assert error.exit_code == ExitCode.USAGE
