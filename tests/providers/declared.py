"""Declare a cloud's stack under Pulumi's mocks (through `stacks.plan.declare`) and find in
it — shared by the AWS, GCP and Azure tests."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import pulumi

from llmcloud.policies import Resource
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.plan import declare
from llmcloud.stacks.spec import DeploymentSpec


def spec_for(provider: str, **sections) -> DeploymentSpec:
    """`provider`'s spec from its defaults and an otherwise empty stack file."""
    return resolve_spec(file_values={"provider": provider, **sections}, environ={},
                        defaults_for=provider_defaults)


@lru_cache(maxsize=48)
def _declared(provider: str, key: str, stack: str) -> tuple[tuple[Resource, ...], str]:
    resources, outputs = declare(spec_for(provider, **json.loads(key)), stack)
    return tuple(resources), json.dumps(outputs)


def declared_for(provider: str, stack: str = "dev", **sections) -> tuple[list[Resource], dict]:
    """Resources (deep copies: tests may mutate them) and outputs of a spec's stack."""
    resources, outputs = _declared(provider, json.dumps(sections, sort_keys=True), stack)
    return copy.deepcopy(list(resources)), json.loads(outputs)


@contextlib.contextmanager
def cloud_options(provider: str, options: dict | None) -> Iterator[None]:
    """The cloud's own knobs (`AwsOptions`, `AzureOptions`) for the block, then none."""
    from llmcloud.providers.aws.service import AwsOptions

    if provider == "aws":
        AwsProvider.options = AwsOptions(**options) if options else None
    elif provider == "azure":
        AzureProvider.options = AzureOptions(**(options or {}))
    try:
        yield
    finally:
        AwsProvider.options = None
        AzureProvider.options = None


def of_type(resources: list[Resource], type_token: str) -> list[Resource]:
    return [r for r in resources if r.type == type_token]


def one(resources: list[Resource], type_token: str, name_part: str = "") -> Resource:
    found = [r for r in of_type(resources, type_token) if name_part in r.name]
    assert len(found) == 1, (type_token, name_part, [r.name for r in found])
    return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Pulumi's mocks with a provider's realistic answers (its `plan` mocks), recording each
    resource's inputs by type for assertions."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.created: dict[str, list[dict]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.setdefault(args.typ, []).append(args.inputs)
        if not args.custom:
            return f"{args.name}-component", {}
        return self.provider.mock_resource(args.typ, args.name, args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return self.provider.mock_invoke(args.token, args.args)


def boot_script(provider: str, resources: list[Resource]) -> str:
    """The servers' boot script a cloud's stack declares (AWS user data, GCP startup script,
    Azure custom data), as text."""
    if provider == "aws":
        template = one(resources, "aws:ec2/launchTemplate:LaunchTemplate")
        return base64.b64decode(template.inputs["userData"]).decode()
    if provider == "gcp":
        template = one(resources, "gcp:compute/instanceTemplate:InstanceTemplate")
        return template.inputs["metadataStartupScript"]
    profile = one(resources, "azure-native:compute:VirtualMachineScaleSet"
                  ).inputs["virtualMachineProfile"]
    return base64.b64decode(profile["osProfile"]["customData"]).decode()
