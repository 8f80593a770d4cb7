"""Stack files as people write them, and variables as CI jobs set them: what a YAML reader or
an empty variable made of them silently, now refused or read as Pulumi reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import read_stack_config, resolve_spec
from llmcloud.stacks.errors import ConfigError


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, key, first", [
    # a second budget lower in the file raised the gate's limit without a word
    ("config:\n  llmcloud:budget:\n    max_hourly_usd: 1\n"
     "  llmcloud:budget:\n    max_hourly_usd: 1000\n", "llmcloud:budget", 2),
    ("config:\n  llmcloud:compute: {max_replicas: 3, max_replicas: 1}\n", "max_replicas", 2),
])
def test_a_key_written_twice_is_refused(tmp_path: Path, text: str, key: str, first: int) -> None:
    with pytest.raises(ConfigError) as caught:
        read_stack_config(_file(tmp_path, text))
    assert caught.value.message == "Pulumi.prod.yaml is not valid YAML"
    assert f"key '{key}' is written twice (first on line {first})" in caught.value.context
    assert caught.value.hint.endswith("llmcloud init --stack prod --force")


def test_keys_merged_from_an_anchor_may_still_be_overridden(tmp_path: Path) -> None:
    values = read_stack_config(_file(tmp_path, (
        "shared: &budget {max_hourly_usd: 1}\n"
        "config:\n  llmcloud:budget:\n    <<: *budget\n    max_hourly_usd: 3\n")))
    assert values == {"budget": {"max_hourly_usd": 3}}


@pytest.mark.parametrize("written, read", [
    ("version: 2024-06-01", "a date (2024-06-01)"),
    ("version: 1.10", "a number (1.1)"),
    ("history: [v1, 2024-06-01]", "a date (2024-06-01)"),
])
def test_a_version_yaml_reads_as_a_date_or_a_fraction_says_to_quote_it(
        tmp_path: Path, written: str, read: str) -> None:
    # it said only "Input should be a valid string (value "2024-06-01")"
    values = read_stack_config(_file(tmp_path, f"config:\n  llmcloud:model:\n    {written}\n"))
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values=values, environ={})
    assert f"YAML reads it as {read}: put the version in quotes" in caught.value.context


def test_a_quoted_version_is_taken_as_written(tmp_path: Path) -> None:
    values = read_stack_config(_file(
        tmp_path, 'config:\n  llmcloud:model:\n    version: "2024-06-01"\n'))
    assert resolve_spec(file_values=values, environ={}).model.version == "2024-06-01"


def test_a_yaml_error_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_stack_config(_file(tmp_path, "config:\n\tllmcloud:region: eu-west-1\n"))
    assert caught.value.context == (
        "line 2, column 1: found character '\\t' that cannot start any token")


@pytest.mark.parametrize("environ, flags, key", [
    ({"LLMCLOUD_REGION": ""}, {}, "region"),
    ({}, {"region": " "}, "region"),
    ({"LLMCLOUD_COMPUTE__INSTANCE_TYPE": ""}, {}, "compute.instance_type"),
    ({"LLMCLOUD_GATEWAY__DOMAIN": ""}, {}, "gateway.domain"),
])
def test_an_empty_name_is_refused_not_read_as_the_default(
        environ: dict, flags: dict, key: str) -> None:
    # `LLMCLOUD_REGION: ${{ vars.REGION }}` with the variable unset: the file's region was
    # replaced by "", which the providers read as "unset", and us-east-1 was planned
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values={"provider": "aws", "region": "eu-west-1"},
                     environ=environ, flags=flags, defaults_for=provider_defaults)
    assert caught.value.message == f"invalid value for llmcloud:{key}"
    assert "must not be empty" in caught.value.context


def test_plan_with_an_empty_region_variable_exits_2(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "Pulumi.dev.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:region: eu-west-1\n")
    monkeypatch.setenv("LLMCLOUD_REGION", "")
    result = cli("plan", "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == "invalid value for llmcloud:region"


@pytest.mark.parametrize("environ, key, variable", [
    ({"LLMCLOUD_TAGS": '{"team": 1}'}, "tags.team", "LLMCLOUD_TAGS"),
    ({"LLMCLOUD_COMPUTE": '{"max_replicas": 0}'}, "compute.max_replicas", "LLMCLOUD_COMPUTE"),
    ({"LLMCLOUD_COMPUTE": '{"bogus": 1}'}, "compute.bogus", "LLMCLOUD_COMPUTE"),
    ({"LLMCLOUD_COMPUTE__MAX_REPLICAS": "x"}, "compute.max_replicas",
     "LLMCLOUD_COMPUTE__MAX_REPLICAS"),
])
def test_an_invalid_value_names_the_variable_that_was_set(
        environ: dict, key: str, variable: str) -> None:
    # a section set as JSON was reported as LLMCLOUD_TAGS__TEAM, a variable nobody had set
    with pytest.raises(ConfigError) as caught:
        resolve_spec(file_values={}, environ=environ)
    assert caught.value.message == f"invalid value for llmcloud:{key}"
    assert caught.value.context.endswith(f"from {variable})")
