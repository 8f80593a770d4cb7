"""A region AWS lacks, named like one, is refused by `plan` (exit 2), not priced as
us-east-1: an `up` would fail only at its first AWS call (pulumi-aws skips region
validation by default)."""

from __future__ import annotations

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.aws.regions import REGIONS
from llmcloud.stacks.errors import ConfigError
from tests.providers.aws_helpers import aws_spec


@pytest.mark.parametrize("region,nearest", [("xx-nowhere-9", "us-east-1"),
                                            ("eu-west-9", "eu-west-1"),
                                            ("us-esat-1", "us-east-1"),
                                            ("eu-centrl-1", "eu-central-1")])
def test_a_region_aws_lacks_is_refused_with_the_nearest(region: str, nearest: str) -> None:
    with pytest.raises(ConfigError) as info:
        AwsProvider().check_spec(aws_spec(region=region))
    assert info.value.message == f"region '{region}' is not an AWS region"
    assert info.value.hint.startswith("set region to the one you meant: ")
    assert nearest in info.value.hint


def test_plan_refuses_it_before_pricing(project, cli) -> None:
    import json

    result = cli("plan", "--provider", "aws", "--region", "eu-west-9", "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == "region 'eu-west-9' is not an AWS region"


def test_every_listed_region_is_one_botocore_knows() -> None:
    botocore = pytest.importorskip("botocore.loaders")
    endpoints = botocore.create_loader().load_data("endpoints")
    known = {name for partition in endpoints["partitions"] for name in partition["regions"]}
    assert not REGIONS - known


def test_a_region_botocore_knows_beyond_the_list_is_allowed(monkeypatch) -> None:
    from llmcloud.providers.aws import regions

    monkeypatch.setattr(regions, "_botocore_regions", lambda: {"xx-newest-1"})
    AwsProvider().check_spec(aws_spec(region="xx-newest-1"))  # no refusal


def test_the_refusal_says_how_to_admit_a_region_aws_opened_since() -> None:
    # pulumi-aws would deploy to it (its SDK skips region validation by default): the list
    # and the installed botocore are what refuse it, and a newer botocore admits it
    with pytest.raises(ConfigError) as info:
        AwsProvider().check_spec(aws_spec(region="xx-nowhere-9"))
    assert "pip install -U botocore" in info.value.hint
    assert "botocore" in info.value.context
