"""Bugs a review of the CLI and the spec found, each reproduced as a user or a CI job met it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmcloud.providers.aws.provider import AwsProvider


@pytest.fixture
def aws_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS as a provider that offers every operation, its SDK present."""
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)


def _cli_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLOUD_")}
    env["LLMCLOUD_HOME"] = str(project.parent / "llmcloud-home")
    return env


# -- a stack file the user got wrong is a config error (2), not "a bug in llmcloud" (1) ------


def _assert_config_error(result, first: str) -> None:
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == first and document["exit_code"] == 2
    assert "bug" not in result.stderr and "unexpected error" not in result.stderr


def test_a_folder_in_place_of_the_stack_file_is_a_config_error(project: Path, cli) -> None:
    (project / "Pulumi.dev.yaml").mkdir()
    result = cli("plan", "--provider", "aws", "--json")
    _assert_config_error(result, "cannot read Pulumi.dev.yaml")
    assert "move the folder away" in json.loads(result.stdout)["hint"]


def test_a_stack_file_not_in_utf8_is_a_config_error(project: Path, cli) -> None:
    (project / "Pulumi.dev.yaml").write_bytes(
        "config:\n  llmcloud:region: 'eu-w\u00e9st-1'\n".encode("latin-1"))
    result = cli("status", "--json")
    _assert_config_error(result, "cannot read Pulumi.dev.yaml")
    assert "not UTF-8" in json.loads(result.stdout)["context"]


def test_an_unreadable_stack_file_is_a_config_error(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # (the tests may run as root, who reads any file: the refusal is simulated)
    path = project / "Pulumi.dev.yaml"
    path.write_text("config:\n  llmcloud:provider: aws\n")
    read_text = Path.read_text

    def refuse(self: Path, *args, **kwargs):
        if self.name == path.name:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    result = cli("plan", "--json")
    _assert_config_error(result, "cannot read Pulumi.dev.yaml")
    assert "Permission denied" in json.loads(result.stdout)["context"]


# -- --json: exactly one JSON document on stdout, whatever happens -----------------------


def test_model_upload_progress_goes_to_stderr_not_stdout(project: Path) -> None:
    """On a terminal, the upload's progress bar went to stdout (rich's default console),
    where `--json` prints its document."""
    import pty

    model = project / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"\0" * 200_000)
    main, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "llmcloud.cli", "model", "upload", str(model),
             "--version", "v1", "--to", str(project / "store"), "--json"],
            cwd=project, env=_cli_env(project), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=terminal, timeout=120)
    finally:
        os.close(terminal)
        os.close(main)
    assert done.returncode == 0
    assert done.stdout.startswith(b"{"), done.stdout[:200]
    assert json.loads(done.stdout)["version"] == "v1"


def _declined(project: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    (project / "Pulumi.dev.yaml").write_text("config:\n  llmcloud:provider: aws\n")
    opened: list = []
    monkeypatch.setattr(AwsProvider, "stack_opener", lambda *a: opened.append(a))
    monkeypatch.setattr("llmcloud.cli.stack_commands.interactive", lambda: True)
    return opened


@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "end-of-input"])
def test_destroy_declined_with_json_still_prints_its_document(
        project: Path, cli, aws_offered: None, monkeypatch: pytest.MonkeyPatch,
        answer: str) -> None:
    """Declined (or stdin closed at the prompt), `destroy --json` exited 1 with nothing on
    stdout (and "Aborted!" for the end of input)."""
    opened = _declined(project, monkeypatch)
    result = cli("destroy", "--provider", "aws", "--json", input=answer)
    assert result.exit_code == 1
    # the test runner echoes the typed answer onto stdout, as a terminal would show it
    document = json.loads(result.stdout[result.stdout.index("{"):])
    assert document["error"] == "destroy cancelled; nothing was changed"
    assert document["exit_code"] == 1
    assert opened == []


def test_ctrl_c_at_the_destroy_prompt_is_an_interruption(
        project: Path, cli, aws_offered: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the prompt exited 1 with "Aborted!" (130 is the documented code)."""
    import typer

    opened = _declined(project, monkeypatch)

    def ctrl_c(*args, **kwargs):
        try:  # what click's confirm does with a KeyboardInterrupt
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise typer.Abort() from None

    monkeypatch.setattr(typer, "confirm", ctrl_c)
    result = cli("destroy", "--provider", "aws", "--json")
    assert result.exit_code == 130
    assert json.loads(result.stdout)["exit_code"] == 130
    assert opened == []


def test_a_closed_stdout_is_not_reported_as_a_bug(project: Path) -> None:
    """`llmcloud plan --json | head -1`: the reader went away, and llmcloud said
    "unexpected error: BrokenPipeError ... this is a bug in llmcloud"."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llmcloud.cli", "status", "--json"], cwd=project,
        env=_cli_env(project), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    process.stdout.close()  # before it writes: the reader is gone
    _, err = process.communicate(timeout=120)
    assert b"bug" not in err and b"BrokenPipeError" not in err, err


# -- usage errors: the hint names a command that exists ------------------------------------


@pytest.mark.parametrize("args,hint", [
    (["keys", "create", "--json", "--bogus"], "llmcloud keys create --help"),
    (["keys", "revoke", "--json"], "llmcloud keys revoke --help"),
    (["model", "upload", "nowhere", "--version", "v1", "--json"],
     "llmcloud model upload --help"),
    (["plan", "--json", "--bogus"], "llmcloud plan --help"),
])
def test_a_usage_error_hint_names_the_whole_command(project: Path, cli, args, hint) -> None:
    # `llmcloud create --help` is no command
    result = cli(*args)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["hint"] == hint


# -- typos in spec variables and keys are refused, not ignored -----------------------------


def test_other_llmcloud_variables_are_still_not_spec_values(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"LLMCLOUD_API_KEY": "k", "LLMCLOUD_LOCAL_READY_TIMEOUT": "5",
                        "LLMCLOUD_MODEL_VERSION": "v3", "LLMCLOUD_PROJECT_DIR": str(project)
                        }.items():
        monkeypatch.setenv(name, value)
    # (the stack exists: status refuses a stack that is nowhere)
    (project / "Pulumi.dev.yaml").write_text("config:\n  llmcloud:provider: local\n")
    assert cli("status", "--json").exit_code == 0


def test_plain_pulumi_up_refuses_an_unknown_llmcloud_key_as_the_cli_does(project: Path) -> None:
    """The CLI refuses `llmcloud:regoin`; the program `pulumi up` runs read the known
    sections only and deployed to the default region."""
    import pulumi
    from pulumi.runtime.config import CONFIG

    from llmcloud.stacks.errors import ConfigError
    from llmcloud.stacks.program import load_spec

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return args.name, {}

        def call(self, args):
            return {}

    def run() -> None:
        pulumi.runtime.set_mocks(Mocks(), project="llmcloud", stack="dev", preview=True)
        CONFIG.set({"llmcloud:provider": "aws", "llmcloud:compute": '{"max_replicas": 3}'})
        assert load_spec().compute.max_replicas == 3
        CONFIG.set({"llmcloud:provider": "aws", "llmcloud:regoin": "eu-west-1",
                    "aws:region": "eu-west-1"})
        with pytest.raises(ConfigError) as info:
            load_spec()
        assert info.value.message == "invalid value for llmcloud:regoin"
        assert "unknown key" in info.value.context

    import contextvars

    contextvars.copy_context().run(run)  # pulumi's settings stay as they were
