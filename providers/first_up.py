"""A cloud stack's first `up`, before any image is pushed: only the registry and the model
store (what `image push` and `model upload` need) are created.

The servers pull their image by digest from the stack's own registry, which only an `up`
creates; `up` needs the image's digest. So an `up` without an image creates the registry
and the store, and says what to run next: push the image, upload the model, `up` again.
`plan` and `preview` still show the whole service, with a placeholder digest.
"""

from __future__ import annotations

from llmcloud.stacks.spec import DeploymentSpec


def registry_only(spec: DeploymentSpec) -> bool:
    """Whether this run of the program declares only the registry and the model store: a
    real update (not `plan` or `preview`) of a stack with no image yet."""
    import pulumi

    return not spec.image and not pulumi.runtime.is_dry_run()


def next_step(provider: str, stack: str) -> str:
    """What to run after the registry-only `up`."""
    where = f"--provider {provider} --stack {stack}"
    return (f"push the server image (llmcloud image push {where}), upload the model "
            f"(llmcloud model upload FOLDER {where}), then run llmcloud up {where} with "
            "--image set to the pinned image it printed")
