"""The errors a user of llmcloud sees, and the exit codes they map to.

Every part of llmcloud raises one of these; the CLI catches `LlmcloudError` in one place
and prints it as three lines: what went wrong, its context, and a `hint:` with the command
that fixes it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `llmcloud` command, shared by every command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    MISSING_TOOL = 3
    NOT_SUPPORTED = 4
    #: another operation holds the stack; this one was refused before it changed anything:
    #: run it again later (sysexits.h's EX_TEMPFAIL, "temp failure; user is invited to retry")
    BUSY = 75
    INTERRUPTED = 130
    #: SIGTERM during a cloud operation: 128 + SIGTERM, as a shell reports a command the
    #: signal killed (130 is Ctrl-C's, 128 + SIGINT)
    TERMINATED = 143


class LlmcloudError(Exception):
    """An error with a message, an optional context line and a hint that fixes it."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, context: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.context = context
        self.hint = hint

    def to_dict(self) -> dict:
        """The error as a JSON-ready mapping (for `--json` output)."""
        return {
            "error": self.message,
            "context": self.context,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class ConfigError(LlmcloudError):
    """The deployment spec or a command's arguments are invalid."""

    exit_code = ExitCode.USAGE


class MissingToolError(LlmcloudError):
    """A tool (the pulumi CLI, a container builder) or a cloud SDK extra is not installed."""

    exit_code = ExitCode.MISSING_TOOL


class CredentialsError(LlmcloudError):
    """The cloud's credentials are missing or unusable."""

    exit_code = ExitCode.MISSING_TOOL


class NotSupportedError(LlmcloudError):
    """The provider does not offer this operation (yet); the message says which and why."""

    exit_code = ExitCode.NOT_SUPPORTED


class DeploymentError(LlmcloudError):
    """An operation on a deployed stack failed (update, rollout, budget gate)."""

    exit_code = ExitCode.ERROR


class BusyError(DeploymentError):
    """Another operation holds the stack (Pulumi's lock, llmcloud's lock on the stack file,
    the local stack's): this one was refused before it changed the stack, and may simply be
    run again once that one has ended. A caller that changed something before the refusal
    (a promote's restore, a destroy that deleted keys first) raises a `DeploymentError`
    saying what, not this."""

    exit_code = ExitCode.BUSY


class InterruptedOperation(LlmcloudError):
    """The user interrupted an operation (Ctrl-C); the message says what state it left."""

    exit_code = ExitCode.INTERRUPTED


def install_hint(extras: str) -> str:
    """The pip command that adds llmcloud's `extras` (e.g. "aws" or "aws,gcp") to this
    environment. llmcloud is installed from a clone, not an index: the command names the
    folder it was installed from while that folder is still there."""
    import json
    from importlib.metadata import distributions
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    # every record of the name: run from the clone itself, its build's llmcloud.egg-info
    # comes first on the path and says nothing of where pip installed from
    for found in distributions(name="llmcloud"):
        try:
            origin = json.loads(found.read_text("direct_url.json") or "{}")
        except ValueError:
            continue
        url = urlparse(str(origin.get("url", "")))
        if url.scheme == "file" and isinstance(origin.get("dir_info"), dict):
            folder = Path(unquote(url.path))
            if (folder / "pyproject.toml").is_file():
                editable = "-e " if origin["dir_info"].get("editable") else ""
                return f'pip install {editable}"{folder}[{extras}]"'
    return f'pip install -e ".[{extras}]" (in a clone of llmcloud)'
