"""`plan` carries the warnings the stack's program logs (`pulumi.log.warn`) in its document:
under Pulumi's mocks they reached a bare logger, never the plan, and `plan --json` lost them.
Azure's plan also warns of a region name that is no Azure location it knows (priced as
eastus before, without a word); `up` leaves that to Azure."""

from __future__ import annotations

import pytest

from llmcloud.stacks.plan import run_plan
from tests.providers.declared import spec_for


def test_the_programs_warnings_are_in_the_plan_document() -> None:
    document = run_plan(spec_for("gcp"), "dev")  # no gateway.domain: a self-signed certificate
    assert any(w.startswith("gateway.domain is not set: the endpoint serves HTTPS with a "
                            "self-signed certificate") for w in document["warnings"])


@pytest.mark.parametrize("provider", ["aws", "azure"])
def test_a_drain_warning_is_in_the_document_once(provider: str) -> None:
    document = run_plan(spec_for(provider, server={"drain_timeout_seconds": 60}), "dev")
    drains = [w for w in document["warnings"] if w.startswith("server.drain_timeout_seconds")]
    assert len(drains) == 1


def test_a_plan_without_warnings_has_an_empty_list() -> None:
    run_plan(spec_for("aws", server={"drain_timeout_seconds": 60}), "dev")
    assert run_plan(spec_for("aws"), "dev")["warnings"] == []  # none left from the last plan


def test_an_azure_region_that_is_no_location_is_warned_of_with_the_nearest() -> None:
    document = run_plan(spec_for("azure", region="westeurop"), "dev")
    assert ("region westeurop is not an Azure location known to llmcloud (the nearest is "
            "westeurope)") in document["warnings"][0]
    assert document["resources"]  # a warning: the plan still runs


@pytest.mark.parametrize("region", [
    "eastus", "swedencentral", "usgovvirginia", "chinanorth3",
    # opened since the lists the first version was taken from (Fabric's region table, 2026-10)
    "denmarkeast", "taiwannorth", "taiwannorthwest"])
def test_a_known_azure_location_is_not_warned_of(region: str) -> None:
    from llmcloud.providers.azure.provider import AzureProvider

    assert AzureProvider().plan_warnings(spec_for("azure", region=region)) == []
