"""`llmcloud plan`: the stack's program run under Pulumi's mocks, offline.

No Pulumi engine, no plugins, no credentials: the provider's components declare their
resources into a recording mock monitor, the provider answers every lookup (zones, AMI,
account) with realistic values, and the result is a plan document: what would be created,
by layer, the security checks' verdicts, and the hourly cost against the budget.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
import math
import re
import threading
import warnings
from typing import Any

from llmcloud.policies import Resource, run_checks
from llmcloud.providers.registry import get_provider
from llmcloud.stacks.cost import budget_status, estimate
from llmcloud.stacks.errors import NotSupportedError
from llmcloud.stacks.spec import DeploymentSpec

PROJECT = "llmcloud"
UNKNOWN = "<computed>"
_COMPONENT_PREFIX = "llmcloud:"
#: the order layers are shown in: the way a request travels, then what supports it
LAYERS = ("gateway", "sagemaker_endpoint", "load_balancer", "gpu_pool", "identity",
          "model_store", "registry", "network", "monitoring", "service")


def layer_of(component_type: str) -> str:
    """The layer a component type names (`llmcloud:aws:GpuPool` -> `gpu_pool`)."""
    last = component_type.rsplit(":", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", last).lower()


#: how a secret input or output shows in the plan
SECRET = "[secret]"


def json_safe(value: Any) -> Any:
    """A mock-seen input value as plain JSON (unknowns, assets and resources named)."""
    from pulumi import Archive, Asset
    from pulumi.runtime import rpc

    if isinstance(value, dict):  # keys sorted: the mocks see them in thread-timing order
        return {str(k): json_safe(v) for k, v in sorted(value.items(), key=lambda i: str(i[0]))}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return int(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return UNKNOWN if value == rpc.UNKNOWN else value
    if isinstance(value, (Asset, Archive)):
        return f"<{type(value).__name__}>"
    return str(value)


def redacted(value: Any) -> Any:
    """A `json_safe` value with its secrets shown as `pulumi preview` shows them (the checks
    read the values themselves: a secret in user data is still found)."""
    from pulumi.runtime import rpc

    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return SECRET
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


class _Recorder:
    """What the mocks saw: every registration with its parent, inputs and mocked outputs,
    and the warnings the program logged."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.registrations: list[dict[str, Any]] = []
        self.warnings: list[str] = []


#: where the mocked engine logs the program's `pulumi.log` messages during a plan
PROGRAM_LOGGER = "llmcloud.plan.program"


class _WarningsKept(logging.Handler):
    """Keeps the program's warnings (`pulumi.log.warn`) for the plan document: without an
    engine, Pulumi's mocks log them to a logger, which would print them bare on stderr."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__(logging.WARNING)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with self.recorder.lock:
            if message not in self.recorder.warnings:  # one per resource would repeat it
                self.recorder.warnings.append(message)


def _mocks(provider: Any, spec: DeploymentSpec, recorder: _Recorder) -> Any:
    import pulumi

    class PlanMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            if args.custom:
                rid, state = provider.mock_resource(args.typ, args.name, args.inputs,
                                                    region=spec.region)
            else:
                rid, state = f"{args.name}-component", {}
            urn, parent, ignore_changes, dependencies, retained = getattr(
                recorder.local, "current", ("", "", [], [], False))
            with recorder.lock:
                recorder.registrations.append({
                    "urn": urn, "parent": parent, "type": args.typ, "name": args.name,
                    "ignore_changes": ignore_changes, "dependencies": dependencies,
                    "retain_on_delete": retained,
                    "custom": bool(args.custom), "id": rid, "inputs": args.inputs,
                    "outputs": state})
            return rid, state

        def call(self, args: pulumi.runtime.MockCallArgs):
            return provider.mock_invoke(args.token, args.args, region=spec.region)

    return PlanMocks()


def _monitor(mocks: Any, recorder: _Recorder) -> Any:
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        def RegisterResource(self, request):  # noqa: N802 - the gRPC method's name
            urn = self.make_urn(request.parent, request.type, request.name)
            recorder.local.current = (urn, request.parent, list(request.ignoreChanges),
                                      list(request.dependencies),
                                      bool(request.retainOnDelete))
            try:
                return super().RegisterResource(request)
            finally:
                recorder.local.current = ("", "", [], [], False)

    return RecordingMonitor(mocks)


def ensure_event_loop() -> None:
    """Give this thread an open event loop: Pulumi's runtime awaits on the current one, and
    `asyncio.run()` earlier in the process (a server, a client) leaves none behind."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def _declare(provider: Any, spec: DeploymentSpec, stack: str,
             recorder: _Recorder, preview: bool = True) -> dict[str, Any]:
    import pulumi
    from pulumi.runtime.mocks import set_mocks
    from pulumi.runtime.settings import ROOT, SETTINGS
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    ensure_event_loop()
    mocks = _mocks(provider, spec, recorder)
    ROOT.set(None)
    set_mocks(mocks, project=PROJECT, stack=stack, preview=preview,
              logger=logging.getLogger(PROGRAM_LOGGER), monitor=_monitor(mocks, recorder))
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    outputs: dict[str, Any] = {}

    def program() -> None:
        declared = provider.build_service(spec, stack)
        values = _sync_await(pulumi.Output.from_input(dict(declared)).future())
        outputs.update(values or {})

    _sync_await(run_pulumi_func(program))
    # a warning about a resource is logged once its URN resolves, by a task Pulumi does not
    # wait for: let those end, or the plan could miss one
    import asyncio

    logging_tasks = [task for task in asyncio.all_tasks(asyncio.get_event_loop())
                     if getattr(task.get_coro(), "__name__", "") == "do_log"]
    if logging_tasks:  # (bounded: a plan never hangs on a warning)
        _sync_await(asyncio.wait(logging_tasks, timeout=5))
    return outputs


_LEAN = threading.Lock()  # what _lean_runtime changes is process-wide: one plan at a time


@contextlib.contextmanager
def _lean_runtime() -> Any:
    """Pulumi's runtime without the work a plan throws away, for as long as the plan runs.

    - Source positions: for every resource Pulumi walks the Python stack to tell the engine
      where it was declared; the mock monitor discards them (about a tenth of a plan).
    - The cycle collector: a plan allocates a few thousand short-lived objects on top of a
      heap of a million that the pulumi-aws modules brought; full collections over that heap
      cost more than the plan's own work. Reference counting still frees what it can; the
      collector is switched back on, as it was, when the plan ends.

    Plans in other threads of the process wait for this one to end.
    """
    from pulumi.runtime import resource
    from pulumi.runtime.proto import source_pb2

    with _LEAN:
        saved_trace = getattr(resource, "_get_stack_trace", None)
        collecting = gc.isenabled()
        if saved_trace is not None:
            resource._get_stack_trace = source_pb2.StackTrace
        gc.disable()
        try:
            yield
        finally:
            if collecting:
                gc.enable()
            if saved_trace is not None:
                resource._get_stack_trace = saved_trace


def declare(spec: DeploymentSpec, stack: str,
            preview: bool = True) -> tuple[list[Resource], dict[str, Any]]:
    """Run the provider's program under the mocks: the declared cloud resources (with their
    mocked ids and outputs, and their layer) and the stack outputs. ``preview=False`` runs
    it as a real update would (tests of what only an update declares)."""
    resources, outputs, _ = declare_with_warnings(spec, stack, preview)
    return resources, outputs


def declare_with_warnings(spec: DeploymentSpec, stack: str, preview: bool = True,
                          ) -> tuple[list[Resource], dict[str, Any], list[str]]:
    """`declare`, and the warnings the program logged (`pulumi.log.warn`), in order, each
    once: what a real preview shows among Pulumi's diagnostics."""
    provider = get_provider(spec.provider)
    provider.supports("plan")
    provider.require_sdk()
    recorder = _Recorder()
    program_log = logging.getLogger(PROGRAM_LOGGER)
    kept = _WarningsKept(recorder)
    with warnings.catch_warnings(), _lean_runtime():
        # pulumi-aws warns about its own deprecated classes as it loads a module
        warnings.simplefilter("ignore", DeprecationWarning)
        program_log.addHandler(kept)
        try:
            outputs = contextvars.copy_context().run(_declare, provider, spec, stack,
                                                     recorder, preview)
        finally:
            program_log.removeHandler(kept)
    return _resources(recorder.registrations), json_safe(outputs), list(recorder.warnings)


def run_plan(spec: DeploymentSpec, stack: str) -> dict[str, Any]:
    """The plan document of `spec`'s service on stack `stack` (see DESIGN.md, `plan --json`).

    Raises `NotSupportedError` when the provider offers no plan and `MissingToolError` when
    its SDK extra is missing. Safe to call repeatedly: Pulumi's global settings are changed
    only inside a copied context, so tests that set their own mocks are unaffected.
    """
    resources, outputs, program_warnings = declare_with_warnings(spec, stack)
    provider = get_provider(spec.provider)
    # the provider's own, of what only a plan warns of (Azure: a region it does not know)
    spec_warnings = getattr(provider, "plan_warnings", lambda _spec: [])(spec)
    sheet = provider.prices(spec)
    if sheet is None:
        raise NotSupportedError(f"the {spec.provider} provider has no price table")
    cost = estimate(sheet)
    document = {
        "provider": spec.provider,
        "stack": stack,
        "resources": [{"type": r.type, "name": r.name, "layer": r.layer,
                       "inputs": redacted(dict(r.inputs))} for r in resources],
        "checks": [result.to_dict() for result in run_checks(resources)],
        "cost": cost,
        "budget": budget_status(cost, spec.budget.max_hourly_usd),
        "outputs": redacted(outputs),
        "warnings": [*spec_warnings, *program_warnings],
    }
    fit = model_fit(spec)
    if fit is not None:  # known offline only for a local folder on a priced instance type
        document["model_fit"] = fit
    return document


def model_fit(spec: DeploymentSpec) -> dict[str, Any] | None:
    """Whether `model.source`, a local folder, fits the GPUs of the spec's instance type
    (`providers/model_fit.py`); None where that is not known offline (a hub id, a store
    URI, an instance type not priced)."""
    from llmcloud.providers.model_fit import fit_for, local_folder, measure_folder

    folder = local_folder(spec.model.source)
    if folder is None:
        return None
    fit = fit_for(spec, measure_folder(folder, spec.server.lora_modules))
    return fit.to_dict() if fit is not None else None


def _resources(registrations: list[dict[str, Any]]) -> list[Resource]:
    by_urn = {r["urn"]: r for r in registrations if r["urn"]}

    def layer(record: dict[str, Any]) -> str:
        parent = by_urn.get(record["parent"])
        while parent is not None:
            if not parent["custom"] and parent["type"].startswith(_COMPONENT_PREFIX) and (
                    not parent["type"].endswith(":Service")):
                return layer_of(parent["type"])
            parent = by_urn.get(parent["parent"])
        return "service"

    declared = []
    for record in registrations:
        if not record["custom"] or record["type"].startswith("pulumi:providers:"):
            continue
        declared.append(Resource(record["type"], record["name"], json_safe(record["inputs"]),
                                 id=record["id"], outputs=json_safe(record["outputs"]),
                                 layer=layer(record),
                                 ignore_changes=tuple(record["ignore_changes"]),
                                 retain_on_delete=record["retain_on_delete"],
                                 depends_on=tuple(by_urn[d]["name"] for d in
                                                  record["dependencies"] if d in by_urn)))
    # registration order depends on thread timing; the plan's order must not
    return sorted(declared, key=lambda r: (
        LAYERS.index(r.layer) if r.layer in LAYERS else len(LAYERS), r.layer, r.type, r.name))
