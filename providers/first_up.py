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


def next_step(provider: str, stack: str, model_version: str | None = None) -> str:
    """What to run after the registry-only `up`: each command in parentheses, as typed.

    `model upload` needs `--version`, and the servers load the stack's `model.version`
    from the store: `model_version` names it (unset, a `VERSION` placeholder stands)."""
    where = f"--provider {provider} --stack {stack}"
    version = model_version or "VERSION"
    return (f"build the server image (llmcloud image build) and push it (llmcloud image push "
            f"{where}), upload the model (llmcloud model upload FOLDER --version {version} "
            f"{where}), then deploy the image it pinned (llmcloud up {where} "
            "--image REPO@sha256:...)")
