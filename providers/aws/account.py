"""The AWS account and region a stack deploys into, looked up once per stack run.

Every component needs them (key policies, ARNs). Asked by each component, they were two
round trips to AWS per component on every `pulumi up`, and two blocking invokes per
component in every `plan`; now the first component to ask looks them up for the stack's
explicit provider, and the others reuse the answer.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

#: id(provider) -> (the provider, kept alive so its id is not reused; account id; region)
_ANSWERS: dict[int, tuple[Any, str, str]] = {}


def account_and_region(resource: pulumi.Resource) -> tuple[str, str]:
    """(account id, region) as seen through `resource`'s AWS provider."""
    provider = resource.get_provider("aws:index/getRegion:getRegion")
    known = _ANSWERS.get(id(provider)) if provider is not None else None
    if known is not None and known[0] is provider:
        return known[1], known[2]
    invoke = pulumi.InvokeOptions(parent=resource)
    account = aws.get_caller_identity(opts=invoke).account_id
    region = aws.get_region(opts=invoke).region
    if provider is not None:  # without an explicit provider there is nothing safe to key on
        _ANSWERS[id(provider)] = (provider, account, region)
    return account, region
