"""The one seam between llmcloud and the Pulumi engine: the Automation API on the project.

`llmcloud up` and a platform team's plain `pulumi up` run the same program, because both
run the project directory's `Pulumi.yaml`. Everything that talks to the engine goes through
`PulumiStack`, whose `open_stack` tests replace with a fake that records what it was asked.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from llmcloud.stacks.config import ENV_PREFIX, NAMESPACE, flags_to_env
from llmcloud.stacks.errors import (
    ConfigError,
    CredentialsError,
    DeploymentError,
    LlmcloudError,
    MissingToolError,
)

PULUMI_INSTALL_HINT = "install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh"


class StackLike(Protocol):
    """What llmcloud uses of `pulumi.automation.Stack` (a fake implements the same)."""

    name: str
    workspace: Any  # its `list_stacks()` names the project's stacks in the backend

    def set_all_config(self, config: Mapping[str, Any], path: bool = False) -> None: ...
    def up(self, **kwargs: Any) -> Any: ...
    def preview(self, **kwargs: Any) -> Any: ...
    def destroy(self, **kwargs: Any) -> Any: ...
    def refresh(self, **kwargs: Any) -> Any: ...
    def outputs(self) -> Mapping[str, Any]: ...
    def info(self) -> Any: ...


def workspace_env(
    environ: Mapping[str, str], flags: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Environment for the engine: the program runs with this Python and sees the spec's
    `LLMCLOUD_*` overrides and the CLI's flags, so it resolves the spec the CLI validated."""
    env = {name: value for name, value in environ.items() if name.startswith(ENV_PREFIX)}
    env.update(flags_to_env(flags or {}))
    env["PULUMI_PYTHON_CMD"] = sys.executable
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def open_stack(project_dir: Path, stack: str, env: Mapping[str, str],
               create: bool = False) -> StackLike:
    """Open `stack` of the Pulumi project in `project_dir`: create it when missing only if
    `create` (the operations that deploy it); else select it, and a missing stack raises
    the Automation API's `StackNotFoundError` (`PulumiStack` turns it into
    `MissingStackError`). A typo in --stack made an empty stack of that name in the user's
    backend for every command, even one that only reads a deployed stack."""
    from pulumi import automation as auto

    open_it = auto.create_or_select_stack if create else auto.select_stack
    try:
        options = auto.LocalWorkspaceOptions(work_dir=str(project_dir), env_vars=dict(env))
        return open_it(stack, work_dir=str(project_dir), opts=options)
    except FileNotFoundError as exc:
        raise MissingToolError(
            "the pulumi CLI is not installed",
            context=f"llmcloud runs cloud stacks through the Pulumi engine ({exc.strerror})",
            hint=PULUMI_INSTALL_HINT,
        ) from None
    except auto.errors.InvalidVersionError as exc:
        # an old CLI (or one whose `pulumi version` is not a version) is not llmcloud's bug
        raise MissingToolError(
            "the pulumi CLI on PATH is not one the Automation API can drive",
            context=str(exc),
            hint=f"update the Pulumi CLI: {PULUMI_INSTALL_HINT.split(': ', 1)[1]}",
        ) from None


#: what `PulumiStack` calls to open a stack: `open_stack`, or a test's fake
StackOpener = Callable[[Path, str, Mapping[str, str], bool], StackLike]


class MissingStackError(ConfigError):
    """The stack does not exist in the backend, and the operation does not create one."""

    def __init__(self, stack: str, environ: Mapping[str, str] | None = None):
        backend = _backend_url(environ or {})
        where = (f"the backend is {backend} (PULUMI_BACKEND_URL)" if backend else
                 "the backend is the one `pulumi login` chose (pulumi whoami --verbose)")
        super().__init__(
            f"stack '{stack}' does not exist in this project's Pulumi backend",
            context=f"{where}; a stack is created by its first llmcloud up, never by a "
                    "command that reads or changes a deployed one",
            hint=f"llmcloud up --stack {stack} creates it; or check --stack (pulumi stack "
                 "ls lists this project's stacks)")
        self.stack = stack


def _backend_url(environ: Mapping[str, str]) -> str | None:
    """PULUMI_BACKEND_URL without a user or password (a postgres:// backend's URL can
    carry them)."""
    url = environ.get("PULUMI_BACKEND_URL", "").strip()
    return re.sub(r"//[^/@]*@", "//", url) or None


def translate_command_error(exc: Exception, stack: str) -> LlmcloudError:
    """Turn an Automation API error into one a user can act on."""
    from pulumi import automation as auto

    text = str(exc)
    if isinstance(exc, auto.errors.StackNotFoundError):
        return MissingStackError(stack)
    if isinstance(exc, auto.ConcurrentUpdateError):
        return DeploymentError(
            f"another update of stack '{stack}' is in progress",
            context="Pulumi holds a lock on the stack while an update runs",
            hint=f"wait for it, or if it died: pulumi cancel --stack {stack} --yes",
        )
    if "pending operation" in text or "interrupted while creating" in text:
        return DeploymentError(
            f"stack '{stack}' has pending operations from an interrupted update",
            context="resources may exist that Pulumi has not recorded",
            hint=f"llmcloud refresh --stack {stack}",
        )
    lower = text.lower()
    if "incorrect passphrase" in lower or "passphrase must be set" in lower:
        return CredentialsError(
            f"the passphrase of stack '{stack}' is missing or wrong",
            context=_last_error_line(text),
            hint="export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) as set "
                 "when the stack was made",
        )
    if "must be set for login during non-interactive" in lower:
        return CredentialsError(
            "not logged in to a Pulumi backend",
            context=_last_error_line(text),
            hint="pulumi login (or set PULUMI_ACCESS_TOKEN, or PULUMI_BACKEND_URL for a "
                 "bucket or file:// backend)",
        )
    plugin = re.search(r"install the plugin using `(pulumi plugin install [^`]+)`", text)
    if plugin or "no resource plugin" in lower:
        return MissingToolError(
            "a Pulumi provider plugin the stack needs is not installed",
            context=_last_error_line(text),
            hint=plugin.group(1) if plugin else "pulumi plugin install resource <name> "
                                                "<version> (the error names both)",
        )
    if "bucketnotempty" in lower or "containing objects without `force_destroy`" in lower:
        # the stores are not force-destroyed: model versions (and access logs) are the
        # user's to delete, not a side effect of destroy
        return DeploymentError(
            f"destroy of stack '{stack}' stopped at a bucket that still holds objects",
            context=_last_error_line(text),
            hint="llmcloud keeps model versions and logs unless you delete them: empty the "
                 "bucket the error names (every object version, e.g. the console's Empty "
                 "action), then run llmcloud destroy again",
        )
    if "servicealreadyexistsinsoftdeletedstate" in lower:
        # Azure keeps a deleted API Management service soft-deleted for 48 hours, its name
        # blocked: the `up` after a `destroy` of the same stack asks for that name again
        found = re.search(r"Api service (\S+?)\.? was soft-deleted", text, re.IGNORECASE)
        service = found.group(1) if found else "<the service the error names>"
        return DeploymentError(
            f"stack '{stack}' needs API Management service '{service}', which Azure keeps "
            "soft-deleted after a destroy",
            context="a deleted API Management service stays soft-deleted for 48 hours, its "
                    f"name unusable until it is purged ({_last_error_line(text)})",
            hint=f"purge it: az apim deletedservice purge --service-name {service} "
                 "--location <the stack's region> (az apim deletedservice list shows it), "
                 f"then run llmcloud up --provider azure --stack {stack} again",
        )
    if "no credentials" in lower or "could not find default credentials" in lower:
        return DeploymentError(
            f"the cloud refused the update of stack '{stack}': no credentials",
            context=_last_error_line(text),
            hint="check your cloud credentials, then run the command again",
        )
    return DeploymentError(
        f"the Pulumi engine failed on stack '{stack}'",
        context=_last_error_line(text),
        hint="run again with --debug for the engine's full output",
    )


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


class PulumiStack:
    """The lifecycle operations of one stack, over the Automation API."""

    def __init__(
        self,
        project_dir: Path,
        stack: str,
        environ: Mapping[str, str],
        *,
        opener: StackOpener = open_stack,
        on_event: Callable[[Any], None] | None = None,
        flags: Mapping[str, Any] | None = None,
        create: bool = False,
    ):
        """Open `stack`; only with `create` (up, update, preview) is a missing one created,
        else it is `MissingStackError` (exit 2)."""
        from pulumi import automation as auto

        self.stack_name = stack
        self.on_event = on_event
        try:
            self._stack = opener(project_dir, stack, workspace_env(environ, flags), create)
        except auto.errors.StackNotFoundError:
            raise MissingStackError(stack, environ) from None
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, stack) from None

    def _run(self, operation: str, **kwargs: Any) -> Any:
        from pulumi import automation as auto

        if self.on_event is not None:
            kwargs["on_event"] = self.on_event
        try:
            return getattr(self._stack, operation)(**kwargs)
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, self.stack_name) from None

    def set_config(self, values: Mapping[str, Any]) -> None:
        """Record spec values in the stack's config (`Pulumi.<stack>.yaml`), keyed by dotted
        path (`compute.max_replicas`), so a later plain `pulumi up` keeps them."""
        from pulumi import automation as auto

        if not values:
            return
        config = {
            f"{NAMESPACE}:{key}": auto.ConfigValue(
                value=value if isinstance(value, str) else json.dumps(value)
            )
            for key, value in values.items()
        }
        try:
            self._stack.set_all_config(config, path=True)
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, self.stack_name) from None

    def up(self) -> dict[str, Any]:
        """Run the program and apply the changes; return the stack outputs as plain values."""
        result = self._run("up", color="never")
        return unwrap_outputs(result.outputs)

    def preview(self) -> dict[str, Any]:
        """What `up` would change, as {operation: count}."""
        result = self._run("preview", color="never")
        return {"changes": dict(result.change_summary or {})}

    def destroy(self) -> dict[str, Any]:
        """Delete every resource of the stack."""
        result = self._run("destroy", color="never")
        return {"changes": dict(result.summary.resource_changes or {})}

    def refresh(self) -> dict[str, Any]:
        """Read the real state of every resource into the stack."""
        result = self._run("refresh", color="never")
        return {"changes": dict(result.summary.resource_changes or {})}

    def outputs(self) -> dict[str, Any]:
        """The stack's current outputs as plain values."""
        return unwrap_outputs(self._stack.outputs())

    def stack_names(self) -> list[str]:
        """The names of the project's stacks in this backend, this one included (a Pulumi
        Cloud backend may qualify them with the organization: only the stack's part)."""
        return [summary.name.rsplit("/", 1)[-1]
                for summary in self._stack.workspace.list_stacks()]

    def last_update(self) -> dict[str, Any] | None:
        """The last update's kind, result and end time, or None before the first."""
        info = self._stack.info()
        if info is None:
            return None
        return {
            "kind": info.kind,
            "result": info.result,
            "end_time": info.end_time.isoformat() if info.end_time else None,
            "changes": dict(info.resource_changes or {}),
        }


def unwrap_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """`{name: OutputValue}` -> `{name: value}`, with secrets masked."""
    plain = {}
    for name, output in (outputs or {}).items():
        secret = getattr(output, "secret", False)
        plain[name] = "[secret]" if secret else getattr(output, "value", output)
    return plain
