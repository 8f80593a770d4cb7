"""Names of the AWS resources: short, deterministic, within each service's length limit."""

from __future__ import annotations

import hashlib

from llmcloud.providers.naming import (  # noqa: F401 - re-exported
    AUTO_SUFFIX,
    base_name,
    fit,
    model_key_prefix,
    model_prefix,
    slug,
)

#: AWS length limits of the names llmcloud sets explicitly
LIMITS = {"alb": 32, "target_group": 32, "repository": 256, "log_group": 512, "role": 64,
          "sagemaker": 63, "lambda": 64, "launch_template": 128, "role_policy": 128,
          "statement": 100}
#: what Terraform appends to a `name_prefix` (a 26-character unique id)
PREFIX_SUFFIX = 26


def physical_name(stack: str, part: str, kind: str) -> str:
    """An explicit AWS name for `part` of `stack`, fitted to the limit of `kind`."""
    return fit(f"{base_name(stack)}-{slug(part)}", LIMITS[kind])


def repository_name(stack: str, model_name: str) -> str:
    """The ECR repository of the stack's inference image (`llm-dev/qwen2-5`)."""
    return fit(f"{base_name(stack)}/{slug(model_name)}-server", LIMITS["repository"])


def log_group_name(stack: str) -> str:
    """The CloudWatch log group the servers write to."""
    return fit(f"/llmcloud/{slug(stack)}/server", LIMITS["log_group"])


def endpoint_name(stack: str) -> str:
    """The SageMaker endpoint of a stack: stable across versions (the gateway calls it)."""
    return physical_name(stack, "endpoint", "sagemaker")


def fingerprint(*parts: object) -> str:
    """A short hash of what a resource is made of: equal inputs, equal names."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:10]


def versioned_name(stack: str, part: str, digest: str, kind: str = "sagemaker") -> str:
    """A name that changes with what it names (`llm-dev-model-<digest>`): SageMaker models
    and endpoint configurations are immutable, so a new version is a new, differently named
    resource, created before the old one is deleted."""
    return fit(f"{physical_name(stack, part, kind)[: LIMITS[kind] - 11]}-{digest[:10]}",
               LIMITS[kind])


def asg_name(stack: str) -> str:
    """The stack's server group: `promote` watches its instance refreshes by this name.
    Its launch template is named `<asg name>-` + a 26-character id, within 128."""
    return fit(f"{base_name(stack)}-gpu", LIMITS["launch_template"] - PREFIX_SUFFIX - 1)


def canary_asg_name(stack: str) -> str:
    """The server group of a `promote --canary`'s canary, beside `asg_name`'s."""
    return fit(f"{base_name(stack)}-canary", LIMITS["launch_template"] - PREFIX_SUFFIX - 1)


def function_name(api_name: str, part: str) -> str:
    """A Lambda function's name (at most 64 characters): `<api name>-<part>`."""
    return fit(f"{api_name}-{slug(part)}", LIMITS["lambda"])


def name_prefix_for(logical_name: str, kind: str) -> str | None:
    """The `name_prefix` of a resource whose logical name is too long for Pulumi to name it
    after (Pulumi refuses a name over the limit of `kind` with its random suffix), else
    None: Pulumi names it, as it always has. The name keeps a unique suffix either way:
    IAM names are account-wide, and two regions' stacks of one name must not share one."""
    if len(logical_name) + AUTO_SUFFIX <= LIMITS[kind]:
        return None
    return fit(logical_name, LIMITS[kind] - PREFIX_SUFFIX - 1) + "-"


def dashboard_name(base: str, region: str) -> str:
    """A CloudWatch dashboard's name: dashboards are account-wide, not regional, so the
    name carries the region (the same stack in two regions would share one dashboard)."""
    return f"{base}-{region}"


#: the REST API's stage: the endpoint is `https://<api>.execute-api.<region>.amazonaws.com/api`
STAGE = "api"
#: the longest a REST API streams a response (its integration timeout's ceiling), in ms
STREAM_TIMEOUT_MAX_MS = 900_000
