"""Check a declared resource's inputs against the installed Pulumi SDK's input types: every
key (recursively) must be a wire name the SDK knows, and on azure-native every enum-typed
string one of the SDK's enum values.

Pulumi's Python SDK camelCases the keys it knows and passes unknown ones through as
written, so under the mocks a misspelled nested key (`checkpoint_delayy`, `stratgy`) reaches
the recorded inputs unnoticed; the real provider rejects or ignores it at the first
`pulumi up`.
"""

from __future__ import annotations

import collections.abc
import difflib
import enum
import importlib
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi
from pulumi._types import _raw_return_hints, is_input_type
from pulumi.runtime import rpc

from llmcloud.policies import Resource
from llmcloud.stacks.plan import SECRET, UNKNOWN

#: the Python package of each resource package a stack declares in
SDKS = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "azure-native": "pulumi_azure_native",
        "tls": "pulumi_tls"}
#: packages whose enum-typed strings are checked too: azure-native's enums come from the
#: API's own specification, while AWS's (instance types, Lambda runtimes) are convenience
#: lists that lag the cloud, so a string missing there is no mistake
ENUM_CHECKED = {"azure-native"}

#: enum-typed properties whose SDK enum is another one of the same name, with the values the
#: cloud's API takes there. pulumi-azure-native's `monitor.ConditionOperator` holds a
#: filter's `eq`/`gt`/...; a scheduled query rule's `criteria.allOf[].operator` takes the
#: REST API's `ConditionOperator` (learn.microsoft.com, @azure/arm-monitor
#: KnownConditionOperator: Equals, GreaterThan, GreaterThanOrEqual, LessThan,
#: LessThanOrEqual, GreaterOrLessThan)
ENUM_CLASHES = {
    ("pulumi_azure_native.monitor", "ConditionArgs", "operator"): (
        "Equals", "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual",
        "GreaterOrLessThan"),
}
#: enum values a cloud takes that the SDK's enum (from the API version the SDK defaults to)
#: does not list yet. API Management's Premium v2 tier came after API version 2024-05-01,
#: pulumi-azure-native 3.x's default for `ApiManagementService`; Microsoft says the v2
#: tiers take "API version 2024-05-01 or later" (learn.microsoft.com,
#: api-management/v2-service-tiers-overview) and the SKU name is an extensible enum; not
#: yet proven against a real deployment
ENUM_AHEAD_OF_SDK = {
    ("pulumi_azure_native.apimanagement", "ApiManagementServiceSkuPropertiesArgs", "name"): (
        "PremiumV2",),
}

# what typing.get_origin gives for Mapping[...]/Dict[...] and Sequence[...]/List[...]
_MAPPINGS = {dict, collections.abc.Mapping}
_SEQUENCES = {list, tuple, collections.abc.Sequence}


@dataclass
class Findings:
    """What a check found wrong (readable lines) and how much it looked at."""

    problems: list[str] = field(default_factory=list)
    resources: int = 0
    keys: int = 0
    #: of those, keys inside nested input types (the part a misspelling hides best in)
    nested: int = 0
    enums: int = 0


@cache
def args_type(type_token: str) -> type:
    """The SDK's input type (`GroupArgs`) of a resource type token
    (`aws:autoscaling/group:Group`), found through the resource modules the SDK registers
    with Pulumi's runtime (the registry `pulumi up` rehydrates resources from)."""
    package, module_name, class_name = type_token.split(":")
    if package not in SDKS:
        raise LookupError(f"{type_token}: no SDK known for package {package!r} (add it to SDKS)")
    importlib.import_module(SDKS[package])  # its __init__ registers the modules
    module = rpc.get_resource_module(package, module_name, "")
    # `mod_info` is the SDK's own registration record (its `_utilities.Module`)
    info = getattr(module, "mod_info", None)
    if info is None or info["classes"].get(type_token) != class_name:
        raise LookupError(f"{type_token}: the {SDKS[package]} SDK registers no such resource")
    resource_class = getattr(importlib.import_module(info["fqn"]), class_name)
    # the input type defined in the resource's own file: by name it may be `GroupArgs` or,
    # where a nested input type took that name, `NatGatewayInitArgs` (the file imports
    # that nested one too, so the name alone may point at it)
    module = sys.modules[resource_class.__module__]
    found = [value for name in getattr(module, "__all__", ())
             if isinstance(value := getattr(module, name), type) and is_input_type(value)
             and value.__module__ == module.__name__]
    if len(found) != 1:
        raise LookupError(f"{type_token}: {module.__name__} defines input types {found}, "
                          "not one")
    args = found[0]
    return args


def _members(hint: Any) -> list[Any]:
    """The shapes an annotation allows, with Optional, Input (Awaitable, Output) and Union
    peeled off: input types, enums, Sequence[...], Mapping[...], Any and scalars."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(hint) for m in _members(arg)]
    if origin is collections.abc.Awaitable:
        return _members(typing.get_args(hint)[0])
    # Output[T] always comes beside T itself in Input[T]; resolved with T=None it says nothing
    if hint is type(None) or origin is pulumi.Output or hint is pulumi.Output:
        return []
    return [hint]


def _wire_names(input_type: type) -> dict[str, Any]:
    """An input type's wire (camelCase) names and their annotations."""
    return _raw_return_hints(input_type)


def _closest(key: str, known: collections.abc.Iterable[str]) -> str:
    known = list(known)
    camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key)
    if camel != key and camel in known:
        return f"{camel!r} (the snake_case key was not translated)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(key.lower(), [k.lower() for k in known], n=1,
                                          cutoff=0.5)
        close = [k for k in known if close and k.lower() == close[0]]
    return repr(close[0]) if close else f"none close; known: {sorted(known)}"


class _Walker:
    def __init__(self, resource: Resource, findings: Findings, enums: bool) -> None:
        self.resource = resource
        self.findings = findings
        self.enums = enums

    def problem(self, path: str, text: str) -> None:
        self.findings.problems.append(
            f"{self.resource.type} {self.resource.name!r} at {path}: {text}")

    def value(self, value: Any, hint: Any, path: str, owner: tuple[str, ...] = ()) -> None:
        """Check `value` against annotation `hint`; `owner` is the (package, input type,
        property) it sits in."""
        self.shaped(value, _members(hint), path, owner)

    def shaped(self, value: Any, members: list[Any], path: str,
               owner: tuple[str, ...] = ()) -> None:
        if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            value = value.get("value")
        # unknowns, secrets shown redacted and nulls carry nothing to check
        if value is None or value in (UNKNOWN, SECRET):
            return
        if any(m is Any or m is object for m in members):
            return  # JSON-typed (policy documents, dashboard bodies): free form
        if isinstance(value, dict):
            self.mapping(value, members, path)
        elif isinstance(value, list):
            elements = [e for m in members if typing.get_origin(m) in _SEQUENCES
                        for e in _members(typing.get_args(m)[0])]
            if not elements:
                self.problem(path, f"a list where the SDK expects {members}")
                return
            for i, item in enumerate(value):
                self.shaped(item, elements, f"{path}[{i}]", owner)
        elif isinstance(value, str) and self.enums:
            self.enum(value, members, path, owner)

    def mapping(self, value: dict, members: list[Any], path: str) -> None:
        shapes = [m for m in members if isinstance(m, type) and is_input_type(m)]
        if shapes:
            self.object(value, shapes, path)
            return
        maps = [m for m in members if typing.get_origin(m) in _MAPPINGS or m is dict]
        if not maps:
            self.problem(path, f"an object where the SDK expects {members}")
            return
        # free keys (tags, labels, metadata); their values may still be typed objects
        values = [v for m in maps if len(typing.get_args(m)) == 2
                  for v in _members(typing.get_args(m)[1])]
        if values:
            for key, item in value.items():
                self.shaped(item, values, f"{path}.{key}")

    def object(self, value: dict, shapes: list[type], path: str) -> None:
        # a union of input types (azure-native's discriminated ones): the best fitting one
        shape = max(shapes, key=lambda s: len(value.keys() & _wire_names(s).keys()))
        names = _wire_names(shape)
        for key, item in value.items():
            self.findings.keys += 1
            self.findings.nested += path != "inputs"
            if key not in names:
                self.problem(f"{path}.{key}", f"unknown key {key!r} for {shape.__name__}; "
                                              f"closest known: {_closest(key, names)}")
                continue
            package = shape.__module__.rsplit(".", 1)[0]
            self.value(item, names[key], f"{path}.{key}", (package, shape.__name__, key))

    def enum(self, value: str, members: list[Any], path: str, owner: tuple[str, ...]) -> None:
        enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
        if not enums:
            return
        self.findings.enums += 1
        allowed = list(ENUM_CLASHES.get(owner, ()))
        if not allowed:
            allowed = list(dict.fromkeys(str(e.value) for m in enums for e in m))
            allowed += ENUM_AHEAD_OF_SDK.get(owner, ())
        if value not in allowed:
            names = "/".join(dict.fromkeys(m.__name__ for m in enums))
            self.problem(path, f"{value!r} is no {names} value; closest: "
                               f"{_closest(value, allowed)}")


def check_inputs(resources: collections.abc.Iterable[Resource],
                 findings: Findings | None = None) -> Findings:
    """Every resource's inputs checked against its SDK input type (see the module's doc)."""
    findings = findings or Findings()
    for resource in resources:
        shape = args_type(resource.type)
        walker = _Walker(resource, findings, resource.type.split(":")[0] in ENUM_CHECKED)
        findings.resources += 1
        walker.object(dict(resource.inputs), [shape], "inputs")
    return findings
