"""A cloud stack's first `up`, before any image exists: the servers pull their image by
digest from the stack's own registry, which only an `up` creates, and `up` needed the
image first, so a new stack could not be deployed. Now an update without an image declares
the registry and the model store only, and says what to run next; `plan` and `preview`
still show the whole service."""

from __future__ import annotations

import pytest

from llmcloud.stacks.plan import declare
from tests.providers.declared import spec_for

REGISTRY = {"aws": "aws:ecr/repository:Repository",
            "gcp": "gcp:artifactregistry/repository:Repository",
            "azure": "azure-native:containerregistry:Registry"}
SERVERS = {"aws": "aws:autoscaling/group:Group",
           "gcp": "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
           "azure": "azure-native:compute:VirtualMachineScaleSet"}
IMAGE = {"aws": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev-m@sha256:" + "a" * 64,
         "gcp": "us-central1-docker.pkg.dev/p/r/server@sha256:" + "a" * 64,
         "azure": "llmdevabc.azurecr.io/m-server@sha256:" + "a" * 64}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_first_up_creates_the_registry_and_the_store_and_says_what_next(cloud):
    resources, outputs = declare(spec_for(cloud), "dev", preview=False)
    types = {r.type for r in resources}
    assert REGISTRY[cloud] in types and SERVERS[cloud] not in types
    assert not [r for r in resources if r.layer in ("gateway", "load_balancer", "gpu_pool",
                                                    "monitoring")]
    assert outputs["registry_url"] and outputs["model_store_uri"]
    assert "image" not in outputs and "endpoint_url" not in outputs
    assert f"llmcloud image push --provider {cloud} --stack dev" in outputs["next_step"]
    # the registry and the store keep their place (URN) in the whole service: the next
    # `up`, with the image, adds to them rather than replacing them
    whole, _ = declare(spec_for(cloud, image=IMAGE[cloud]), "dev", preview=False)
    names = {(r.type, r.name) for r in whole}
    assert {(r.type, r.name) for r in resources} <= names
    assert SERVERS[cloud] in {t for t, _ in names}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_plan_and_preview_still_show_the_whole_service(cloud):
    resources, outputs = declare(spec_for(cloud), "dev")
    assert SERVERS[cloud] in {r.type for r in resources}
    assert outputs["image_placeholder"] is True and "next_step" not in outputs
