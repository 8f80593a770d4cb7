"""The provider interface: what every place llmcloud deploys to (local, aws, azure, gcp) offers.

A provider is small on purpose. It declares its defaults, checks its credentials, builds the
service's cloud resources inside a Pulumi program, and runs the lifecycle operations the
CLI asks for. What a provider cannot do it declares in `unsupported`, with the reason, and
the CLI reports that as exit 4 instead of pretending to succeed.

Provider modules must import no cloud SDK at module level: `llmcloud --help` loads them.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmcloud.stacks.errors import MissingToolError, NotSupportedError, install_hint
from llmcloud.stacks.spec import DeploymentSpec

OPERATIONS = (
    "up",
    "preview",
    "update",
    "destroy",
    "refresh",
    "status",
    "outputs",
    "plan",
    "promote",
    "promote_canary",
    "rollback",
    "keys",
    "model_upload",
    "image_push",
    "console",
)


@dataclass
class StackContext:
    """Everything an operation needs to know about the stack it acts on."""

    project_dir: Path
    stack: str
    spec: DeploymentSpec
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    yes: bool = False
    on_event: Callable[[Any], None] | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)


class Provider(ABC):  # noqa: B024 - abstract by convention: every operation has a default
    """One place llmcloud deploys to. Subclasses override what they offer."""

    name: ClassVar[str]
    #: the pip extra that brings this provider's SDKs (`install_hint` names the command)
    extra: ClassVar[str | None] = None
    #: modules that extra installs; checked before any of them is imported
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    #: operation -> why this provider does not offer it
    unsupported: ClassVar[Mapping[str, str]] = {}

    # -- what every provider declares -----------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """Spec values this provider fills in under the stack file (nested like the spec)."""
        return {}

    def check_credentials(self, environ: Mapping[str, str]) -> None:  # noqa: B027
        """Raise `CredentialsError` naming the command that fixes missing credentials."""

    def require_sdk(self) -> None:
        """Raise `MissingToolError` with the install command when the SDK extra is missing."""
        missing = [m for m in self.sdk_modules if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingToolError(
                f"the {self.name} provider needs {', '.join(missing)}, "
                f"which {'is' if len(missing) == 1 else 'are'} not installed",
                context=f"these come with llmcloud's '{self.extra}' extra",
                hint=install_hint(self.extra),
            )

    def supports(self, operation: str) -> None:
        """Raise `NotSupportedError` (exit 4) when this provider does not offer `operation`."""
        reason = self.unsupported.get(operation)
        if reason is not None:
            raise NotSupportedError(
                f"'{operation.replace('_', ' ')}' is not supported by the {self.name} provider",
                context=reason,
                hint=self.unsupported_hint(operation),
            )

    def unsupported_hint(self, operation: str) -> str:
        """What to run instead of an unsupported operation."""
        if operation == "promote_canary":
            return "promote with --bake (without --canary): the whole fleet rolls, then bakes"
        return "see `llmcloud --help` for what each provider offers"

    # -- the Pulumi side (cloud providers) ------------------------------------------------

    def build_service(self, spec: DeploymentSpec, stack: str) -> Mapping[str, Any]:
        """Declare the service's resources in the running Pulumi program; return its outputs."""
        self.supports("up")
        raise NotSupportedError(f"the {self.name} provider declares no cloud resources")

    def prices(self, spec: DeploymentSpec) -> Any | None:
        """The priced items of `spec`'s service (a `stacks.cost.PriceSheet`), or None when
        this provider has no price table."""
        return None

    def mock_invoke(self, token: str, args: Mapping[str, Any], *,
                    region: str | None = None) -> dict[str, Any]:
        """A realistic answer to a provider function (invoke) for `plan` under mocks."""
        raise NotSupportedError(f"the {self.name} provider has no mocked answers for plan")

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any], *,
                      region: str | None = None) -> tuple[str, dict[str, Any]]:
        """A mocked (id, state) for a declared resource, for `plan` under mocks."""
        raise NotSupportedError(f"the {self.name} provider has no mocked answers for plan")

    # -- lifecycle operations the CLI calls -----------------------------------------------

    def _unsupported(self, operation: str) -> NotSupportedError:
        self.supports(operation)
        return NotSupportedError(
            f"'{operation}' is not supported by the {self.name} provider",
            hint=self.unsupported_hint(operation),
        )

    def up(self, ctx: StackContext) -> dict[str, Any]:
        """Create or converge the stack; return its outputs."""
        raise self._unsupported("up")

    def preview(self, ctx: StackContext) -> dict[str, Any]:
        """Show what `up` would change, touching nothing."""
        raise self._unsupported("preview")

    def update(self, ctx: StackContext) -> dict[str, Any]:
        """Apply a changed spec to a running stack; return its outputs."""
        raise self._unsupported("update")

    def destroy(self, ctx: StackContext) -> dict[str, Any]:
        """Remove everything the stack created."""
        raise self._unsupported("destroy")

    def refresh(self, ctx: StackContext) -> dict[str, Any]:
        """Bring the recorded state in line with what really exists."""
        raise self._unsupported("refresh")

    def status(self, ctx: StackContext) -> dict[str, Any]:
        """The stack's endpoint, model version and replicas."""
        raise self._unsupported("status")

    def outputs(self, ctx: StackContext) -> dict[str, Any]:
        """The stack's outputs (endpoint URL, bucket, registry, ...)."""
        raise self._unsupported("outputs")

    def promote(self, ctx: StackContext, version: str) -> dict[str, Any]:
        """Roll the service to model version `version`, going back on failure."""
        raise self._unsupported("promote")

    def rollback(self, ctx: StackContext) -> dict[str, Any]:
        """Return the service to the last good model version."""
        raise self._unsupported("rollback")

    def keys_create(self, ctx: StackContext, name: str, admin: bool = False) -> dict[str, Any]:
        """Create an API key; the key itself is returned once and stored only as a hash."""
        raise self._unsupported("keys")

    def keys_list(self, ctx: StackContext) -> list[dict[str, Any]]:
        """The stack's API keys (ids, names, prefixes; never the keys)."""
        raise self._unsupported("keys")

    def keys_revoke(self, ctx: StackContext, key_id: str) -> dict[str, Any]:
        """Revoke an API key."""
        raise self._unsupported("keys")

    def console(self, ctx: StackContext, port: int, host: str = "127.0.0.1") -> None:
        """Serve the management console for the stack until interrupted."""
        raise self._unsupported("console")

    def model_store_uri(self, ctx: StackContext) -> str:
        """Where this stack keeps its models (`s3://bucket/models`, a local folder, ...)."""
        raise self._unsupported("model_upload")

    def model_upload(
        self,
        ctx: StackContext,
        folder: Path,
        *,
        name: str,
        version: str,
        force: bool = False,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload `folder` to the stack's store as `<name>/<version>/` with its manifest;
        never overwrite an existing version unless `force`."""
        self.supports("model_upload")
        from llmcloud.providers.model_upload import upload_model

        return upload_model(folder, self.model_store_uri(ctx), name=name, version=version,
                            force=force, on_progress=on_progress)

    def registry_login(self, ctx: StackContext, registry: str) -> tuple[str, str]:
        """A (username, password) for pushing to the stack's registry, the cloud's way."""
        raise self._unsupported("image_push")

    def prune_images(self, ctx: StackContext, image: str,
                     login: tuple[str | None, str | None]) -> dict[str, Any] | None:
        """Bound the stack's registry once `image push` put `image` (`host/repo@sha256:...`)
        in it with `login`: what was deleted, or None where the registry bounds itself (AWS's
        lifecycle policy, GCP's cleanup policies). Raises when it cannot tell what to keep."""
        return None
