"""Declare the AWS stack under Pulumi's mocks (through `stacks.plan.declare`) and find in it."""

from __future__ import annotations

from llmcloud.policies import Resource
from llmcloud.stacks.spec import DeploymentSpec
from tests.providers.declared import declared_for, of_type, one, spec_for  # noqa: F401


def aws_spec(**sections) -> DeploymentSpec:
    """The aws spec from the provider's defaults and an otherwise empty stack file."""
    return spec_for("aws", **sections)


def declared(stack: str = "dev", **sections) -> tuple[list[Resource], dict]:
    """Resources (deep copies: tests may mutate them) and outputs of a spec's stack."""
    return declared_for("aws", stack, **sections)
