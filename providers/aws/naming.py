"""Names of the AWS resources: short, deterministic, within each service's length limit."""

from __future__ import annotations

import hashlib

from llmcloud.providers.naming import (  # noqa: F401 - re-exported
    base_name,
    fit,
    model_key_prefix,
    model_prefix,
    slug,
)

#: AWS length limits of the names llmcloud sets explicitly
LIMITS = {"alb": 32, "target_group": 32, "repository": 256, "log_group": 512, "role": 64,
          "sagemaker": 63}


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
    """The stack's server group: `promote` watches its instance refreshes by this name."""
    return f"{base_name(stack)}-gpu"


#: the REST API's stage: the endpoint is `https://<api>.execute-api.<region>.amazonaws.com/api`
STAGE = "api"
#: the longest a REST API streams a response (its integration timeout's ceiling), in ms
STREAM_TIMEOUT_MAX_MS = 900_000
