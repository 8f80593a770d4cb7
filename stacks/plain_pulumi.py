"""What a plain `pulumi up` of a cloud stack skips, said by the program itself.

`llmcloud up`, `update` and `destroy` do steps around the Pulumi program: checks before
the update, fixes after it, clean-ups after a destroy (`providers/cloud.py`, each cloud's
`provider.py`). A platform team's plain `pulumi up` runs the program alone. The automation
layer marks its runs with `MARKER` in the program's environment (`workspace_env`); a run
without it keeps the one check the program can make by itself, the budget gate, and warns
once of the rest, naming the command that does each. llmcloud's own runs are unchanged.
The per-step table, with its commands: docs/aws.md, docs/gcp.md, docs/azure.md, "Plain
`pulumi up`".
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from llmcloud.providers.naming import base_name, names_its_own, slug
from llmcloud.stacks.spec import DeploymentSpec

#: set to "1" in the program's environment by llmcloud's runs (its value, not its presence,
#: counts: an empty or "0" value is a plain run)
MARKER = "LLMCLOUD_RUN_BY_CLI"

#: per cloud: the steps `llmcloud up` takes around the program that a plain run skips
SKIPPED = {
    "aws": (
        "the GPU quota check",
        "the check that the image is in the stack's ECR repository",
        "the image's serving tag (without it the repository's lifecycle policy deletes the "
        "image in service once 50 newer images are pushed, and new servers cannot pull it)",
        "catching this stack file up to a model version or image deployed since by a "
        "promote, rollback or up elsewhere (without it this update rolls the servers back "
        "to the file's)",
        "the check that the stored model version fits the GPUs",
        "after the update: the stack's KMS key and log retention on API Gateway's "
        "execution-log group (without them the group keeps its logs forever, without the "
        "stack's key)",
    ),
    "gcp": (
        "the GPU quota check (the instance group does not wait for its servers: with too "
        "little quota this update succeeds with none)",
        "the check that the image is in the stack's Artifact Registry repository",
        "catching this stack file up to a model version or image deployed since by a "
        "promote, rollback or up elsewhere (without it this update rolls the servers back "
        "to the file's)",
        "the check that the stored model version fits the GPUs",
        "after the update: watching the instance group make its servers (failing the "
        "update when it makes none)",
    ),
    "azure": (
        "the GPU quota check (the scale set comes last, after API Management's 30 to 45 "
        "minutes)",
        "catching this stack file up to a model version or image deployed since by a "
        "promote, rollback or up elsewhere (without it this update rolls the servers back "
        "to the file's)",
        "the check that the stored model version fits the GPUs",
    ),
}

#: per cloud: what `llmcloud destroy` does that a plain `pulumi destroy` (which does not
#: run the program, so cannot warn) skips
DESTROY_SKIPS = {
    "aws": "also deletes the API keys `llmcloud keys create` made and API Gateway's "
           "execution-log group, which are not in the stack's state",
    "azure": "also purges the API Management service Azure keeps soft-deleted for 48 hours, "
             "whose name this stack's next up needs",
}


def run_by_llmcloud(environ: Mapping[str, str]) -> bool:
    """Whether the program runs under `llmcloud` (its automation layer set `MARKER`)."""
    return environ.get(MARKER) == "1"


def check_plain_run(spec: DeploymentSpec, stack: str, environ: Mapping[str, str]) -> None:
    """In a run without llmcloud's marker, of a cloud stack: refuse a spec over its budget
    (`DeploymentError`, as `llmcloud up` refuses it) and warn of the steps the run skips.
    Nothing in llmcloud's own runs, which do those steps around the program."""
    if run_by_llmcloud(environ) or spec.provider not in SKIPPED:
        return
    import pulumi

    enforce_budget(spec, stack)
    pulumi.log.warn(skipped_warning(spec, stack))


def enforce_budget(spec: DeploymentSpec, stack: str) -> None:
    """`budget.max_hourly_usd` against the cost at max replicas, from the provider's price
    table (offline): what `llmcloud up` checks before it runs the program."""
    from llmcloud.providers.registry import get_provider
    from llmcloud.stacks import cost

    limit = spec.budget.max_hourly_usd
    if limit is None:
        return
    sheet = get_provider(spec.provider).prices(spec)
    if sheet is not None:  # (every cloud has a price table)
        cost.enforce_budget(cost.estimate(sheet), limit, stack)


def skipped_warning(spec: DeploymentSpec, stack: str) -> str:
    """The warning of a plain run: what it skips, the command that does it all, and the
    commands for what can be done by hand."""
    where = f"--provider {spec.provider} --stack {stack}"
    lines = [
        f"this plain `pulumi up` (or `preview`) runs without llmcloud, and skips the steps "
        f"`llmcloud up` takes around this program: {'; '.join(SKIPPED[spec.provider])}.",
        f"`llmcloud up {where}` runs this same program with those steps.",
    ]
    if spec.provider in DESTROY_SKIPS:
        lines.append(f"Destroy with `llmcloud destroy {where}`: it "
                     f"{DESTROY_SKIPS[spec.provider]}.")
    tag = _serving_tag_commands(spec, stack)
    if tag:
        lines.append(f"To keep the image in service by hand: `{tag}`.")
    if not names_its_own(stack):
        lines.append(f"The stack name '{stack}' names its resources {base_name(stack)}-..., "
                     f"as stack '{slug(stack)}' would: llmcloud refuses such a name for a new "
                     "stack, as two such stacks collide in one account.")
    lines.append(f"The steps and their commands: docs/{spec.provider}.md, \"Plain "
                 "`pulumi up`\".")
    return " ".join(lines)


def _serving_tag_commands(spec: DeploymentSpec, stack: str) -> str | None:
    """The AWS CLI's retag (ECR's documented way: the manifest put again with a new tag)
    that gives an AWS stack's image in its own repository its serving tag; else None."""
    if spec.provider != "aws":
        return None
    from llmcloud.providers.aws import naming, serving_tag
    from llmcloud.providers.aws.provider import DEFAULT_REGION

    image = serving_tag.ecr_image(spec.image)
    own = naming.repository_name(stack, spec.model.name or "model")
    if image is None or image.repository != own or image.region != (spec.region
                                                                      or DEFAULT_REGION):
        return None
    common = (f"--registry-id {image.account} --region {image.region} "
              f"--repository-name {shlex.quote(image.repository)}")
    return (f"MANIFEST=$(aws ecr batch-get-image {common} --image-ids "
            f"imageDigest={image.digest} --query 'images[0].imageManifest' --output text) "
            f"&& aws ecr put-image {common} --image-tag "
            f"{serving_tag.serving_tag(image.digest)} --image-manifest \"$MANIFEST\"")
