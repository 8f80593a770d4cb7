"""The AWS regions a stack may name, so a region AWS lacks fails at `plan`, not at `up`.

pulumi-aws does not check the name: its SDK turns `skipRegionValidation` on unless told
otherwise (pulumi_aws 7.x `Provider`), so an `up` in a region AWS lacks fails only at its
first AWS call, whose endpoint does not resolve. This list lets `plan`, which runs offline,
refuse such a name with the nearest ones. Source: the partitions of
botocore's `endpoints.json` (botocore 1.44.8; AWS's list: https://docs.aws.amazon.com/
global-infrastructure/latest/regions/aws-regions.html), as of REGIONS_DATE. Kept here
rather than read from botocore, whose import alone costs a plan about 0.4 s. Add a region
AWS opens (and pulumi-aws knows) to the list.
"""

from __future__ import annotations

import difflib

REGIONS_DATE = "2026-12-01"

REGIONS = frozenset({
    # aws
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2",
    "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
    "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
    "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1",
    "me-south-1", "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1",
    "us-west-2",
    # aws-cn, aws-us-gov, aws-eusc
    "cn-north-1", "cn-northwest-1", "us-gov-east-1", "us-gov-west-1", "eusc-de-east-1",
    # aws-iso, aws-iso-b, aws-iso-e, aws-iso-f
    "us-iso-east-1", "us-iso-west-1", "us-isob-east-1", "us-isob-west-1", "eu-isoe-west-1",
    "us-isof-east-1", "us-isof-south-1",
})


def is_region(name: str) -> bool:
    """Whether AWS has a region of this name: in the list, or else in the installed
    botocore's `endpoints.json` (a region opened after REGIONS_DATE, which a newer botocore,
    and pulumi-aws, know; read only then, as it costs the import)."""
    return name in REGIONS or name in _botocore_regions()


def _botocore_regions() -> set[str]:
    try:
        from botocore.loaders import create_loader

        endpoints = create_loader().load_data("endpoints")
    except Exception:  # noqa: BLE001 - no botocore, or its data unreadable: the list decides
        return set()
    return {name for partition in endpoints.get("partitions", [])
            for name in partition.get("regions", {})}


def closest(name: str) -> list[str]:
    """The regions whose names are nearest to a mistyped one, nearest first."""
    return difflib.get_close_matches(name, sorted(REGIONS), n=3, cutoff=0.6)
