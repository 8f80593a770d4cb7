"""`autoscaling.signal: requests` needs a target of its own: the default target (8) counts
concurrent requests, and read as requests a minute it held every server at one request
every 7.5 s, so the group scaled out to max_replicas at the first traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcloud.stacks.config import read_stack_config, resolve_spec
from llmcloud.stacks.errors import ConfigError
from llmcloud.stacks.spec import DeploymentSpec


def _refusal(error: ConfigError) -> None:
    assert error.message == "invalid value for llmcloud:autoscaling.target"
    assert "requests a minute" in error.context and "concurrent requests" in error.context
    assert "e.g. 120" in error.context


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_requests_without_a_target_is_refused(provider):
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values={"provider": provider, "autoscaling": {"signal": "requests"}},
                     environ={})
    _refusal(caught.value)
    assert "(value 8 from defaults)" in caught.value.context


def test_the_spec_itself_refuses_it():
    with pytest.raises(ValueError, match="requests a minute"):
        DeploymentSpec.model_validate({"provider": "aws",
                                       "autoscaling": {"signal": "requests"}})


@pytest.mark.parametrize("layer", ["file", "environment", "section variable"])
def test_a_target_from_any_layer_counts(layer):
    file_values: dict = {"provider": "gcp", "autoscaling": {"signal": "requests"}}
    environ = {}
    if layer == "file":
        file_values["autoscaling"]["target"] = 90
    elif layer == "environment":
        environ["LLMCLOUD_AUTOSCALING__TARGET"] = "90"
    else:
        environ["LLMCLOUD_AUTOSCALING"] = '{"target": 90}'
    spec = resolve_spec(file_values=file_values, environ=environ)
    assert (spec.autoscaling.signal, spec.autoscaling.target) == ("requests", 90)


def test_the_signal_from_the_environment_over_a_file_without_a_target():
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values={"provider": "azure"},
                     environ={"LLMCLOUD_AUTOSCALING__SIGNAL": "requests"})
    _refusal(caught.value)


def test_the_in_flight_default_left_in_an_init_file_is_refused(project: Path, cli):
    """`init` writes every default into the stack file, `target: 8.0` too: switching only
    the signal there leaves the in_flight default in place, as good as unset."""
    assert cli("init", "--provider", "aws", "--stack", "ci").exit_code == 0
    path = project / "Pulumi.ci.yaml"
    path.write_text(path.read_text().replace('signal: "in_flight"', 'signal: "requests"'))
    values = read_stack_config(path)
    assert values["autoscaling"] == {"signal": "requests", "target": 8.0,
                                     "cooldown_seconds": 300}
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values=values, environ={}, source_name=path.name)
    _refusal(caught.value)
    assert "(value 8.0 from Pulumi.ci.yaml)" in caught.value.context


def test_in_flight_keeps_its_default_and_local_has_no_autoscaler():
    assert resolve_spec(file_values={"provider": "aws"}, environ={}).autoscaling.target == 8
    spec = resolve_spec(file_values={"autoscaling": {"signal": "requests"}}, environ={})
    assert spec.provider == "local" and spec.autoscaling.signal == "requests"
