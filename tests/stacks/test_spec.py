"""The deployment spec: every invalid value is rejected with its key named; the stack file
round-trips; the layers apply in their order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import (
    read_stack_config,
    resolve_spec,
    spec_to_config,
    write_stack_config,
)
from llmcloud.stacks.errors import ConfigError, ExitCode
from llmcloud.stacks.spec import DeploymentSpec, SamplingDefaultsSpec, model_name_from_source
from llmcloud.stacks.template import render_stack_file

INVALID = [
    ({"provider": "oracle"}, "provider"),
    ({"region": 5}, "region"),
    ({"image": "ghcr.io/acme/server:latest"}, "image"),
    ({"model": {"source": ""}}, "model.source"),
    ({"model": {"source": "http://example.com/m"}}, "model.source"),
    ({"model": {"source": "s3://"}}, "model.source"),
    ({"model": {"name": "Has Spaces"}}, "model.name"),
    ({"model": {"version": "v 1"}}, "model.version"),
    ({"model": {"task": "summarize"}}, "model.task"),
    ({"model": {"weights": "x"}}, "model.weights"),
    ({"compute": {"kind": "lambda"}}, "compute.kind"),
    ({"compute": {"kind": "sagemaker"}}, "compute.kind"),
    ({"compute": {"gpus": -1}}, "compute.gpus"),
    ({"compute": {"gpus": 17}}, "compute.gpus"),
    ({"compute": {"min_replicas": 0}}, "compute.min_replicas"),
    ({"compute": {"max_replicas": 0}}, "compute.max_replicas"),
    ({"compute": {"min_replicas": 4, "max_replicas": 3}}, "compute.max_replicas"),
    ({"compute": {"spot": "sometimes"}}, "compute.spot"),
    ({"compute": {"disk_gb": 10}}, "compute.disk_gb"),
    ({"autoscaling": {"signal": "cpu"}}, "autoscaling.signal"),
    ({"autoscaling": {"target": 0}}, "autoscaling.target"),
    ({"autoscaling": {"cooldown_seconds": -1}}, "autoscaling.cooldown_seconds"),
    ({"gateway": {"rate_limit": 0}}, "gateway.rate_limit"),
    ({"gateway": {"burst": 0}}, "gateway.burst"),
    ({"gateway": {"quota": 0}}, "gateway.quota"),
    ({"gateway": {"timeout_seconds": 0}}, "gateway.timeout_seconds"),
    ({"gateway": {"max_body_kb": 0}}, "gateway.max_body_kb"),
    ({"network": {"allowed_cidrs": ["10.0.0.0/33"]}}, "network.allowed_cidrs"),
    ({"network": {"allowed_cidrs": []}}, "network.allowed_cidrs"),
    ({"network": {"vpc_cidr": "8.8.0.0/16"}}, "network.vpc_cidr"),
    ({"network": {"vpc_cidr": "10.0.0.0/8"}}, "network.vpc_cidr"),
    ({"budget": {"max_hourly_usd": 0}}, "budget.max_hourly_usd"),
    ({"budget": {"max_hourly_usd": "cheap"}}, "budget.max_hourly_usd"),
    ({"server": {"port": 80}}, "server.port"),
    ({"server": {"dtype": "int4"}}, "server.dtype"),
    ({"server": {"max_batch_size": 0}}, "server.max_batch_size"),
    ({"server": {"pack_weights": "sometimes"}}, "server.pack_weights"),
    ({"server": {"max_batch_tokens": 0}}, "server.max_batch_tokens"),
    ({"server": {"reserve_new_tokens": 0}}, "server.reserve_new_tokens"),
    ({"server": {"reserve_new_tokens": "some"}}, "server.reserve_new_tokens"),
    ({"server": {"max_prefill_tokens": "auto"}}, "server.max_prefill_tokens"),
    ({"server": {"prefix_cache_share": 1.5}}, "server.prefix_cache_share"),
    ({"server": {"reasoning_parser": "qwen3"}}, "server.reasoning_parser"),
    ({"tags": {"bad key!": "x"}}, "tags"),
    ({"tags": "team=ml"}, "tags"),
    ({"compute": "big"}, "compute"),
]


@pytest.mark.parametrize("values,key", INVALID)
def test_invalid_values_are_rejected_with_their_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values=values, environ={}, defaults_for=provider_defaults)
    assert caught.value.message == f"invalid value for llmcloud:{key}"
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.context and caught.value.hint


def test_unknown_key_lists_the_allowed_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values={"compute": {"instnace_type": "x"}}, environ={})
    assert "allowed keys: kind, instance_type, gpus" in caught.value.context


def test_layers_apply_in_order() -> None:
    spec = resolve_spec(
        file_values={"provider": "aws", "region": "eu-west-1",
                     "compute": {"max_replicas": 4, "min_replicas": 2}},
        environ={"LLMCLOUD_REGION": "eu-central-1", "LLMCLOUD_COMPUTE__MAX_REPLICAS": "6",
                 "LLMCLOUD_STACK": "ignored", "OTHER": "x"},
        flags={"compute.max_replicas": 8, "model.version": None},
        defaults_for=provider_defaults,
    )
    assert spec.region == "eu-central-1"  # env over file
    assert spec.compute.max_replicas == 8  # flag over env
    assert spec.compute.min_replicas == 2  # file over default
    assert spec.compute.instance_type == "g6.xlarge"  # the provider's default
    assert spec.model.version == "v1"  # a flag not given changes nothing


def test_provider_from_a_higher_layer_picks_that_providers_defaults() -> None:
    spec = resolve_spec(file_values={"provider": "aws"}, environ={"LLMCLOUD_PROVIDER": "gcp"},
                        defaults_for=provider_defaults)
    assert (spec.provider, spec.region, spec.compute.instance_type) == (
        "gcp", "us-central1", "g2-standard-8")


def test_env_json_values_and_comma_lists() -> None:
    spec = resolve_spec(
        file_values={},
        environ={"LLMCLOUD_NETWORK__ALLOWED_CIDRS": "10.0.0.0/8, 192.168.1.0/24",
                 "LLMCLOUD_TAGS": '{"team": "ml"}'},
    )
    assert spec.network.allowed_cidrs == ["10.0.0.0/8", "192.168.1.0/24"]
    assert spec.tags == {"team": "ml"}


def test_packed_weights_are_the_default_and_can_be_turned_off() -> None:
    assert resolve_spec(file_values={}, environ={}).server.pack_weights is True
    spec = resolve_spec(file_values={}, environ={"LLMCLOUD_SERVER__PACK_WEIGHTS": "false"})
    assert spec.server.pack_weights is False


def test_engine_settings_become_server_flags_only_when_given() -> None:
    assert resolve_spec(file_values={}, environ={}).server.engine_flags() == []
    spec = resolve_spec(file_values={"server": {"max_batch_tokens": 40000}},
                        environ={"LLMCLOUD_SERVER__RESERVE_NEW_TOKENS": "all",
                                 "LLMCLOUD_SERVER__MAX_PREFILL_TOKENS": "1024"})
    assert spec.server.engine_flags() == ["--max-batch-tokens", "40000",
                                          "--reserve-new-tokens", "all",
                                          "--max-prefill-tokens", "1024"]
    reserve = resolve_spec(file_values={},
                           environ={"LLMCLOUD_SERVER__RESERVE_NEW_TOKENS": "64"})
    assert reserve.server.reserve_new_tokens == 64
    off = resolve_spec(file_values={"server": {"prefix_cache_share": 0}}, environ={})
    assert off.server.engine_flags() == ["--prefix-cache-share", "0.0"]
    plain = resolve_spec(file_values={}, environ={"LLMCLOUD_SERVER__REASONING_PARSER": "none"})
    assert plain.server.engine_flags() == ["--reasoning-parser", "none"]
    ranked = resolve_spec(file_values={"server": {"scheduling_policy": "priority"}}, environ={})
    assert ranked.server.engine_flags() == ["--scheduling-policy", "priority"]
    with pytest.raises(ConfigError, match="scheduling_policy"):
        resolve_spec(file_values={"server": {"scheduling_policy": "lifo"}}, environ={})
    capped = resolve_spec(file_values={}, environ={"LLMCLOUD_SERVER__MAX_LORAS": "2"})
    assert capped.server.engine_flags() == ["--max-loras", "2"]
    with pytest.raises(ConfigError, match="max_loras"):
        resolve_spec(file_values={"server": {"max_loras": 0}}, environ={})


def test_trusting_remote_code_is_a_switch_off_by_default() -> None:
    assert resolve_spec(file_values={}, environ={}).server.trust_remote_code is False
    spec = resolve_spec(file_values={},
                        environ={"LLMCLOUD_SERVER__TRUST_REMOTE_CODE": "true"})
    assert spec.server.engine_flags() == ["--trust-remote-code"]
    assert spec.server.engine_settings() == {"trust_remote_code": "1"}


def test_sampling_defaults_become_one_json_flag() -> None:
    spec = resolve_spec(
        file_values={"server": {"override_generation_config": {"temperature": 0.5,
                                                               "top_k": 20}}},
        environ={"LLMCLOUD_SERVER__GENERATION_CONFIG": "none"})
    assert spec.server.engine_flags() == [
        "--generation-config", "none",
        "--override-generation-config", '{"temperature": 0.5, "top_k": 20}']
    from_env = resolve_spec(file_values={}, environ={
        "LLMCLOUD_SERVER__OVERRIDE_GENERATION_CONFIG": '{"max_new_tokens": 256}'})
    assert from_env.server.engine_flags() == ["--override-generation-config",
                                              '{"max_new_tokens": 256}']
    empty = resolve_spec(file_values={"server": {"override_generation_config": {}}},
                         environ={})
    assert empty.server.engine_flags() == []


@pytest.mark.parametrize(("override", "context"), [
    ({"temprature": 0.5}, "unknown key; allowed keys: temperature, top_p, top_k, min_p, "
                          "repetition_penalty, max_new_tokens"),
    ({"temperature": 5}, "less than or equal to 2"),
    ({"max_new_tokens": 0}, "greater than or equal to 1"),
])
def test_bad_sampling_defaults_are_refused_before_deploying(override, context) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_spec(file_values={"server": {"override_generation_config": override}},
                     environ={})
    assert context in info.value.context


@pytest.mark.parametrize("value", [-2, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 9.5, 10, 10.5, 20,
                                   4096])
@pytest.mark.parametrize("key", ["temperature", "top_p", "top_k", "min_p",
                                 "repetition_penalty", "max_new_tokens"])
def test_the_spec_and_the_server_take_the_same_sampling_defaults(key, value) -> None:
    """The spec's ranges are declared for its schema and the server's in its own table: a
    value the spec lets through must start the servers (else a deploy crash-loops them),
    and one the servers take must be deployable."""
    from llmcloud.inference_image.sampling_defaults import SamplingDefaultsError, parse_override

    try:
        SamplingDefaultsSpec.model_validate({key: value})
        spec_takes = True
    except ValidationError:
        spec_takes = False
    try:
        parse_override(json.dumps({key: value}))
        server_takes = True
    except SamplingDefaultsError:
        server_takes = False
    assert spec_takes == server_takes


def test_model_name_comes_from_the_source() -> None:
    assert model_name_from_source("Qwen/Qwen2.5-0.5B-Instruct") == "qwen2-5-0-5b-instruct"
    assert model_name_from_source("s3://bucket/models/t5-base/") == "t5-base"
    assert model_name_from_source("./") == "model"


def test_secrets_are_refused_in_the_stack_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  llmcloud:region:\n    secure: AAABAx==\n")
    with pytest.raises(ConfigError, match="is a Pulumi secret"):
        read_stack_config(path)


def test_other_namespaces_are_left_to_pulumi(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  aws:region: us-west-2\n  llmcloud:region: eu-west-1\n")
    assert read_stack_config(path) == {"region": "eu-west-1"}
    spec = resolve_spec(file_values={"region": "eu-west-3"}, environ={})
    write_stack_config(path, spec)
    assert "aws:region: us-west-2" in path.read_text()
    assert read_stack_config(path)["region"] == "eu-west-3"


def test_broken_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_stack_config(path)


@pytest.mark.parametrize("provider", ["local", "aws", "gcp", "azure"])
def test_init_template_round_trips_to_the_defaults(tmp_path: Path, provider: str) -> None:
    spec = resolve_spec(file_values={"provider": provider}, environ={},
                        defaults_for=provider_defaults)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(render_stack_file(spec, "dev"))
    again = resolve_spec(file_values=read_stack_config(path), environ={},
                         defaults_for=provider_defaults)
    assert again == spec
    text = path.read_text()
    for section in DeploymentSpec.model_fields:
        assert f"llmcloud:{section}" in text  # every key is there, commented or set


_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
_specs = st.builds(
    dict,
    provider=st.sampled_from(["local", "aws", "gcp", "azure"]),
    region=st.sampled_from(["us-east-1", "europe-west4", "westeurope"]),
    model=st.fixed_dictionaries({
        "source": st.one_of(
            _names.map(lambda n: f"org/{n}"), _names.map(lambda n: f"s3://bucket/{n}")),
        "version": st.from_regex(r"v[0-9]{1,4}", fullmatch=True),
        "name": _names,
    }),
    compute=st.integers(1, 20).flatmap(lambda low: st.fixed_dictionaries({
        "min_replicas": st.just(low),
        "max_replicas": st.integers(low, 40),
        "spot": st.booleans(),
        "disk_gb": st.integers(30, 2000),
        "instance_type": st.sampled_from(["g6.xlarge", "g5.2xlarge", "g2-standard-8"]),
    })),
    gateway=st.fixed_dictionaries({
        "rate_limit": st.floats(0.5, 1000, allow_nan=False).map(lambda x: round(x, 2)),
        "burst": st.integers(1, 5000),
        "quota": st.one_of(st.none(), st.integers(1, 10**7)),
    }),
    budget=st.fixed_dictionaries({"max_hourly_usd": st.one_of(
        st.none(), st.floats(0.01, 500, allow_nan=False).map(lambda x: round(x, 2)))}),
    tags=st.dictionaries(_names, _names, max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=_specs)
def test_stack_file_round_trip(values: dict, tmp_path_factory) -> None:
    spec = resolve_spec(file_values=values, environ={}, defaults_for=provider_defaults)
    path = tmp_path_factory.mktemp("rt") / "Pulumi.s.yaml"
    write_stack_config(path, spec)
    assert resolve_spec(file_values=read_stack_config(path), environ={},
                        defaults_for=provider_defaults) == spec
    assert all(key.startswith("llmcloud:") for key in spec_to_config(spec))


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(-5, 2000))
def test_replica_bounds_property(replicas: int) -> None:
    values = {"compute": {"min_replicas": replicas, "max_replicas": max(replicas, 1)}}
    if 1 <= replicas <= 1000:
        assert resolve_spec(file_values=values, environ={}).compute.min_replicas == replicas
    else:
        with pytest.raises(ConfigError, match=r"llmcloud:compute\.(min|max)_replicas"):
            resolve_spec(file_values=values, environ={})


def test_lora_adapters_are_folders_inside_the_model_version() -> None:
    spec = resolve_spec(file_values={"server": {"lora_modules": {
        "sql": "adapters/sql", "chat-v2": "adapters/chat/"}}}, environ={})
    assert spec.server.engine_flags() == [
        "--lora-modules", "chat-v2=./adapters/chat sql=./adapters/sql"]
    assert resolve_spec(file_values={}, environ={}).server.engine_flags() == []
    for modules, says in [({"sql": "/data/sql"}, "inside the model version"),
                          ({"sql": "s3://bucket/sql"}, "inside the model version"),
                          ({"sql": "adapters/../../x"}, "without '..'"),
                          ({"sql": "my adapter"}, "spaces"),
                          ({"sql": ""}, "inside the model version"),
                          ({"a=b": "adapters/a"}, "not an adapter name"),
                          ({"two words": "adapters/a"}, "not an adapter name")]:
        with pytest.raises(ConfigError) as info:
            resolve_spec(file_values={"server": {"lora_modules": modules}}, environ={})
        assert says in info.value.context


@pytest.mark.parametrize("unset", ["", "null", None])
def test_a_section_left_empty_by_init_is_unset_in_the_program_too(unset):
    """`init` writes `llmcloud:budget:` with its keys commented out; the CLI reads that as
    unset, and the program, which gets it from Pulumi as "" or "null", failed on it."""
    from llmcloud.stacks.config import config_from_pulumi

    raw = {"provider": "aws", "budget": unset, "model": '{"name": "m"}'}
    values = config_from_pulumi(raw.get)
    assert "budget" not in values
    assert resolve_spec(file_values=values, environ={}).budget.max_hourly_usd is None


def test_an_all_digit_model_version_is_a_version():
    # `pulumi config set --path` stores 7 as a number: the next plan, and promote's own
    # update, refused it ("should be a valid string")
    spec = resolve_spec(file_values={"provider": "aws", "model": {
        "version": 20240601, "history": [7, "v8"]}}, environ={})
    assert (spec.model.version, spec.model.history) == ("20240601", ["7", "v8"])
