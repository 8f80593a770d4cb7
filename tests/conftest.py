"""Shared fixtures: a clean llmcloud environment, a project folder, the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

CLOUD_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS", "ARM_CLIENT_ID", "AZURE_CLIENT_ID",
)


@pytest.fixture(autouse=True)
def _clean_llmcloud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLMCLOUD_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LLMCLOUD_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_store_reads_before_up(request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` on a deployed cloud stack reads the version's manifest from the stack's store
    (`model_fit.check_before_up`): a fake stack's `s3://...` output would be a real request
    to the cloud. The tests of that check ask for it with `@pytest.mark.store_reads`."""
    if request.node.get_closest_marker("store_reads") is None:
        from llmcloud.providers import model_fit

        monkeypatch.setattr(model_fit, "check_before_up", lambda ctx, outputs: None)


@pytest.fixture(autouse=True)
def _no_quota_reads_before_up(request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` on AWS, Azure and GCP reads the account's GPU quota first (`check_gpu_quota`): with a
    fake stack's credentials that would be a real request to the cloud. The tests of that
    check ask for it with `@pytest.mark.quota_reads`."""
    if request.node.get_closest_marker("quota_reads") is None:
        from llmcloud.providers.cloud import CloudProvider

        monkeypatch.setattr(CloudProvider, "check_gpu_quota", lambda self, ctx: None)


@pytest.fixture(autouse=True)
def _no_registry_tags_before_up(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` on AWS tags the image in service in the stack's ECR repository
    (`keep_image_in_service`), and on GCP checks it is in the stack's Artifact Registry
    repository (`check_image_in_registry`): with a fake stack's credentials that would be a
    real request to the cloud. The tests of those steps ask for them with
    `@pytest.mark.registry_tags`."""
    if request.node.get_closest_marker("registry_tags") is None:
        from llmcloud.providers.aws.provider import AwsProvider
        from llmcloud.providers.gcp.provider import GcpProvider

        monkeypatch.setattr(AwsProvider, "keep_image_in_service", lambda self, ctx: None)
        monkeypatch.setattr(GcpProvider, "check_image_in_registry", lambda self, ctx: None)


@pytest.fixture(autouse=True)
def _no_execution_logs_around_up(request: pytest.FixtureRequest,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` and `destroy` on AWS keep API Gateway's execution-log group after the program
    (`keep_execution_logs`, `delete_execution_logs`): with a fake stack's credentials that
    would be a real request to the cloud. The tests of those steps ask for them with
    `@pytest.mark.execution_logs`."""
    if request.node.get_closest_marker("execution_logs") is None:
        from llmcloud.providers.aws.provider import AwsProvider

        monkeypatch.setattr(AwsProvider, "keep_execution_logs", lambda self, ctx, outputs: None)
        monkeypatch.setattr(AwsProvider, "delete_execution_logs",
                            lambda self, ctx, outputs: None)


@pytest.fixture(autouse=True)
def _stack_file_locks_in_a_temporary_home(tmp_path_factory: pytest.TempPathFactory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Promote, rollback, up... lock the stack file under `LLMCLOUD_HOME`, else
    `~/.llmcloud/locks` (`stack_file_lock.lock_path`): a test whose environment names no
    LLMCLOUD_HOME (most rollout tests pass `environ={}`) wrote its lock files into the
    developer's real home. Such a test gets a temporary home; one that names its own keeps
    it."""
    from llmcloud.stacks import stack_file_lock

    home = tmp_path_factory.mktemp("llmcloud-home")
    real = stack_file_lock.lock_path

    def lock_path(project_dir, stack, environ):
        return real(project_dir, stack, {"LLMCLOUD_HOME": str(home), **environ})

    monkeypatch.setattr(stack_file_lock, "lock_path", lock_path)


@pytest.fixture(autouse=True)
def _event_loop_for_pulumi() -> None:
    """Pulumi's test runtime awaits on the thread's current event loop, and a test that ran
    `asyncio.run()` leaves none behind."""
    from llmcloud.stacks.plan import ensure_event_loop

    ensure_event_loop()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Pulumi project folder as the working directory, with no credentials."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "Pulumi.yaml").write_text("name: test\nruntime: python\n")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in CLOUD_ENV:
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):
    """Invoke `llmcloud ARGS...`; returns the result (stdout and stderr kept apart)."""
    from llmcloud.cli.app import app

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return invoke
