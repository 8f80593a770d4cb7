"""The SageMaker flavour's arithmetic: instance type, container contract, rollout, scaling and
the ARNs and URIs that tie the endpoint to the gateway. Plain functions, no Pulumi."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmcloud.providers.aws.prices import ML_INSTANCES
from llmcloud.stacks.errors import ConfigError

DEFAULT_ML_INSTANCE_TYPE = "ml.g6.xlarge"
#: where SageMaker mounts the model data, and the port its container contract listens on
MODEL_DIR = "/opt/ml/model"
CONTAINER_PORT = 8080
VARIANT = "AllTraffic"
#: where SageMaker's agent on each endpoint instance publishes CPU, memory, disk and GPU use,
#: as the execution role
INSTANCE_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
#: API Gateway's default (and, without a quota raise, maximum) integration timeout
API_GATEWAY_TIMEOUT_MS = 29_000
#: how long the new fleet serves under the rollback alarms' watch before the old one goes
BAKE_SECONDS = 600
SCALE_OUT_COOLDOWN_SECONDS = 60
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+?)(?:[:@].*)?$")


def sagemaker_instance_type(instance_type: str | None, instances_default: str) -> str:
    """The `ml.*` type of the endpoint: `ml.g6.xlarge` when unset (or left at the instance
    group's default, `instances_default`), the spec's `ml.*` type otherwise."""
    if instance_type in (None, instances_default):
        return DEFAULT_ML_INSTANCE_TYPE
    if not instance_type.startswith("ml."):
        raise ConfigError(
            f"compute.instance_type {instance_type!r} is not a SageMaker instance type",
            context="compute.kind: sagemaker runs on SageMaker's ml.* instance types",
            hint=f"set compute.instance_type to an ml.* type, e.g. {DEFAULT_ML_INSTANCE_TYPE} "
                 f"(priced: {', '.join(sorted(ML_INSTANCES))})")
    return instance_type


def container_environment(*, model_name: str, version: str, dtype: str, max_batch_size: int,
                          drain_timeout_seconds: int, gpus: int, max_body_kb: int,
                          task: str | None = None,
                          engine_settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The model container's environment: `llmcloud-server` loads the mounted model and
    listens on SageMaker's port; `HF_MODEL_ID`/`SM_NUM_GPUS` make AWS's own LLM containers
    (TGI, DJL) load the same directory when one is used as the image instead. The container
    is network-isolated, so nothing may try the Hugging Face hub."""
    task_env = {"LLMCLOUD_TASK": task} if task else {}
    # SageMaker passes no arguments: each setting goes as the variable the server reads for
    # its flag (max_batch_tokens: LLMCLOUD_MAX_BATCH_TOKENS).
    engine_env = {f"LLMCLOUD_{name.upper()}": value
                  for name, value in (engine_settings or {}).items()}
    return {
        **task_env,
        **engine_env,
        "LLMCLOUD_MODEL": MODEL_DIR,
        "LLMCLOUD_MODEL_NAME": model_name,
        "LLMCLOUD_MODEL_VERSION": version,
        "LLMCLOUD_PORT": str(CONTAINER_PORT),
        "LLMCLOUD_DTYPE": dtype,
        "LLMCLOUD_MAX_BATCH_SIZE": str(max_batch_size),
        "LLMCLOUD_DRAIN_TIMEOUT_SECONDS": str(drain_timeout_seconds),
        "LLMCLOUD_MAX_BODY_BYTES": str(max_body_kb * 1024),
        "HF_MODEL_ID": MODEL_DIR,
        "SM_NUM_GPUS": str(gpus),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def model_data_source(model_uri: Any) -> dict:
    """The version's uncompressed prefix (`s3://<bucket>/models/<name>/<version>/`), as
    `llmcloud model upload` writes it; SageMaker copies it to /opt/ml/model. `model_uri` may
    be a Pulumi output (checked when it is a plain string)."""
    if isinstance(model_uri, str) and not (model_uri.startswith("s3://")
                                           and model_uri.endswith("/")):
        raise ValueError(f"{model_uri} must be an s3:// prefix ending in '/'")
    return {"s3_data_sources": [{"s3_uri": model_uri, "s3_data_type": "S3Prefix",
                                 "compression_type": "None"}]}


def deployment_config(alarm_names: list[str], drain_timeout_seconds: int) -> dict:
    """Blue/green, all at once: the new fleet is provisioned beside the old, takes the
    traffic, and is watched for `BAKE_SECONDS`; if a rollback alarm fires meanwhile the
    traffic goes back to the old fleet, which is kept until then. Works at any replica count
    (rolling batches need at least two instances)."""
    return {
        "blue_green_update_policy": {
            "traffic_routing_configuration": {"type": "ALL_AT_ONCE",
                                              "wait_interval_in_seconds": BAKE_SECONDS},
            "termination_wait_in_seconds": min(3600, drain_timeout_seconds),
            "maximum_execution_timeout_in_seconds": 3 * 3600,
        },
        "auto_rollback_configuration": {"alarms": [{"alarm_name": n} for n in alarm_names]},
    }


def scaling_resource_id(endpoint_name: str, variant: str = VARIANT) -> str:
    """Application Auto Scaling's id of an endpoint's variant."""
    return f"endpoint/{endpoint_name}/variant/{variant}"


def target_tracking(signal: str, target: float, cooldown_seconds: int) -> dict:
    """The target-tracking configuration: concurrent requests per instance (`in_flight`, a
    10-second metric) or invocations per instance per minute (`requests`)."""
    metric = {"in_flight": "SageMakerVariantConcurrentRequestsPerModelHighResolution",
              "requests": "SageMakerVariantInvocationsPerInstance"}[signal]
    return {"target_value": float(target),
            "predefined_metric_specification": {"predefined_metric_type": metric},
            "scale_in_cooldown": cooldown_seconds,
            "scale_out_cooldown": min(cooldown_seconds, SCALE_OUT_COOLDOWN_SECONDS)}


def invocations_uri(region: str, endpoint_name: str) -> str:
    """API Gateway's AWS-service URI of the endpoint's `InvokeEndpoint` action."""
    return (f"arn:aws:apigateway:{region}:runtime.sagemaker:path//endpoints/"
            f"{endpoint_name}/invocations")


def endpoint_arn(region: str, account_id: str, endpoint_name: str) -> str:
    """The endpoint's ARN (SageMaker writes names lowercase in ARNs)."""
    return f"arn:aws:sagemaker:{region}:{account_id}:endpoint/{endpoint_name.lower()}"


def invoke_timeout_ms(timeout_seconds: int) -> int:
    """The integration timeout: the spec's, within API Gateway's 29 s default."""
    return min(API_GATEWAY_TIMEOUT_MS, timeout_seconds * 1000)


def repository_arn_of(image: str) -> str | None:
    """The ECR repository an image reference lives in, or None outside ECR."""
    match = _ECR_IMAGE.match(image)
    if match is None:
        return None
    partition = "aws-cn" if ".amazonaws.com.cn/" in image else "aws"
    return (f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/"
            f"{match['repo']}")


def gpus_of(instance_type: str) -> int:
    """GPUs of an `ml.*` type (1 when llmcloud does not know the type)."""
    spec = ML_INSTANCES.get(instance_type)
    return spec[0] if spec else 1
