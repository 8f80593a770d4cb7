"""The check registry: security checks as pure functions over declared resources.

A resource check looks at one resource's inputs (camelCase property names, as Pulumi's
engine, its mocks and its policy packs all see them) and returns a violation message or
None. A stack check looks at every resource at once, for properties that span resources
(a bucket and its public access block). Each cloud registers its checks by Pulumi type
token in its own module of this package (`policies/aws.py`, found by name);
`llmcloud plan`, the tests and the Pulumi
policy pack (`policies/__main__.py`) all run the same functions.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: modules of this package that hold no checks; every other one registers a cloud's checks
_NOT_CHECKS = {"core", "__main__"}


@dataclass(frozen=True)
class Resource:
    """A declared resource: its type token, logical name, inputs and (when known) outputs."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    id: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)
    layer: str | None = None
    #: properties the engine is told to leave alone after creation
    ignore_changes: tuple[str, ...] = ()
    #: names of the resources it is created after
    depends_on: tuple[str, ...] = ()
    #: left in the cloud when the stack is destroyed
    retain_on_delete: bool = False


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one resource."""

    id: str
    resource: str
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """As in `plan --json`."""
        return {"id": self.id, "resource": self.resource, "passed": self.passed,
                "message": self.message}


ResourceFn = Callable[[Mapping[str, Any]], "str | None"]
StackFn = Callable[[list[Resource]], Iterable[CheckResult]]


@dataclass(frozen=True)
class Check:
    """A registered check: `fn` over one resource of `types`, or `stack_fn` over all."""

    id: str
    title: str
    types: tuple[str, ...] = ()
    fn: ResourceFn | None = None
    stack_fn: StackFn | None = None


_CHECKS: dict[str, list[Check]] = {}


def resource_check(check_id: str, title: str, *types: str) -> Callable[[ResourceFn], ResourceFn]:
    """Register `fn(inputs) -> violation message | None` for resources of `types`."""
    def register(fn: ResourceFn) -> ResourceFn:
        _CHECKS.setdefault(check_id, []).append(Check(check_id, title, types, fn=fn))
        return fn
    return register


def stack_check(check_id: str, title: str) -> Callable[[StackFn], StackFn]:
    """Register `fn(resources) -> results` for a property that spans resources."""
    def register(fn: StackFn) -> StackFn:
        _CHECKS.setdefault(check_id, []).append(Check(check_id, title, stack_fn=fn))
        return fn
    return register


def all_checks() -> list[Check]:
    """Every registered check (importing each cloud's check module first)."""
    package = importlib.import_module("llmcloud.policies")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_CHECKS and not module.name.startswith("_"):
            importlib.import_module(f"llmcloud.policies.{module.name}")
    return [check for checks in _CHECKS.values() for check in checks]


def run_checks(resources: list[Resource]) -> list[CheckResult]:
    """Every check's result on every resource it applies to, in a stable order."""
    results: list[CheckResult] = []
    for check in all_checks():
        if check.stack_fn is not None:
            results.extend(check.stack_fn(resources))
            continue
        for resource in resources:
            if resource.type in check.types and check.fn is not None:
                violation = check.fn(resource.inputs)
                results.append(CheckResult(check.id, resource.name, violation is None,
                                           violation or check.title))
    return sorted(results, key=lambda r: (r.id, r.resource))
