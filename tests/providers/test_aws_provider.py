"""The AWS provider's gates: an image before `up`, the budget, prices, unsupported ops."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.cost import estimate
from llmcloud.stacks.errors import ConfigError, DeploymentError, ExitCode
from tests.providers.aws_helpers import aws_spec

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/m@sha256:" + "b" * 64


class RecordingStack:
    """Stands in for the Automation API stack: records what the engine was asked."""

    name = "dev"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def info(self):
        return None  # never updated

    workspace = type("Workspace", (), {"list_stacks": staticmethod(lambda: [])})()

    def up(self, **kwargs):
        self.calls.append("up")
        return type("Result", (), {"outputs": {}})()


@pytest.fixture
def engine(monkeypatch, tmp_path: Path):
    stack = RecordingStack()
    monkeypatch.setattr(AwsProvider, "stack_opener", staticmethod(lambda *a: stack))
    monkeypatch.setattr(AwsProvider, "check_credentials", lambda self, environ: None)
    (tmp_path / "Pulumi.yaml").write_text("name: llmcloud\nruntime: python\n")
    return stack, tmp_path


def ctx(project: Path, **sections) -> StackContext:
    return StackContext(project_dir=project, stack="dev", spec=aws_spec(**sections), environ={})


def test_the_first_up_runs_without_an_image(engine):
    # it creates the registry the image is pushed to (see test_first_up for what it
    # declares); it used to refuse, and nothing could make the registry
    stack, _project = engine
    AwsProvider().up(ctx(_project))
    assert stack.calls[-1] == "up"


def test_up_over_budget_exits_1_with_both_numbers(engine):
    stack, project = engine
    context = ctx(project, image=IMAGE, budget={"max_hourly_usd": 1.0},
                  compute={"max_replicas": 4})
    expected = estimate(AwsProvider().prices(context.spec))["hourly_max"]
    assert expected > 4 * 0.8048
    with pytest.raises(DeploymentError) as info:
        AwsProvider().up(context)
    assert info.value.exit_code == ExitCode.ERROR
    assert "over the budget of $1.00/h" in info.value.message
    assert f"${expected:.2f}/h at max replicas" in info.value.message
    assert stack.calls == []


def test_up_within_budget_runs_the_engine(engine):
    stack, project = engine
    AwsProvider().update(ctx(project, image=IMAGE, budget={"max_hourly_usd": 50}))
    assert stack.calls == ["up"]


def test_prices_at_min_and_max_replicas():
    cost = estimate(AwsProvider().prices(aws_spec(compute={"min_replicas": 1,
                                                           "max_replicas": 3})))
    gpu = cost["items"][0]
    assert gpu["name"].startswith("GPU servers (g6.xlarge")
    assert (gpu["hourly_min"], gpu["hourly_max"]) == (0.8048, pytest.approx(2.4144))
    fixed = sum(i["hourly_min"] for i in cost["items"][1:])
    assert cost["hourly_min"] == pytest.approx(0.8048 + fixed, abs=1e-3)
    assert cost["price_date"] == "2025-06-01" and "aws.amazon.com" in cost["source"]
    requests = next(i for i in cost["items"] if "requests" in i["name"])
    assert requests["unit_usd"] == 3.5 and requests["hourly_max"] == 0


def test_an_unpriced_instance_type_is_a_config_error():
    with pytest.raises(ConfigError, match="no price"):
        AwsProvider().prices(aws_spec(compute={"instance_type": "x9.huge"}))


def test_the_lifecycle_and_keys_are_offered():
    unsupported = AwsProvider.unsupported
    assert not {"up", "update", "preview", "plan", "destroy", "keys"} & set(unsupported)


def test_mocked_lookups_answer_like_aws():
    provider = AwsProvider()
    zones = provider.mock_invoke("aws:index/getAvailabilityZones:getAvailabilityZones", {},
                                 region="eu-west-1")
    assert zones["names"][0] == "eu-west-1a"
    ami = provider.mock_invoke("aws:ssm/getParameter:getParameter", {"name": "/x"})
    assert ami["value"].startswith("ami-")
    with pytest.raises(KeyError, match="no mocked answer"):
        provider.mock_invoke("aws:ec2/getVpc:getVpc", {})


@pytest.mark.parametrize("gateway", [{"public": False}, {"domain": "llm.example.com"}])
def test_gateway_settings_not_built_yet_are_refused_not_ignored(gateway):
    from llmcloud.stacks.errors import NotSupportedError
    from llmcloud.stacks.plan import run_plan

    with pytest.raises(NotSupportedError) as info:
        run_plan(aws_spec(gateway=gateway), "dev")
    assert info.value.exit_code == ExitCode.NOT_SUPPORTED and info.value.hint


@pytest.mark.parametrize("sections,error,words", [
    ({"compute": {"kind": "sagemaker", "instance_type": "g5.2xlarge"}}, "ConfigError",
     "compute.instance_type"),
    ({"compute": {"kind": "instances", "instance_type": "ml.g6.xlarge"}}, "ConfigError",
     "compute.kind: sagemaker"),
    ({"compute": {"kind": "sagemaker", "spot": True}}, "ConfigError", "compute.spot"),
    ({"compute": {"kind": "sagemaker", "instance_type": "ml.g6.xlarge", "gpus": 4}},
     "ConfigError", "ml.g6.12xlarge"),
    ({"compute": {"instance_type": "g6.xlarge", "gpus": 4}}, "ConfigError", "g6.12xlarge"),
    ({"gateway": {"max_body_kb": 20000}}, "ConfigError", "10240"),
    ({"region": "us-east1"}, "ConfigError", "not an AWS region name"),  # GCP's style
    ({"region": "mars-1"}, "ConfigError", "us-east-1"),
])
def test_settings_aws_cannot_honour_are_refused(sections, error, words):
    from llmcloud.stacks.plan import run_plan

    with pytest.raises(Exception) as info:
        run_plan(aws_spec(**sections), "dev")
    assert type(info.value).__name__ == error
    assert words in f"{info.value.message} {info.value.hint}"


def test_up_refuses_what_it_cannot_honour_before_the_engine_runs(engine):
    stack, project = engine
    with pytest.raises(ConfigError, match="API Gateway"):
        AwsProvider().up(ctx(project, image=IMAGE, gateway={"max_body_kb": 20000}))
    assert stack.calls == []


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-2", "ap-southeast-5",
                                    "us-gov-west-1", "cn-northwest-1", "il-central-1"])
def test_aws_region_names_pass(region):
    AwsProvider().check_spec(aws_spec(region=region))
