"""The SageMaker flavour's plain functions: instance types, container contract, rollout,
scaling, URIs, names, prices, policy documents and the optional SDK."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcloud.providers.aws import endpoint_config as ec
from llmcloud.providers.aws import naming
from llmcloud.providers.aws.endpoint_monitoring import (
    endpoint_dashboard,
    endpoint_log_group,
    model_latency_threshold_us,
)
from llmcloud.providers.aws.policies import invoke_endpoint_policy, sagemaker_execution_policy
from llmcloud.providers.aws.prices import ML_INSTANCES, has_instance_storage, price_table
from llmcloud.providers.aws.sagemaker_routes import models_body
from llmcloud.stacks.errors import ConfigError, ExitCode, MissingToolError, install_hint


@pytest.mark.parametrize("given_type,expected", [
    (None, "ml.g6.xlarge"), ("g6.xlarge", "ml.g6.xlarge"), ("ml.g5.2xlarge", "ml.g5.2xlarge")])
def test_the_endpoint_type_defaults_to_ml_g6_xlarge(given_type, expected):
    assert ec.sagemaker_instance_type(given_type, "g6.xlarge") == expected


def test_an_ec2_type_for_sagemaker_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as info:
        ec.sagemaker_instance_type("g5.2xlarge", "g6.xlarge")
    assert "compute.instance_type" in info.value.message
    assert "ml.g6.xlarge" in info.value.hint and info.value.exit_code == ExitCode.USAGE


def test_the_container_loads_the_mounted_model_on_sagemakers_port():
    env = ec.container_environment(model_name="t5", version="v3", dtype="auto",
                                   max_batch_size=8, drain_timeout_seconds=30, gpus=1,
                                   max_body_kb=1024)
    assert env["LLMCLOUD_MODEL"] == env["HF_MODEL_ID"] == "/opt/ml/model"
    assert env["LLMCLOUD_MODEL_VERSION"] == "v3" and env["LLMCLOUD_PORT"] == "8080"
    assert all(isinstance(v, str) for v in env.values())  # SageMaker takes strings only
    assert env["HF_HUB_OFFLINE"] == "1" and "LLMCLOUD_TASK" not in env
    assert ec.container_environment(model_name="t5", version="v3", dtype="auto",
                                    max_batch_size=8, drain_timeout_seconds=30, gpus=1,
                                   max_body_kb=1024,
                                    task="text2text-generation")["LLMCLOUD_TASK"] == (
        "text2text-generation")


def test_the_specs_engine_settings_reach_the_container_as_variables(monkeypatch):
    from llmcloud.inference_image.server import build_parser
    from llmcloud.stacks.spec import ServerSpec

    settings = ServerSpec(max_batch_tokens=40000, reserve_new_tokens=64,
                          max_prefill_tokens=4096, reasoning_parser="none").engine_settings()
    env = ec.container_environment(model_name="t5", version="v3", dtype="auto",
                                   max_batch_size=8, drain_timeout_seconds=30, gpus=1,
                                   max_body_kb=1024,
                                   engine_settings=settings)
    for name, value in env.items():  # the server as SageMaker starts it: no arguments
        monkeypatch.setenv(name, value)
    parsed = build_parser().parse_args(["serve"])
    assert (parsed.max_batch_tokens, parsed.reserve_new_tokens, parsed.max_prefill_tokens,
            parsed.reasoning_parser) == (40000, 64, 4096, "none")


def test_the_gateways_body_limit_reaches_the_container(monkeypatch):
    # SageMaker passes no arguments, and the server read no variable for its body limit:
    # gateway.max_body_kb was ignored there (the server kept its 4 MiB)
    from llmcloud.inference_image.server import build_parser

    env = ec.container_environment(model_name="t5", version="v3", dtype="auto",
                                   max_batch_size=8, drain_timeout_seconds=30, gpus=1,
                                   max_body_kb=256)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert build_parser().parse_args(["serve"]).max_body_bytes == 256 * 1024


def test_model_data_is_the_uncompressed_version_prefix():
    (source,) = ec.model_data_source("s3://b/models/t5/v1/")["s3_data_sources"]
    assert source == {"s3_uri": "s3://b/models/t5/v1/", "s3_data_type": "S3Prefix",
                      "compression_type": "None"}
    with pytest.raises(ValueError):
        ec.model_data_source("s3://b/models/t5/v1/model.tar.gz")


def test_the_rollout_is_blue_green_with_every_alarm_and_a_bounded_drain():
    config = ec.deployment_config(["a", "b"], drain_timeout_seconds=7200)
    assert config["auto_rollback_configuration"]["alarms"] == [{"alarm_name": "a"},
                                                               {"alarm_name": "b"}]
    policy = config["blue_green_update_policy"]
    assert policy["termination_wait_in_seconds"] == 3600  # SageMaker's maximum
    assert 600 <= policy["maximum_execution_timeout_in_seconds"] <= 14400
    assert policy["traffic_routing_configuration"]["wait_interval_in_seconds"] <= 3600


def test_target_tracking_cooldowns():
    config = ec.target_tracking("requests", 100, cooldown_seconds=30)
    assert config["scale_in_cooldown"] == 30 and config["scale_out_cooldown"] == 30
    assert ec.target_tracking("in_flight", 4, 600)["scale_out_cooldown"] == 60
    with pytest.raises(KeyError):
        ec.target_tracking("gpu", 1, 60)


def test_uris_and_arns():
    assert ec.scaling_resource_id("e") == "endpoint/e/variant/AllTraffic"
    assert ec.invocations_uri("eu-west-1", "e") == (
        "arn:aws:apigateway:eu-west-1:runtime.sagemaker:path//endpoints/e/invocations")
    assert ec.endpoint_arn("us-east-1", "1" * 12, "My-End") == (
        "arn:aws:sagemaker:us-east-1:111111111111:endpoint/my-end")
    assert ec.invoke_timeout_ms(300) == 29_000 and ec.invoke_timeout_ms(10) == 10_000


@pytest.mark.parametrize("image,arn", [
    ("763104351884.dkr.ecr.us-west-2.amazonaws.com/tgi-inference:2.4.0-gpu",
     "arn:aws:ecr:us-west-2:763104351884:repository/tgi-inference"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/t5-server@sha256:" + "a" * 64,
     "arn:aws:ecr:us-east-1:123456789012:repository/llm-dev/t5-server"),
    ("ghcr.io/org/server:1", None),
])
def test_the_repository_of_an_image(image, arn):
    assert ec.repository_arn_of(image) == arn


@given(st.text(min_size=1, max_size=80), st.text(alphabet="0123456789abcdef", min_size=10,
                                                  max_size=10))
def test_versioned_names_fit_and_end_in_their_digest(stack, digest):
    name = naming.versioned_name(stack, "model", digest)
    assert len(name) <= 63 and name.endswith(digest)
    assert len(naming.versioned_name(stack, "sm-exec", digest, "role")) <= 64


def test_fingerprints_follow_their_inputs():
    assert naming.fingerprint("a", 1) == naming.fingerprint("a", 1)
    assert naming.fingerprint("a", 1) != naming.fingerprint("a", 2)


def test_ml_prices_are_dated_and_cover_the_issues_types():
    table = price_table("us-east-1")
    for name in ("ml.g5.xlarge", "ml.g5.2xlarge", "ml.g6.xlarge", "ml.g6.2xlarge",
                 "ml.g6e.xlarge", "ml.p4d.24xlarge"):
        assert table.ml_hourly[name] > 0
    assert not set(table.ml_hourly) & set(table.gpu_hourly)
    assert "sagemaker/pricing" in __import__(
        "llmcloud.providers.aws.prices", fromlist=["x"]).__doc__
    # SageMaker charges more than EC2 for the same hardware
    assert table.ml_hourly["ml.g6.xlarge"] > table.gpu_hourly["g6.xlarge"]


def test_instance_storage_decides_the_volume_key():
    assert has_instance_storage("ml.g6.xlarge") and has_instance_storage("ml.p4d.24xlarge")
    assert not has_instance_storage("ml.p3.2xlarge") and not has_instance_storage("ml.m5.xlarge")
    assert {t for t in ML_INSTANCES if not has_instance_storage(t)} == {"ml.p3.2xlarge"}


def test_the_execution_policy_names_the_version_prefix_and_nothing_wider():
    doc = sagemaker_execution_policy(
        bucket_arn="arn:aws:s3:::b", model_name="t5", version="v2", store_key_arn="k",
        repository_arns=["r", "r"], log_group_arn="lg", region="us-east-1")
    resources = [s["Resource"] for s in doc["Statement"]]
    assert "arn:aws:s3:::b/models/t5/v2/*" in resources and ["r"] in resources
    assert not any(r in ("arn:aws:s3:::b/*", "arn:aws:s3:::b/models/*") for r in resources)
    assert invoke_endpoint_policy("arn:e")["Statement"] == [
        {"Sid": "InvokeEndpoint", "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
         "Resource": "arn:e"}]


def test_monitoring_functions():
    assert endpoint_log_group("e") == "/aws/sagemaker/Endpoints/e"
    assert model_latency_threshold_us(29_000) == 23_200_000  # 80 % of 29 s, in us
    body = endpoint_dashboard("us-east-1", "e")
    assert all(w["properties"]["region"] == "us-east-1" for w in body["widgets"])
    assert ["AWS/SageMaker", "Invocations", "EndpointName", "e", "VariantName",
            "AllTraffic"] in body["widgets"][0]["properties"]["metrics"]
    assert '"id": "t5"' in models_body("t5")


def test_the_sdk_helper_without_the_extra_names_the_install(monkeypatch):
    from llmcloud.providers.aws import sagemaker_sdk

    monkeypatch.setitem(sys.modules, "sagemaker", None)  # import fails, as when absent
    monkeypatch.setitem(sys.modules, "sagemaker.image_uris", None)
    with pytest.raises(MissingToolError) as info:
        sagemaker_sdk.llm_image_uri("tgi", "us-east-1")
    assert info.value.hint == install_hint("sagemaker")
    assert "[sagemaker]" in info.value.hint
    assert info.value.exit_code == ExitCode.MISSING_TOOL


def test_the_sdk_helper_asks_the_sdk_for_the_inference_image(monkeypatch):
    from llmcloud.providers.aws import sagemaker_sdk

    calls = []
    image_uris = types.ModuleType("sagemaker.image_uris")
    image_uris.retrieve = lambda framework, **kw: calls.append((framework, kw)) or "uri"
    package = types.ModuleType("sagemaker")
    package.image_uris = image_uris
    monkeypatch.setitem(sys.modules, "sagemaker", package)
    monkeypatch.setitem(sys.modules, "sagemaker.image_uris", image_uris)
    assert sagemaker_sdk.llm_image_uri("djl", "eu-west-1", "0.29.0") == "uri"
    assert calls == [("djl-lmi", {"region": "eu-west-1", "version": "0.29.0",
                                  "image_scope": "inference"})]
    with pytest.raises(ValueError, match="djl, tgi"):
        sagemaker_sdk.llm_image_uri("vllm", "eu-west-1")


@pytest.mark.parametrize("kind", ["instances", "sagemaker"])
def test_planning_either_flavour_never_imports_the_sdk(tmp_path, kind):
    import os
    import subprocess

    # an installed SDK that fails when imported: a plan that imports it fails too
    (tmp_path / "sagemaker").mkdir()
    (tmp_path / "sagemaker" / "__init__.py").write_text("raise RuntimeError('sdk imported')\n")
    code = ("from llmcloud.stacks.plan import run_plan;"
            "from tests.providers.aws_helpers import aws_spec;"
            f"run_plan(aws_spec(compute={{'kind': '{kind}'}}), 'x')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    poisoned = subprocess.run([sys.executable, "-c", "import sagemaker"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert "sdk imported" in poisoned.stderr
