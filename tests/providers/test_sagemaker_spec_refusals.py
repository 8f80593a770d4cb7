"""Spec fields SageMaker decides itself, which the `compute.kind: sagemaker` flavour
ignored without a word: a server port, a disk size, a VPC range. They are refused now, and
the defaults (which `llmcloud init` writes into every stack file) still pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import read_stack_config, resolve_spec
from llmcloud.stacks.errors import ConfigError, ExitCode
from llmcloud.stacks.plan import declare
from llmcloud.stacks.template import render_stack_file
from tests.providers.aws_helpers import aws_spec

SAGEMAKER = {"kind": "sagemaker"}


@pytest.mark.parametrize(("sections", "key"), [
    ({"server": {"port": 9000}}, "server.port"),
    ({"compute": {**SAGEMAKER, "disk_gb": 500}}, "compute.disk_gb"),
    ({"network": {"vpc_cidr": "10.90.0.0/16"}}, "network.vpc_cidr"),
])
def test_sagemaker_refuses_what_it_would_ignore(sections, key):
    sections = {"compute": SAGEMAKER, **sections}
    with pytest.raises(ConfigError) as refused:
        AwsProvider().check_spec(aws_spec(**sections))
    assert refused.value.exit_code == ExitCode.USAGE
    assert key in refused.value.message and "compute.kind: instances" in refused.value.hint


def test_plan_of_a_sagemaker_stack_refuses_a_port_its_container_never_listens_on():
    # the container's LLMCLOUD_PORT was SageMaker's 8080 whatever server.port said
    with pytest.raises(ConfigError, match="server.port 9000"):
        declare(aws_spec(compute=SAGEMAKER, server={"port": 9000}), "dev")


def test_the_same_settings_still_serve_on_instances():
    AwsProvider().check_spec(aws_spec(server={"port": 9000}, compute={"disk_gb": 500},
                                      network={"vpc_cidr": "10.90.0.0/16"}))


def test_a_stack_file_written_by_init_passes_with_sagemaker(tmp_path: Path):
    # init writes every default (server.port 8080, disk_gb 200, vpc_cidr ...): being in the
    # file is not being chosen
    written = tmp_path / "Pulumi.dev.yaml"
    written.write_text(render_stack_file(aws_spec(compute=SAGEMAKER), "dev"))
    values = read_stack_config(written)
    assert values["server"]["port"] == 8080 and values["compute"]["disk_gb"] == 200
    spec = resolve_spec(file_values=values, environ={}, defaults_for=provider_defaults)
    assert spec.compute.kind == "sagemaker"
    AwsProvider().check_spec(spec)


def test_instances_refuse_a_timeout_api_gateway_cannot_stream_for():
    # a REST API streams for 900 s at most: a longer timeout was cut there without a word
    with pytest.raises(ConfigError, match="over API Gateway's limit") as refused:
        AwsProvider().check_spec(aws_spec(gateway={"timeout_seconds": 1200}))
    assert refused.value.exit_code == ExitCode.USAGE
    assert "at most 900" in refused.value.hint
    AwsProvider().check_spec(aws_spec(gateway={"timeout_seconds": 900}))
