"""A fake Automation API stack that records what llmcloud asked of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any


@dataclass
class FakeStack:
    """Stands in for `pulumi.automation.Stack`; `calls` lists (operation, kwargs)."""

    name: str
    project_dir: Path
    env: dict[str, str]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    fail_with: Exception | None = None
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    #: the last update's info (None: never updated), and the project's other stacks
    last: Any = None
    other_stacks: list[str] = field(default_factory=list)
    #: the backend's URL, as `pulumi whoami --json` says it
    backend_url: str = "https://api.pulumi.com"

    @property
    def workspace(self) -> Any:
        names = [self.name, *self.other_stacks]
        return SimpleNamespace(
            list_stacks=lambda: [SimpleNamespace(name=name) for name in names],
            who_am_i=lambda: SimpleNamespace(user="tester", url=self.backend_url))

    @classmethod
    def opener(cls, *, exists: bool = True, **attrs: Any):
        """An `open_stack` replacement; the stacks it opens are in `opener.opened`, and
        what it was asked, as (stack, create), in `opener.asked`.

        `exists=False`: the backend has no such stack. Selecting it then fails as the
        Automation API's `select_stack` does (`StackNotFoundError`), and creating it makes
        it (its name goes in `opener.created`).
        """
        opened: list[FakeStack] = []
        asked: list[tuple[str, bool]] = []
        created: list[str] = []

        # `create` defaults to what every call did before callers said (create or select)
        def open_stack(project_dir: Path, stack: str, env: dict[str, str],
                       create: bool = True) -> FakeStack:
            asked.append((stack, create))
            if not exists and stack not in created:
                if not create:
                    raise stack_not_found(stack)
                created.append(stack)
            fake = cls(name=stack, project_dir=project_dir, env=dict(env), **attrs)
            opened.append(fake)
            return fake

        open_stack.opened = opened  # type: ignore[attr-defined]
        open_stack.asked = asked  # type: ignore[attr-defined]
        open_stack.created = created  # type: ignore[attr-defined]
        return open_stack

    def _operation(self, name: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((name, kwargs))
        if self.fail_with is not None:
            raise self.fail_with
        for event in self.events:
            kwargs["on_event"](event)
        return SimpleNamespace(
            outputs={k: SimpleNamespace(value=v, secret=False) for k, v in
                     self.stack_outputs.items()},
            change_summary={"create": 3},
            summary=SimpleNamespace(resource_changes={"delete": 3}),
        )

    def set_all_config(self, config: dict[str, Any], path: bool = False) -> None:
        self.calls.append(("set_all_config", {"path": path}))
        self.config.update({key: value.value for key, value in config.items()})

    def up(self, **kwargs: Any) -> Any:
        return self._operation("up", kwargs)

    def preview(self, **kwargs: Any) -> Any:
        return self._operation("preview", kwargs)

    def destroy(self, **kwargs: Any) -> Any:
        return self._operation("destroy", kwargs)

    def refresh(self, **kwargs: Any) -> Any:
        return self._operation("refresh", kwargs)

    def outputs(self) -> dict[str, Any]:
        return {k: SimpleNamespace(value=v, secret=False) for k, v in self.stack_outputs.items()}

    def info(self, show_secrets: bool = True) -> Any:
        return self.last


def stack_not_found(stack: str) -> Exception:
    """The error `pulumi stack select` gives for a missing stack, classified by the
    Automation API's own rules (pulumi/pulumi#5255 quotes the CLI's message)."""
    from pulumi.automation import errors
    from pulumi.automation._cmd import CommandResult

    return errors.create_command_error(CommandResult(
        stdout="", stderr=f"error: no stack named '{stack}' found", code=255))


def fake_aws_project(monkeypatch: Any, tmp_path: Path) -> Path:
    """AWS ready to run with a fake engine (no SDK, budget or offering checks; credentials
    present), in a project folder that is the current directory; the folder."""
    from llmcloud.providers.aws.provider import AwsProvider

    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setattr(AwsProvider, "before_up", lambda self, ctx: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    monkeypatch.chdir(project)
    return project
