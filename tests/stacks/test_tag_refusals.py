"""Tags the spec took and a cloud then changed or refused: a user tag named like llmcloud's
own (`llmcloud:stack` on AWS, `llmcloud-model` on Azure) replaced it on every resource,
AWS refused an `aws:` tag only half-way through `up`, and GCP cut a label longer than 63
characters without a word. All are refused before anything runs (2)."""

from __future__ import annotations

import pytest

from llmcloud.providers.aws.service import stack_tags
from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError, ExitCode
from llmcloud.stacks.plan import run_plan
from tests.providers.declared import spec_for


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp", "local"])
@pytest.mark.parametrize("key", ["llmcloud:stack", "llmcloud:model", "llmcloud:key-name",
                                 "llmcloud-stack", "LLMCloud-Model", "llmcloud:anything"])
def test_a_tag_named_like_llmclouds_own_is_refused(provider, key) -> None:
    with pytest.raises(ConfigError) as refused:
        resolve_spec(file_values={"provider": provider, "tags": {key: "mine"}}, environ={},
                     defaults_for=provider_defaults)
    assert refused.value.exit_code == ExitCode.USAGE
    assert refused.value.message == "invalid value for llmcloud:tags"
    assert f"tag key '{key}' is llmcloud's own" in refused.value.context


def test_the_stacks_own_tags_stay_as_llmcloud_sets_them() -> None:
    spec = spec_for("aws", model={"name": "m"}, tags={"team": "ml", "llmcloud": "x",
                                                      "app:llmcloud-stack": "y"})
    tags = stack_tags(spec, "prod")
    assert tags["llmcloud:stack"] == "prod" and tags["llmcloud:model"] == "m"
    assert tags["team"] == "ml"


@pytest.mark.parametrize("tags, what", [
    ({"aws:team": "ml"}, "key"), ({"AWS:Team": "ml"}, "key"), ({"team": "aws:ml"}, "value"),
])
def test_aws_refuses_its_own_prefix_at_plan(tags, what) -> None:
    with pytest.raises(ConfigError) as refused:
        run_plan(spec_for("aws", tags=tags), "dev")
    assert refused.value.exit_code == ExitCode.USAGE
    assert f"has a {what} beginning with 'aws:', which AWS refuses" in refused.value.message
    assert "llmcloud:tags" in refused.value.hint


def test_aws_takes_tags_that_only_mention_aws() -> None:
    run_plan(spec_for("aws", tags={"team-aws": "ml", "owner": "me@aws.example"}), "dev")


@pytest.mark.parametrize("tags, what", [
    ({"team": "x" * 64}, "value"), ({"t" * 64: "ml"}, "name"),
])
def test_gcp_refuses_a_label_longer_than_63_characters(tags, what) -> None:
    with pytest.raises(ConfigError) as refused:
        run_plan(spec_for("gcp", tags=tags), "dev")
    assert refused.value.exit_code == ExitCode.USAGE
    assert f"has a {what} of 64 characters, longer than a GCP label takes" \
        in refused.value.message
    assert "63" in refused.value.context and "llmcloud:tags" in refused.value.hint


def test_gcp_takes_63_characters() -> None:
    run_plan(spec_for("gcp", tags={"t" * 63: "x" * 63}), "dev")
