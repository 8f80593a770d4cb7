"""The part every cloud provider shares: lifecycle operations through the Pulumi engine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from llmcloud.providers.base import Provider, StackContext
from llmcloud.providers.naming import base_name, names_its_own, slug
from llmcloud.stacks.automation import (
    MissingStackError,
    PulumiStack,
    StackOpener,
    open_stack,
    translate_command_error,
)
from llmcloud.stacks.config import NAMESPACE
from llmcloud.stacks.errors import ConfigError, DeploymentError, NotSupportedError
from llmcloud.stacks.spec import DeploymentSpec

#: the operations that may create their stack; every other one selects an existing stack
CREATES_A_STACK = frozenset({"up", "update", "preview"})


class CloudProvider(Provider):
    """A provider whose service is a Pulumi stack (aws, gcp, azure)."""

    #: the command that sets up credentials (`aws configure`, `az login`, ...)
    credentials_command: ClassVar[str]
    #: how users name this cloud and its image registry, for messages
    display_name: ClassVar[str] = ""
    registry_label: ClassVar[str] = "registry"
    #: the module that answers plan's mocked lookups (its `mock_invoke`, `mock_resource`)
    mock_answers: ClassVar[Any] = None
    default_region: ClassVar[str] = ""
    #: replaced by tests with a fake that records what the engine was asked
    stack_opener: StackOpener = staticmethod(open_stack)
    #: the shortest bake that can catch a bad version: the time the quickest of the stack's
    #: alerts needs to fire once the version misbehaves (each cloud sets its own)
    BAKE_MINIMUM_SECONDS: ClassVar[int] = 0

    def mock_invoke(self, token: str, args: Mapping[str, Any], *,
                    region: str | None = None) -> dict[str, Any]:
        """The cloud's answer to a lookup, for `llmcloud plan` (camelCase keys)."""
        if self.mock_answers is None:
            return super().mock_invoke(token, args, region=region)
        return self.mock_answers.mock_invoke(token, dict(args), region or self.default_region)

    def mock_resource(self, type_: str, name: str, inputs: Mapping[str, Any], *,
                      region: str | None = None) -> tuple[str, dict[str, Any]]:
        """The id and outputs the cloud would give a new resource, for `llmcloud plan`."""
        if self.mock_answers is None:
            return super().mock_resource(type_, name, inputs, region=region)
        return self.mock_answers.mock_resource(type_, name, dict(inputs),
                                               region or self.default_region)

    def unsupported_hint(self, operation: str) -> str:
        if operation == "promote_canary":  # (a cloud whose canary is not built yet)
            return super().unsupported_hint(operation)
        return "llmcloud --help lists the operations; `llmcloud plan` works on every cloud"

    def _engine(self, ctx: StackContext, operation: str) -> PulumiStack:
        self.supports(operation)
        if not (ctx.project_dir / "Pulumi.yaml").exists():
            raise ConfigError(
                f"no Pulumi.yaml in {ctx.project_dir}",
                context="cloud stacks run the Pulumi project in the current directory",
                hint=f"llmcloud init --provider {self.name} --stack {ctx.stack}",
            )
        try:
            engine = _Engine(
                ctx.project_dir,
                ctx.stack,
                ctx.environ,
                opener=type(self).stack_opener,
                on_event=ctx.on_event,
                flags=ctx.flags,
                create=operation in CREATES_A_STACK,
            )
        except MissingStackError as exc:
            exc.hint = (f"llmcloud up --provider {self.name} --stack {ctx.stack} creates it; "
                        "or check --stack (pulumi stack ls lists this project's stacks)")
            raise
        engine.cloud_login = self.credentials_command
        self.require_sdk()
        if operation != "outputs":
            self.check_credentials(ctx.environ)
        return engine

    def build_service(self, spec: DeploymentSpec, stack: str) -> Mapping[str, Any]:
        """Declare every layer in the running Pulumi program; return the stack's outputs.

        Without `spec.image`, a preview (or `plan`) shows the whole service with a
        placeholder digest in the stack's registry, and a real update creates only the
        registry and the model store (`first_up`): what the image push needs.
        """
        import pulumi

        self.check_spec(spec)
        if spec.server.drain_timeout_seconds < spec.gateway.timeout_seconds:
            pulumi.log.warn(drain_warning(spec))
        return self.declare_service(spec, stack)

    def declare_service(self, spec: DeploymentSpec, stack: str) -> Mapping[str, Any]:
        """The cloud's own components for `spec` (what `build_service` runs once checked)."""
        raise NotSupportedError(f"the {self.name} provider declares no cloud resources")

    def check_spec(self, spec: DeploymentSpec) -> None:
        """Refuse settings this cloud cannot honour (or does not build yet), before anything
        runs; never ignore them."""

    def before_up(self, ctx: StackContext) -> None:
        """Checks that must pass before anything is created: the spec and the budget gate
        (without an image, `up` creates only the registry and the store: see first_up).

        When the spec sets `budget.max_hourly_usd`, the cost at max replicas (from the
        provider's `prices(spec)`) must not exceed it; otherwise `DeploymentError` (exit 1)
        names both numbers. A provider without prices cannot pass a set budget.
        """
        from llmcloud.stacks.cost import enforce_budget, estimate

        self.check_spec(ctx.spec)
        limit = ctx.spec.budget.max_hourly_usd
        if limit is not None:
            sheet = self.prices(ctx.spec)
            if sheet is None:
                raise DeploymentError(
                    f"the {self.name} provider has no price table, so the budget cannot be "
                    "checked", context=f"budget.max_hourly_usd is {limit}",
                    hint="remove budget.max_hourly_usd from the stack file to deploy without "
                         "a gate",
                )
            enforce_budget(estimate(sheet), limit, ctx.stack)
        self.check_gpu_quota(ctx)

    def check_gpu_quota(self, ctx: StackContext) -> None:
        """The account's GPU quota against the stack's servers (`read_gpu_quota`), before
        `up` changes anything: too little for the minimum servers is refused when the spec
        has an image, and a warning on a first `up` (registry and store only: the increase
        can be asked for while the image is built); a quota that cannot be read is a note,
        never a refusal (credentials may not be allowed to read quotas)."""
        try:
            note = self.read_gpu_quota(ctx)
        except DeploymentError as short:
            if ctx.spec.image:
                raise
            note = f"warning: {short.message}; this up creates no servers yet: {short.hint}"
        except Exception as exc:  # noqa: BLE001 - a quota read never blocks an up
            note = f"note: the GPU quota check was skipped ({type(exc).__name__})"
        if note:
            print(note, file=sys.stderr)

    def read_gpu_quota(self, ctx: StackContext) -> str | None:
        """Read the quota the stack's servers draw on: raise `DeploymentError` when it
        cannot hold the minimum servers, return a note (room short of the maximum, or the
        read skipped), else None. A cloud without a read returns None."""
        return None

    def refuse_names_of_another_stack(self, ctx: StackContext, engine: PulumiStack) -> None:
        """Refuse to create a stack whose resources would carry another stack's names (for
        a stack never deployed: renaming a deployed one's resources would replace them).

        Resource names are `llm-<stack>-...` with the stack name slugged, so `a.b`, `a_b`
        and `a-b` would all be `llm-a-b-...`: the second stack's `up` fails half-way on
        names the first one holds (and Azure's resource group is shared).
        """
        stack = ctx.stack
        canonical = slug(stack)
        where = f"--provider {self.name} --stack {canonical}"
        if not names_its_own(stack):
            raise ConfigError(
                f"stack name '{stack}' would name its resources {base_name(stack)}-..., as "
                f"stack '{canonical}' would",
                context="cloud resource names keep only lowercase letters, digits and single "
                        "dashes of the stack name, so two stacks could collide in one account",
                hint=f"use a name of lowercase letters, digits and dashes: llmcloud init "
                     f"{where} (then move your settings there)")
        twins = sorted(name for name in engine.stack_names()
                       if name != stack and slug(name) == canonical)
        if twins:
            raise ConfigError(
                f"stack '{stack}' would name its resources {base_name(stack)}-..., as stack "
                f"'{twins[0]}' of this project does",
                context="the two stacks' resources would collide in one account",
                hint=f"pick another stack name, or, if '{twins[0]}' holds nothing: "
                     f"pulumi stack rm {twins[0]}")

    def up(self, ctx: StackContext) -> dict[str, Any]:
        return self._converge(ctx, "up")

    def update(self, ctx: StackContext) -> dict[str, Any]:
        return self._converge(ctx, "update")

    def _converge(self, ctx: StackContext, operation: str) -> dict[str, Any]:
        from llmcloud.stacks.busy_restore import restored_when_busy
        from llmcloud.stacks.config import stack_file

        # refused by Pulumi's lock (exit 75, "nothing changed"): the stack file too
        with restored_when_busy(stack_file(ctx.project_dir, ctx.stack)):
            engine = self._engine(ctx, operation)
            self.before_up(ctx)
            image = ctx.spec.image
            if not deployed(engine.last_update()):  # a new stack, or one destroyed whole
                self.refuse_names_of_another_stack(ctx, engine)
            else:
                refuse_without_stack_file(ctx, operation)
                image = self.catch_up(ctx, engine)
            # the image the update deploys: a stack file behind the stack named an older one
            self.check_image(ctx, image)
            engine.set_config(_given(ctx.flags))  # flags become the stack's settings
            outputs = engine.up()
        self.after_up(ctx, outputs)
        return {"outputs": outputs}

    def after_up(self, ctx: StackContext, outputs: Mapping[str, Any]) -> None:
        """What the cloud does around the program once an `up` or `update` succeeded (its
        `outputs`): never a failure of the deployment, which is done. None by default."""

    def catch_up(self, ctx: StackContext, engine: PulumiStack) -> str | None:
        """Bring a deployed stack's file, left behind by a promote, rollback or image roll
        made elsewhere, up to the deployed model version and history and image, so the
        update does not roll the servers back to the file's (see `deployed_model.record_lags`);
        then check the version it deploys, in the stack's store, against the GPUs' memory
        (`model_fit.check_before_up`). Returns the image the update deploys."""
        from llmcloud.providers import deployed_model
        from llmcloud.providers.model_fit import check_before_up

        outputs = engine.outputs()
        recorded = deployed_model.record_lags(engine, ctx, outputs)
        deployed_model.warn_of_another_version(ctx, outputs)
        check_before_up(ctx, outputs)
        return recorded.get("image", ctx.spec.image)

    def check_image(self, ctx: StackContext, image: str | None) -> None:
        """Check `image`, the one an `up` or `update` of `ctx`'s stack deploys (the stack
        file's, or the deployed one it was caught up to), before the update: a cloud refuses
        one its registry says it lacks (`providers/image_check.py`). Nothing by default."""

    def preview(self, ctx: StackContext) -> dict[str, Any]:
        """What `up` would change. A stack file left behind the deployed stack is previewed
        as `up` would catch it up (`deployed_model.preview_values`), with the same warning,
        but not written: the deployed settings reach the program as `LLMCLOUD_*` variables,
        which it reads over the stack's config, so a preview changes nothing."""
        from dataclasses import replace

        from llmcloud.providers import deployed_model

        engine = self._engine(ctx, "preview")
        caught_up = deployed_model.preview_values(engine, ctx, engine.outputs())
        if caught_up:
            # a second engine: the program's environment is fixed when a stack is opened
            engine = self._engine(replace(ctx, flags={**ctx.flags, **caught_up}), "preview")
        return engine.preview()

    def destroy(self, ctx: StackContext) -> dict[str, Any]:
        return self._engine(ctx, "destroy").destroy()

    def refresh(self, ctx: StackContext) -> dict[str, Any]:
        return self._engine(ctx, "refresh").refresh()

    def outputs(self, ctx: StackContext) -> dict[str, Any]:
        return {"outputs": self._engine(ctx, "outputs").outputs()}

    def status(self, ctx: StackContext) -> dict[str, Any]:
        engine = self._engine(ctx, "outputs")
        outputs = engine.outputs()
        last = engine.last_update()
        return {
            "endpoint": outputs.get("endpoint_url"),
            # a stack never deployed, or destroyed, serves no version (the stack file's
            # was shown, as if it were deployed)
            "model_version": outputs.get("model_version") if deployed(last) else None,
            "last_update": last,
            "outputs": outputs,
        } | _canary_status(outputs)

    def console(self, ctx: StackContext, port: int, host: str = "127.0.0.1") -> None:
        """Serve the console for this cloud stack: its outputs, plan, checks and cost;
        promote and roll back. It logs in with an access token printed on the terminal."""
        self.supports("console")
        from llmcloud.console import serve_stack

        serve_stack(self, ctx, port, host=host)

    def api_key_headers(self, key: str) -> dict[str, str]:
        """How a client presents an API key to this provider's gateway."""
        return {"Authorization": f"Bearer {key}"}

    def endpoint_reports_version(self, ctx: StackContext) -> bool:
        """Whether the endpoint's `GET /v1/models` is the servers' answer, naming the
        version they serve (promote waits for it with `LLMCLOUD_API_KEY`)."""
        return True

    def _refuse_admin_keys(self, ctx: StackContext, name: str, admin: bool) -> None:
        """Admin keys open the local console; a cloud stack has none."""
        if admin:
            raise ConfigError(
                "admin keys exist on the local provider only",
                context="an admin key opens the local console's promote, rollback and keys; "
                        f"on {self.display_name} those are llmcloud commands run with your "
                        f"{self.display_name} credentials",
                hint=f"llmcloud keys create --provider {self.name} --stack {ctx.stack} "
                     f"--name {name}")

    def _required_output(self, ctx: StackContext, outputs: Mapping[str, Any], key: str,
                         what: str) -> str:
        """A stack output an operation needs; `DeploymentError` saying to run `up` without
        it."""
        value = outputs.get(key)
        if not value:
            raise DeploymentError(
                f"stack '{ctx.stack}' has no {what} in its outputs",
                context=f"no `{key}`: the stack was never deployed whole, or before this "
                        "operation came to it",
                hint=f"llmcloud up --provider {self.name} --stack {ctx.stack}")
        return str(value)

    def wait_for_rollout(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                         timeout: float) -> bool:
        """Wait until the servers of the update begun at ``since`` have taken over, by the
        cloud's own account of it; ``outputs`` are the stack's, as that update left them.
        True when the cloud said so, False when this cloud's update already waits (or
        there are no servers to roll, or they cannot be watched). Raises `DeploymentError`
        for a rollout that failed, which `promote` answers by putting the previous version
        back."""
        return False

    def firing_alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, str]:
        """The stack's alerts that fire now that would mean a bad version (5xx rate, latency,
        unhealthy servers): name -> description. NotSupportedError (exit 4) where the cloud
        has no read."""
        raise NotSupportedError(
            f"--bake is not offered by the {self.name} provider",
            context="a bake watches the stack's alerts, which llmcloud cannot read on "
                    f"{self.display_name or self.name} yet",
            hint="promote without --bake")

    def requests_served(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                        until: datetime) -> int | None:
        """How many requests the stack's public endpoint answered (any status) between
        ``since`` and ``until``, from the cloud's metrics of the edge its alerts watch, as
        they stand now (a lower bound: they arrive minutes late); None when it cannot tell.
        Never raises. `bake.bake` reads it after a bake that passed: one that saw no
        request proved nothing. None here: a cloud that does not read it."""
        return None

    def bake_output(self, ctx: StackContext, outputs: Mapping[str, Any], output: str,
                    what: str) -> Any:
        """The stack output `output` that names the `what` a bake reads (each cloud's
        `firing_alerts`); ConfigError (exit 2) for a stack deployed before it existed: a
        bake reads exactly the stack's own alerts, never ones guessed by name."""
        named = outputs.get(output)
        if not named:
            raise ConfigError(
                f"stack '{ctx.stack}' does not name its {what} in its outputs",
                context=f"it was deployed before llmcloud exported `{output}`, which a bake "
                        f"reads: a bake watches exactly the stack's own {what}, never ones "
                        "guessed by name",
                hint=f"llmcloud update --provider {self.name} --stack {ctx.stack} (it adds "
                     "the output), then promote with --bake again")
        return named

    def check_bake(self, ctx: StackContext, seconds: int) -> None:
        """Refuse, before anything runs, a bake of `seconds` that could catch nothing: one
        shorter than `BAKE_MINIMUM_SECONDS`, the time the stack's quickest alert needs to
        fire."""
        least = self.BAKE_MINIMUM_SECONDS
        if 0 < seconds < least:
            raise ConfigError(
                f"--bake {seconds} is shorter than the {least} s the stack's alerts need to "
                "fire",
                context=f"{self.display_name or self.name} evaluates the stack's alerts over "
                        "minutes of data: a shorter bake ends before any of them could fire "
                        "on a bad version, and would report a success it never checked",
                hint=f"--bake {least} or more, or no --bake")

    def promote(self, ctx: StackContext, version: str, *, bake: int = 0,
                min_requests: int = 0, canary: int | None = None) -> dict[str, Any]:
        """Roll the service to `version` (see `rollout.promote`); with `bake` > 0, watch the
        stack's alerts for that many seconds after the rollout, going back if one fires (or
        if fewer than `min_requests` requests were counted). With `canary` (N), bake N
        servers on `version` beside the fleet first, and roll only if they passed
        (`cloud_canary.py`)."""
        from llmcloud.providers import cloud_canary, rollout

        if canary is not None:
            self.check_canary(ctx)
            return cloud_canary.promote(self, ctx, version, canary, bake=bake,
                                        min_requests=min_requests)
        return rollout.promote(self, ctx, version, bake=bake, min_requests=min_requests)

    def rollback(self, ctx: StackContext, *, bake: int = 0, min_requests: int = 0,
                 canary: int | None = None) -> dict[str, Any]:
        """Return to the version served before (see `rollout.rollback`), baked (and through
        a canary) as promote."""
        from llmcloud.providers import cloud_canary, rollout

        if canary is not None:
            self.check_canary(ctx)
            return cloud_canary.promote(self, ctx, None, canary, bake=bake,
                                        min_requests=min_requests)
        return rollout.rollback(self, ctx, bake=bake, min_requests=min_requests)

    def check_canary(self, ctx: StackContext) -> None:
        """Refuse (`NotSupportedError`, exit 4) a canary this stack's flavour does not run,
        before anything runs; `unsupported["promote_canary"]` refuses it on every stack of
        a cloud without one."""
        self.supports("promote_canary")

    def model_store_uri(self, ctx: StackContext) -> str:
        self.supports("model_upload")
        try:
            uri = self._engine(ctx, "outputs").outputs().get("model_store_uri")
        except MissingStackError as exc:
            exc.hint = f"{exc.hint}; or upload to a store you name with --to URI"
            raise
        if not uri:
            raise DeploymentError(
                f"stack '{ctx.stack}' has no model store yet",
                context="its outputs name no model_store_uri",
                hint=f"llmcloud up --provider {self.name} --stack {ctx.stack}, or pass --to URI",
            )
        return str(uri)


class _Engine(PulumiStack):
    """`PulumiStack` whose reads translate the engine's errors too: `stack output
    --show-secrets` and `stack history` decrypt, so a wrong passphrase (or a backend not
    logged in) fails there first, and was "an unexpected error ... a bug in llmcloud"."""

    def outputs(self) -> dict[str, Any]:
        return self._translated(super().outputs)

    def last_update(self) -> dict[str, Any] | None:
        return self._translated(super().last_update)

    def stack_names(self) -> list[str]:
        return self._translated(super().stack_names)

    def images_deployed(self, updates: int = 100) -> set[str]:
        """The images (`llmcloud:image`) the stack's config named at its last `updates`
        successful updates: `pulumi stack history` keeps each update's config."""
        return self._images_in_history(updates, succeeded_only=True)

    def images_tried(self, updates: int = 100) -> set[str]:
        """The images the stack's config named at its last `updates` updates, whatever
        their result: a failed update may have rolled its image out to servers before it
        stopped, and a running one is rolling it out."""
        return self._images_in_history(updates, succeeded_only=False)

    def _images_in_history(self, updates: int, succeeded_only: bool) -> set[str]:
        key = f"{NAMESPACE}:image"
        # (no secrets shown: the image is not one, and a stack's secrets need their key)
        history = self._translated(
            lambda: self._stack.history(page_size=updates, show_secrets=False))
        return {str(entry.config[key].value) for entry in history or ()
                if entry.kind == "update" and key in (entry.config or {})
                and (entry.result == "succeeded" or not succeeded_only)}

    def _translated(self, read: Callable[[], Any]) -> Any:
        from pulumi import automation as auto

        try:
            return read()
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, self.stack_name, self.cloud_login) from None


def drain_warning(spec: DeploymentSpec) -> str:
    """What a drain shorter than the gateway's timeout costs, said at preview and up."""
    drain, timeout = spec.server.drain_timeout_seconds, spec.gateway.timeout_seconds
    return (f"server.drain_timeout_seconds ({drain}) is shorter than gateway.timeout_seconds "
            f"({timeout}): a request still running {drain} s after its server began to "
            "drain (a rolling promote, a scale-in) is cut; set the drain to the timeout")


def deployed(last_update: Mapping[str, Any] | None) -> bool:
    """Whether a stack whose last update is `last_update` holds resources: not before its
    first update, nor after a destroy that succeeded (the Pulumi stack stays, empty)."""
    if last_update is None:
        return False
    return not (last_update.get("kind") == "destroy" and last_update.get("result") == "succeeded")


def refuse_without_stack_file(ctx: StackContext, operation: str) -> None:
    """Refuse to update a deployed stack from a folder without its stack file (a wrong
    folder, a typo in --stack naming another deployed stack): the spec would be the
    provider's defaults, deployed over every setting the stack runs with."""
    from llmcloud.stacks.config import stack_file

    path = stack_file(ctx.project_dir, ctx.stack)
    if not path.exists():
        raise ConfigError(
            f"there is no {path.name} in {ctx.project_dir}",
            context=f"stack '{ctx.stack}' is deployed: without its stack file, {operation} "
                    "would deploy the provider's defaults over its settings",
            hint="run this in the folder that holds its stack file, or check --stack")


def _canary_status(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """`status`'s `canary`, while the stack runs one (`promote --canary`)."""
    from llmcloud.providers.cloud_canary import status_line

    line = status_line(outputs)
    return {"canary": line} if line else {}


def _given(flags: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in flags.items() if value is not None}
