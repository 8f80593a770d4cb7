"""What the SageMaker Python SDK (the `llmcloud[sagemaker]` extra) adds: AWS's own LLM
container images, as an alternative to llmcloud's bundled one.

`llm_image_uri("tgi", "us-east-1")` is the URI of the Hugging Face TGI container for
SageMaker (`"djl"`: the DJL LMI container) in that region. Set it as `llmcloud:image` (pinned
by digest) and the endpoint runs it on the same mounted model: the model's environment carries
`HF_MODEL_ID=/opt/ml/model` and `SM_NUM_GPUS`, which those containers read. They answer
`inputs`-style bodies (and, in recent versions, chat `messages`) on `/invocations`.

The SDK is imported only when this is called: neither `llmcloud --help` nor the default
flavour loads it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from llmcloud.stacks.errors import MissingToolError, install_hint

#: llmcloud's short names for the SDK's LLM container frameworks
FRAMEWORKS = {"tgi": "huggingface-llm", "djl": "djl-lmi"}


def _image_uris() -> ModuleType:
    try:
        return importlib.import_module("sagemaker.image_uris")
    except ImportError as error:
        raise MissingToolError(
            "the SageMaker Python SDK is not installed",
            context="resolving AWS's LLM container images needs the `sagemaker` package",
            hint=install_hint("sagemaker")) from error


def llm_image_uri(container: str, region: str, version: str | None = None) -> str:
    """The ECR URI of AWS's `container` (`tgi` or `djl`) image for SageMaker inference in
    `region`; the SDK's latest when `version` is None.

    Raises `MissingToolError` without the `llmcloud[sagemaker]` extra and `ValueError` for
    an unknown container.
    """
    if container not in FRAMEWORKS:
        raise ValueError(f"container must be one of {', '.join(sorted(FRAMEWORKS))}, "
                         f"not {container!r}")
    return _image_uris().retrieve(FRAMEWORKS[container], region=region, version=version,
                                  image_scope="inference")
