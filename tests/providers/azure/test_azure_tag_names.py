"""A tag the spec allows but Azure refuses on every resource (`team/app`: AWS takes `/`) is
refused at `plan`, before anything runs; the `up` failed half-way on the first resource it
tagged."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.stacks.errors import ConfigError, ExitCode
from llmcloud.stacks.plan import run_plan
from tests.providers.azure.helpers import azure_spec


@pytest.mark.parametrize("name", ["team/app", "a/b/c", "Azure-team",
                                  "microsoftOwner"])
def test_a_tag_name_azure_refuses_is_refused_at_plan(name):
    with pytest.raises(ConfigError) as refused:
        run_plan(azure_spec(tags={name: "x"}), "dev")
    assert refused.value.exit_code == ExitCode.USAGE
    assert f"tag '{name}'" in refused.value.message and "llmcloud:tags" in refused.value.hint


def test_tag_names_azure_takes_pass():
    AzureProvider().check_spec(azure_spec(tags={"team": "ml", "cost-centre": "42",
                                                "app.tier": "llm", "owner:email": "a@b"}))
