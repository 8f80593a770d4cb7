"""The URNs a stack's program declares, as the Pulumi engine names them, each with the older
URNs its `aliases` option maps onto it — recorded under Pulumi's mocks (through
`stacks.plan.declare`), for the guard against replacing users' resources on upgrade
(`test_urn_upgrade_guard.py`).

Pulumi's mock monitor names a resource after its parent's last type only, and keeps the root
stack's type in its children's URNs; the engine chains every ancestor's type and leaves the
root stack out (`resource.NewURN` in pulumi/pulumi). The engine's names are the ones a
deployed stack keeps in its state, so they are rebuilt here from each registration's parent.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ROOT_STACK = "pulumi:pulumi:Stack"
#: the providers Pulumi makes for resources that name none: named after the SDK's version
DEFAULT_PROVIDER = "default"


@dataclass
class _Registration:
    mock_urn: str
    type: str
    name: str
    parent: str  # the parent's mock URN ("" for the root stack)
    custom: bool
    aliases: list[Any] = field(default_factory=list)  # alias_pb2.Alias
    alias_urns: list[str] = field(default_factory=list)  # the pre-alias-spec form
    inputs: dict = field(default_factory=dict)


def qualified_type(urn: str) -> str:
    """The `parent$child` type chain of a URN."""
    return urn.split("::", 3)[2]


def urn_name(urn: str) -> str:
    return urn.split("::", 3)[3]


def engine_urn(stack: str, project: str, parent: str | None, type_: str, name: str) -> str:
    """The URN the engine gives a resource of `type_` named `name` under `parent` (an engine
    URN; None or the root stack's for a top-level resource)."""
    if parent and qualified_type(parent) != ROOT_STACK:
        type_ = f"{qualified_type(parent)}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


def _stack_and_project(urn: str) -> tuple[str, str]:
    head = urn.split("::", 2)
    return head[0].removeprefix("urn:pulumi:"), head[1]


def _inherited(child_name: str, child_type: str, parent_name: str, parent_alias: str) -> str:
    """A child's alias under one of its parent's aliases, as the engine derives it: a child
    named after its parent (`{parent}-x`) is renamed with it."""
    name = child_name
    if child_name.startswith(parent_name):
        name = urn_name(parent_alias) + child_name[len(parent_name):]
    stack, project = _stack_and_project(parent_alias)
    return engine_urn(stack, project, parent_alias, child_type, name)


class _Urns:
    """Engine URNs and alias URNs of the recorded registrations."""

    def __init__(self, registrations: list[_Registration]) -> None:
        self.by_mock = {r.mock_urn: r for r in registrations}
        self.urns: dict[str, str] = {}
        self.aliases: dict[str, list[str]] = {}

    def urn(self, mock_urn: str) -> str:
        """The engine URN of a registration (or `mock_urn` itself when it is none: an alias
        may name an old URN that no resource of this run has)."""
        record = self.by_mock.get(mock_urn)
        if record is None:
            return mock_urn
        if mock_urn not in self.urns:
            stack, project = _stack_and_project(mock_urn)
            parent = self.urn(record.parent) if record.parent else None
            self.urns[mock_urn] = engine_urn(stack, project, parent, record.type, record.name)
        return self.urns[mock_urn]

    def alias_urns(self, mock_urn: str) -> list[str]:
        """Every older URN the engine takes for this resource: its own aliases, and those its
        parent's aliases give it (with each of its own)."""
        if mock_urn in self.aliases:
            return self.aliases[mock_urn]
        record = self.by_mock[mock_urn]
        stack, project = _stack_and_project(mock_urn)
        own = [self.urn(u) for u in record.alias_urns]
        for alias in record.aliases:
            if alias.WhichOneof("alias") == "urn":
                own.append(self.urn(alias.urn))
                continue
            spec = alias.spec
            if spec.noParent:
                parent = None
            elif spec.parentUrn:
                parent = self.urn(spec.parentUrn)
            else:
                parent = self.urn(record.parent) if record.parent else None
            own.append(engine_urn(spec.stack or stack, spec.project or project, parent,
                                  spec.type or record.type, spec.name or record.name))
        found = list(own)
        parent_record = self.by_mock.get(record.parent)
        if parent_record is not None:
            for parent_alias in self.alias_urns(record.parent):
                found.append(_inherited(record.name, record.type, parent_record.name,
                                        parent_alias))
                found += [_inherited(urn_name(u), qualified_type(u).rsplit("$", 1)[-1],
                                     parent_record.name, parent_alias) for u in own]
        self.aliases[mock_urn] = sorted(set(found))
        return self.aliases[mock_urn]


def _kept(record: _Registration) -> bool:
    """Whether a registration is one a stack's state keeps under its own name: not the root
    stack, not a default provider (named after the SDK's version: an SDK upgrade renames it,
    and the engine moves resources onto the new one without replacing them)."""
    if record.type == ROOT_STACK:
        return False
    return not (record.type.startswith("pulumi:providers:")
                and record.name.startswith(DEFAULT_PROVIDER))


#: input keys that name a resource in its cloud, beyond `name`, `namePrefix` and those
#: named after its type (`dashboardName`, `bucketPrefix`, `accountId`, `subnetName`, ...)
NAME_KEYS = {"storageaccount": {"accountname"}, "apimanagementservice": {"servicename"},
             "virtualmachinescaleset": {"vmscalesetname"}, "blobcontainer": {"containername"},
             "metricalert": {"rulename"}, "api": {"apiid"}}


def cloud_names(type_: str, inputs: dict) -> dict[str, str]:
    """The names a resource's inputs give it in its cloud, where they are known before it
    exists: most clouds replace a resource to rename it (a bucket, a dashboard, a network)."""
    from pulumi.runtime import rpc

    kind = type_.rsplit(":", 1)[-1].lower()
    keys = {"name", "nameprefix", "resourcename", kind, f"{kind}name", f"{kind}prefix",
            f"{kind}id", *NAME_KEYS.get(kind, ())}
    return {k: v for k, v in sorted(inputs.items())
            if k.lower() in keys and isinstance(v, str) and v != rpc.UNKNOWN}


def urns_with_aliases(registrations: list[_Registration]) -> dict[str, dict]:
    """Each kept registration's engine URN, with its alias URNs (`aliases`) and the names
    its inputs give it in its cloud (`names`)."""
    urns = _Urns(registrations)
    if len(urns.by_mock) != len(registrations):  # the mocks' short URNs collided: say so
        raise AssertionError("two registrations share a mock URN: their engine URNs are "
                             "ambiguous")
    return {urns.urn(r.mock_urn): {"aliases": urns.alias_urns(r.mock_urn),
                                   "names": cloud_names(r.type, r.inputs) if r.custom else {}}
            for r in registrations if _kept(r)}


def record_urns(spec: Any, stack: str) -> dict[str, dict]:
    """`urns_with_aliases` of a spec's stack, declared as `plan` declares it."""
    from llmcloud.stacks.plan import declare

    registrations: list[_Registration] = []
    with recording(registrations):
        declare(spec, stack)
    return urns_with_aliases(registrations)


@contextlib.contextmanager
def recording(registrations: list[_Registration]) -> Iterator[None]:
    """While it lasts, `stacks.plan.declare` appends each registration, with its aliases as
    the SDK sent them, to `registrations`."""
    from pulumi.runtime import rpc

    from llmcloud.stacks import plan

    original = plan._monitor
    lock = threading.Lock()

    def monitor(mocks: Any, recorder: Any) -> Any:
        built = original(mocks, recorder)
        register = built.RegisterResource

        def register_and_record(request: Any) -> Any:
            response = register(request)  # it leaves this thread an event loop
            inputs = rpc.deserialize_properties(request.object) or {}
            with lock:  # before the answer: a child's registration waits for its parent's
                registrations.append(_Registration(
                    response.urn, request.type, request.name, request.parent,
                    bool(request.custom), list(request.aliases), list(request.aliasURNs),
                    dict(inputs)))
            return response

        built.RegisterResource = register_and_record
        return built

    plan._monitor = monitor
    try:
        yield
    finally:
        plan._monitor = original
