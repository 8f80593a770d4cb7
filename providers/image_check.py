"""The pre-flight check that the image an `up` deploys is in the stack's own registry.

The servers pull their image by digest from the stack's registry. A digest that is not
there (a typo, an image pushed to another stack's registry, one the registry's cleanup
deleted) lets the update start, the new servers fail to pull it, and the rollout fail only
after the health checks' grace periods, many minutes later, then go back. So `up` and
`update` ask the registry first (AWS: `serving_tag.py`, GCP: `gcp/image_check.py`) and
refuse a digest it says is missing, before anything changes. A registry that cannot be
read (credentials without the read permission, the API unreachable) is a note, never a
refusal: a missing read permission must not block deploys.
"""

from __future__ import annotations

from typing import Any

from llmcloud.stacks.errors import DeploymentError


class NotInRegistry(Exception):
    """The registry answered that the image is not there; `answer` is its words."""

    def __init__(self, answer: str):
        super().__init__(answer)
        self.answer = answer


def refusal(image: str, registry: str, answer: str, provider: str,
            stack: str) -> DeploymentError:
    """The refusal (exit 1, nothing deployed) of an `up` of `stack` whose `image` the
    stack's `registry` (its label: "ECR repository") says it does not hold."""
    where = f"--provider {provider} --stack {stack}"
    return DeploymentError(
        f"the image {image} is not in the stack's {registry}",
        context=f"the registry answered {answer}: the digest was never pushed there, was "
                "pushed to another stack's registry, or the registry's cleanup deleted it; "
                "no new server could pull it (a rollout, a scale-out or a repair would "
                "fail only after the health checks' grace periods). Nothing was changed",
        hint=f"push the image to this stack (llmcloud image push {where}), then deploy "
             f"the digest it prints (llmcloud up {where} --image REPO@sha256:...)")


def with_image(ctx: Any, image: str | None) -> Any:
    """`ctx` whose spec names `image`, the one the update deploys: a stack file behind the
    deployed stack names an older one, which its registry's cleanup may have deleted."""
    from dataclasses import replace

    if image == ctx.spec.image:
        return ctx
    return replace(ctx, spec=ctx.spec.model_copy(update={"image": image}))
