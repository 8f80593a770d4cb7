"""The Pulumi program: one service, composed from the chosen provider's components.

`Pulumi.yaml` runs this through `stacks/__main__.py`, so `llmcloud up` (through the
Automation API) and a platform team's plain `pulumi up` run the same code; a plain run also
checks the budget and warns of the steps `llmcloud up` takes around the program
(`plain_pulumi.py`). This is the only place that reads `pulumi.Config()`; everything below
it takes the spec.
"""

from __future__ import annotations

import os

from llmcloud.providers.registry import get_provider, provider_defaults
from llmcloud.stacks.config import NAMESPACE, config_from_pulumi, resolve_spec
from llmcloud.stacks.errors import LlmcloudError
from llmcloud.stacks.plain_pulumi import check_plain_run
from llmcloud.stacks.spec import DeploymentSpec


def load_spec() -> DeploymentSpec:
    """The stack's spec: its `llmcloud:*` config under the `LLMCLOUD_*` environment."""
    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env

    config = pulumi.Config(NAMESPACE)
    keys = [key.partition(":")[2] for key in {**get_config_env(), **CONFIG.get()}
            if key.startswith(f"{NAMESPACE}:")]
    return resolve_spec(
        file_values=config_from_pulumi(config.get, keys),
        environ=os.environ,
        defaults_for=provider_defaults,
        source_name=f"Pulumi.{pulumi.get_stack()}.yaml",
    )


def build(spec: DeploymentSpec, stack: str) -> None:
    """Declare the service for `spec` and export its outputs."""
    import pulumi

    provider = get_provider(spec.provider)
    provider.require_sdk()
    for name, value in provider.build_service(spec, stack).items():
        pulumi.export(name, value)


def main() -> None:
    """The program's entry point (what `pulumi up` runs). Run without llmcloud, it keeps
    the budget gate and warns of the steps `llmcloud up` takes around it (`plain_pulumi`)."""
    import pulumi

    try:
        spec, stack = load_spec(), pulumi.get_stack()
        check_plain_run(spec, stack, os.environ)
        build(spec, stack)
    except LlmcloudError as exc:
        lines = [exc.message, exc.context, f"hint: {exc.hint}" if exc.hint else None]
        raise pulumi.RunError("\n".join(line for line in lines if line)) from None
