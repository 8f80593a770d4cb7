"""Tags that become the same GCP label key (`Team` and `team`, `app:tier` and `app_tier`)
or one of llmcloud's own labels: one of the two was dropped from every resource without a
word. They are refused at `plan`, before anything runs."""

from __future__ import annotations

import pytest

from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.stacks.errors import ConfigError, ExitCode
from llmcloud.stacks.plan import run_plan
from tests.providers.gcp.helpers import gcp_spec


@pytest.mark.parametrize(("tags", "label"), [
    ({"Team": "a", "team": "b"}, "team"),
    ({"app:tier": "a", "app_tier": "b"}, "app_tier"),
])
def test_tags_that_would_be_one_label_are_refused_at_plan(tags, label):
    with pytest.raises(ConfigError) as refused:
        run_plan(gcp_spec(tags=tags), "dev")
    assert refused.value.exit_code == ExitCode.USAGE
    assert f"GCP label '{label}'" in refused.value.message
    assert "llmcloud:tags" in refused.value.hint


@pytest.mark.parametrize("name", ["llmcloud-stack", "LLMCLOUD-MODEL"])
def test_a_tag_named_like_llmclouds_own_labels_is_refused_by_the_spec(name):
    # (the spec refuses llmcloud's own tag names for every provider: tests/stacks/
    # test_tag_refusals.py)
    with pytest.raises(ConfigError) as refused:
        gcp_spec(tags={name: "mine"})
    assert refused.value.exit_code == ExitCode.USAGE
    assert f"tag key '{name}' is llmcloud's own" in refused.value.context


def test_distinct_tags_pass():
    GcpProvider().check_spec(gcp_spec(tags={"team": "ml", "app:tier": "llm",
                                            "Cost-Centre": "42", "9lives": "x"}))
