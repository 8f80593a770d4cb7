"""A platform team's plain `pulumi up` runs the program without llmcloud's steps around it:
the program, run without llmcloud's marker, says what it skips and keeps the budget gate;
run by llmcloud (the marker `workspace_env` sets), it does neither."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from llmcloud.providers.registry import get_provider
from llmcloud.stacks.automation import workspace_env
from llmcloud.stacks.plain_pulumi import MARKER
from tests.providers.declared import RecordingMocks

IMAGE = ("123456789012.dkr.ecr.us-east-1.amazonaws.com/"
         "llm-prod/qwen2-5-0-5b-instruct-server@sha256:"
         + "ab" * 32)


def run_program(provider: str, stack: str = "prod") -> tuple[list[str], dict]:
    """`stacks/__main__.py`'s program run under Pulumi's mocks as a real update of `stack`,
    its spec from the `LLMCLOUD_*` environment (as a stack file's config would give it): the
    warnings it logged, and the resources it declared by type."""
    from pulumi.runtime.config import CONFIG
    from pulumi.runtime.mocks import set_mocks
    from pulumi.runtime.settings import ROOT, SETTINGS
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from llmcloud.stacks.plan import ensure_event_loop
    from llmcloud.stacks.program import main

    logger = logging.getLogger("tests.plain_pulumi_up")
    kept: list[str] = []

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING and record.getMessage() not in kept:
                kept.append(record.getMessage())

    handler = Kept()
    mocks = RecordingMocks(get_provider(provider))

    def run() -> None:
        ensure_event_loop()
        ROOT.set(None)
        set_mocks(mocks, project="llmcloud", stack=stack, preview=False, logger=logger)
        SETTINGS.rpc_manager.clear()
        SETTINGS.outputs.clear()
        CONFIG.set({})
        _sync_await(run_pulumi_func(main))
        tasks = [task for task in asyncio.all_tasks(asyncio.get_event_loop())
                 if getattr(task.get_coro(), "__name__", "") == "do_log"]
        if tasks:
            _sync_await(asyncio.wait(tasks, timeout=5))

    logger.addHandler(handler)
    try:
        contextvars.copy_context().run(run)  # pulumi's settings stay as they were
    finally:
        logger.removeHandler(handler)
    return kept, mocks.created


def plain_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "runs without llmcloud" in w]


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch):
    """A plain `pulumi up`'s environment: the spec's variables, no llmcloud marker."""
    monkeypatch.delenv(MARKER, raising=False)

    def spec(provider: str, **variables: str) -> None:
        monkeypatch.setenv("LLMCLOUD_PROVIDER", provider)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
    return spec


@pytest.mark.parametrize("provider, says", [
    ("aws", ["serving tag", "execution-log group", "llmcloud destroy --provider aws"]),
    ("gcp", ["watching the instance group make its servers", "Artifact Registry"]),
    ("azure", ["API Management's 30 to 45 minutes", "purges the API Management service"]),
])
def test_a_plain_run_says_what_it_skips_and_the_command_that_does_it(plain, provider, says):
    plain(provider, **({"LLMCLOUD_IMAGE": IMAGE} if provider == "aws" else {}))
    warnings, created = run_program(provider)
    [warning] = plain_warnings(warnings)
    assert f"`llmcloud up --provider {provider} --stack prod` runs this same program" in warning
    assert "the GPU quota check" in warning and "catching this stack file up" in warning
    assert f"docs/{provider}.md" in warning
    for words in says:
        assert words in warning
    assert created  # the program declared the service as before


def test_a_plain_run_says_how_to_tag_the_image_in_service(plain):
    plain("aws", LLMCLOUD_IMAGE=IMAGE)
    [warning] = plain_warnings(run_program("aws")[0])
    assert ("aws ecr batch-get-image --registry-id 123456789012 --region us-east-1 "
            "--repository-name llm-prod/qwen2-5-0-5b-instruct-server --image-ids "
            "imageDigest=sha256:" in warning)
    assert f"--image-tag llmcloud-serving-{'ab' * 32} " in warning


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_llmclouds_own_run_does_not_warn(plain, monkeypatch, provider):
    plain(provider, **({"LLMCLOUD_IMAGE": IMAGE} if provider == "aws" else {}))
    for name, value in workspace_env({}).items():  # what llmcloud gives the program
        monkeypatch.setenv(name, value)
    warnings, created = run_program(provider)
    assert plain_warnings(warnings) == []
    assert created


def test_a_plain_run_keeps_the_budget_gate(plain, monkeypatch):
    plain("aws", LLMCLOUD_BUDGET__MAX_HOURLY_USD="0.5")
    with pytest.raises(Exception, match=r"over the budget of \$0.50/h") as refused:
        run_program("aws")
    assert "lower compute.max_replicas" in str(refused.value)


def test_llmclouds_run_leaves_the_budget_to_llmcloud_up(plain, monkeypatch):
    plain("aws", LLMCLOUD_BUDGET__MAX_HOURLY_USD="0.5")
    monkeypatch.setenv(MARKER, "1")  # `llmcloud up` refused it before the program ran
    warnings, created = run_program("aws")
    assert plain_warnings(warnings) == [] and created


def test_a_plain_run_of_a_stack_name_another_would_share_says_so(plain):
    plain("gcp")
    [warning] = plain_warnings(run_program("gcp", stack="Prod_1")[0])
    assert "names its resources llm-prod-1-..., as stack 'prod-1' would" in warning


def test_the_engine_environment_carries_the_marker() -> None:
    assert workspace_env({})[MARKER] == "1"
    assert workspace_env({MARKER: "0"})[MARKER] == "1"
