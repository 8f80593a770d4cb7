"""`autoscaling.target` is the load of one copy of the model: every cloud holds a replica to
the target times the copies its server runs (one per GPU, or `server.data_parallel_size`),
and refuses at plan a data_parallel_size the instance type has too few GPUs for."""

from __future__ import annotations

import pytest

from llmcloud.stacks.errors import ConfigError
from llmcloud.stacks.plan import run_plan
from tests.providers.declared import declared_for, one, spec_for

# one 4-GPU instance type of each cloud (and one of the flavour each runs)
FOUR_GPUS = {
    "aws": {"instance_type": "g6.12xlarge", "gpus": 4},
    "sagemaker": {"kind": "sagemaker", "instance_type": "ml.g6.12xlarge", "gpus": 4},
    "gcp": {"instance_type": "a2-highgpu-4g", "gpus": 4},
    "gcp-n1": {"instance_type": "n1-standard-8", "gpus": 4},  # T4s attached
    "azure": {"instance_type": "Standard_NC96ads_A100_v4", "gpus": 4},
}
ONE_GPU = {"aws": {"instance_type": "g6.xlarge"},
           "sagemaker": {"kind": "sagemaker", "instance_type": "ml.g6.xlarge"},
           "gcp": {"instance_type": "g2-standard-8"},
           "gcp-n1": {"instance_type": "n1-standard-8", "gpus": 1},
           "azure": {"instance_type": "Standard_NC24ads_A100_v4"}}


def _cloud(flavour: str) -> str:
    return {"sagemaker": "aws", "gcp-n1": "gcp"}.get(flavour, flavour)


def replica_target(flavour: str, compute: dict, **sections) -> float:
    """The in-flight target one replica's autoscaling policy was declared with."""
    resources, _ = declared_for(_cloud(flavour), compute=compute, **sections)
    if flavour == "aws":
        policy = one(resources, "aws:autoscaling/policy:Policy")
        return policy.inputs["targetTrackingConfiguration"]["targetValue"]
    if flavour == "sagemaker":
        policy = one(resources, "aws:appautoscaling/policy:Policy")
        return policy.inputs["targetTrackingScalingPolicyConfiguration"]["targetValue"]
    if _cloud(flavour) == "gcp":
        autoscaler = one(resources, "gcp:compute/regionAutoscaler:RegionAutoscaler")
        return autoscaler.inputs["autoscalingPolicy"]["metrics"][0]["target"]
    setting = one(resources, "azure-native:monitor:AutoscaleSetting")
    increase = [rule for rule in setting.inputs["profiles"][0]["rules"]
                if rule["scaleAction"]["direction"] == "Increase"]
    return increase[0]["metricTrigger"]["threshold"]


@pytest.mark.parametrize("flavour", list(FOUR_GPUS))
def test_a_replica_is_held_to_the_target_of_each_of_its_copies(flavour):
    assert replica_target(flavour, ONE_GPU[flavour]) == 8  # the default target
    assert replica_target(flavour, FOUR_GPUS[flavour]) == 32  # four copies, one per GPU
    assert replica_target(flavour, FOUR_GPUS[flavour], autoscaling={"target": 3}) == 12
    # copies set apart from the GPUs: two copies, or one (e.g. for a larger KV cache)
    assert replica_target(flavour, FOUR_GPUS[flavour],
                          server={"data_parallel_size": 2}) == 16
    assert replica_target(flavour, FOUR_GPUS[flavour],
                          server={"data_parallel_size": 1}) == 8


def test_the_request_rate_a_gcp_backend_takes_counts_the_copies_too():
    resources, _ = declared_for("gcp", compute=FOUR_GPUS["gcp"],
                                autoscaling={"signal": "requests", "target": 120})
    backend = one(resources, "gcp:compute/backendService:BackendService").inputs["backends"][0]
    one_copy, _ = declared_for("gcp", compute=ONE_GPU["gcp"],
                               autoscaling={"signal": "requests", "target": 120})
    single = one(one_copy, "gcp:compute/backendService:BackendService").inputs["backends"][0]
    assert backend["maxRatePerInstance"] == 4 * single["maxRatePerInstance"] == 10


@pytest.mark.parametrize("flavour", list(FOUR_GPUS))
def test_more_copies_than_the_instance_has_gpus_are_refused_at_plan(flavour):
    spec = spec_for(_cloud(flavour), compute=FOUR_GPUS[flavour],
                    server={"data_parallel_size": 5})
    with pytest.raises(ConfigError) as info:
        run_plan(spec, "dev")
    assert "data_parallel_size is 5" in info.value.message
    assert "4 GPUs" in info.value.message and "at most 4" in info.value.hint
    run_plan(spec_for(_cloud(flavour), compute=FOUR_GPUS[flavour],
                      server={"data_parallel_size": 4}), "dev")


@pytest.mark.parametrize(("cloud", "compute", "has", "other"), [
    ("aws", {"instance_type": "g6.xlarge", "gpus": 4}, 1, "g6.12xlarge"),
    ("gcp", {"instance_type": "g2-standard-8", "gpus": 4}, 1, "a2-highgpu-4g"),
    ("gcp", {"instance_type": "a2-highgpu-4g", "gpus": 1}, 4, "g2-standard-8"),
    ("azure", {"instance_type": "Standard_NC24ads_A100_v4", "gpus": 4}, 1,
     "Standard_NC96ads_A100_v4"),
])
def test_gpus_the_instance_type_does_not_have_are_refused_not_ignored(cloud, compute, has,
                                                                       other):
    with pytest.raises(ConfigError) as info:
        run_plan(spec_for(cloud, compute=compute), "dev")
    assert info.value.message == (f"compute.gpus is {compute['gpus']}, but "
                                  f"{compute['instance_type']} has {has}")
    assert other in info.value.hint
    assert f"one with {compute['gpus']} GPU{'' if compute['gpus'] == 1 else 's'}: " \
        in info.value.hint  # (not "one with 1 GPUs")
    # N1 machines take the GPUs asked for
    run_plan(spec_for("gcp", compute={"instance_type": "n1-standard-8", "gpus": 2}), "dev")
