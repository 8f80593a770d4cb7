"""The Azure provider's own behaviour: defaults, options, the image and budget gates, prices."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.options import LOCKED_SSH_KEY, AzureOptions
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.cost import estimate
from llmcloud.stacks.errors import ConfigError, DeploymentError, ExitCode, NotSupportedError
from llmcloud.stacks.plan import run_plan
from tests.providers.azure.helpers import azure_spec

IMAGE = "myreg.azurecr.io/server@sha256:" + "c" * 64


def ctx(tmp_path, **sections) -> StackContext:
    (tmp_path / "Pulumi.yaml").write_text("name: llmcloud\nruntime: python\n")
    return StackContext(project_dir=tmp_path, stack="dev", spec=azure_spec(**sections),
                        environ={})


def test_the_budget_gate_refuses_a_stack_over_budget(tmp_path):
    provider = AzureProvider()
    provider.options = AzureOptions()
    provider.before_up(ctx(tmp_path, image=IMAGE, budget={"max_hourly_usd": 100}))
    with pytest.raises(DeploymentError) as info:
        provider.before_up(ctx(tmp_path, image=IMAGE, budget={"max_hourly_usd": 5}))
    assert "over the budget of $5.00/h" in info.value.message


def test_a_custom_domain_is_refused_rather_than_ignored(tmp_path):
    provider = AzureProvider()
    with pytest.raises(NotSupportedError) as info:
        provider.before_up(ctx(tmp_path, image=IMAGE, gateway={"domain": "llm.example.com"}))
    assert info.value.exit_code == ExitCode.NOT_SUPPORTED
    with pytest.raises(NotSupportedError):
        run_plan(azure_spec(gateway={"domain": "llm.example.com"}), "dev")


def test_prices_follow_the_spec_and_tier():
    provider = AzureProvider()
    provider.options = AzureOptions()
    cost = estimate(provider.prices(azure_spec(compute={"min_replicas": 1,
                                                        "max_replicas": 3})))
    gpu = cost["items"][0]
    assert (gpu["unit_usd"], gpu["quantity_min"], gpu["quantity_max"]) == (3.673, 1, 3)
    assert cost["hourly_max"] - cost["hourly_min"] == pytest.approx(
        2 * (3.673 + round(38.02 / 730, 6)), abs=1e-3)
    assert any(i["name"] == "API Management (Developer, 1 unit)" for i in cost["items"])
    assert cost["price_date"] and "azure" in cost["source"].lower()
    prod = estimate(provider.prices(azure_spec(tags={"environment": "production"})))
    assert prod["hourly_min"] - cost["hourly_min"] > 3.7  # Premium over Developer
    estimated = provider.prices(azure_spec(region="westeurope"))
    assert estimated.notes and "eastus" in estimated.notes[0]
    with pytest.raises(ConfigError):
        provider.prices(azure_spec(compute={"instance_type": "Standard_D2s_v5"}))


def test_a_tier_that_cannot_serve_the_spec_is_a_config_error():
    provider = AzureProvider()
    provider.options = AzureOptions(apim_sku="StandardV2")
    with pytest.raises(ConfigError) as info:
        provider.prices(azure_spec(gateway={"public": False}))
    assert "Internal mode" in info.value.message
    provider.options = AzureOptions(apim_sku="Basic")
    with pytest.raises(ConfigError) as info:
        provider.gateway_sku(azure_spec())
    assert "LLMCLOUD_AZURE_APIM_SKU" in info.value.hint


def test_options_from_the_environment():
    options = AzureOptions.from_environ({
        "LLMCLOUD_AZURE_APIM_SKU": "PremiumV2", "LLMCLOUD_AZURE_ALERT_EMAILS": "a@x.io, b@x.io",
        "LLMCLOUD_AZURE_PUBLISHER_EMAIL": "ops@x.io", "LLMCLOUD_AZURE_SSH_PUBLIC_KEY": "ssh-ed"})
    assert options == AzureOptions(apim_sku="PremiumV2", publisher_email="ops@x.io",
                                   alert_emails=("a@x.io", "b@x.io"), ssh_public_key="ssh-ed")
    assert AzureOptions.from_environ({}).ssh_public_key == LOCKED_SSH_KEY


def test_plan_document_shows_every_check_passed_and_a_cost():
    doc = run_plan(azure_spec(), "dev")
    assert doc["provider"] == "azure" and doc["cost"]["hourly_min"] > 0
    assert doc["checks"] and all(c["passed"] for c in doc["checks"])
    assert doc["budget"] == {"max_hourly_usd": None, "exceeded": False}
    over = run_plan(azure_spec(budget={"max_hourly_usd": 1}), "dev")
    assert over["budget"] == {"max_hourly_usd": 1, "exceeded": True}


def test_acr_token_exchange_posts_the_entra_token_and_returns_the_refresh_token():
    from types import SimpleNamespace

    from llmcloud.providers.azure.provider import exchange_acr_token
    from llmcloud.stacks.errors import CredentialsError

    calls = []

    def post(url, timeout, data):
        calls.append((url, data))
        return SimpleNamespace(status_code=200, json=lambda: {"refresh_token": "rt-1"})

    assert exchange_acr_token("llmdev.azurecr.io", "aad-1", post=post) == "rt-1"
    assert calls == [("https://llmdev.azurecr.io/oauth2/exchange", {
        "grant_type": "access_token", "service": "llmdev.azurecr.io", "access_token": "aad-1"})]
    refused = SimpleNamespace(status_code=401, json=lambda: {})
    with pytest.raises(CredentialsError) as caught:
        exchange_acr_token("llmdev.azurecr.io", "aad-1", post=lambda *a, **k: refused)
    assert caught.value.hint == "az acr login --name llmdev"


def test_upload_and_push_are_offered_on_azure():
    from llmcloud.providers.registry import get_provider

    assert not {"model_upload", "image_push", "promote", "rollback"} & set(
        get_provider("azure").unsupported)


@pytest.mark.parametrize("region", ["East US", "east-us", "mars-1", "eu"])
def test_a_location_that_is_no_azure_name_is_refused(region):
    with pytest.raises(ConfigError) as info:
        run_plan(azure_spec(region=region), "dev")
    assert "not an Azure location name" in info.value.message and "eastus" in info.value.hint


@pytest.mark.parametrize("region", ["eastus", "westeurope", "swedencentral", "eastus2"])
def test_azure_location_names_pass(region):
    AzureProvider().check_spec(azure_spec(region=region))


def test_a_drain_longer_than_a_deleted_vm_may_wait_is_refused():
    # a terminate notice lasts at most 15 minutes: leaving the balancer (15 s), the drain,
    # and 30 s to spare must fit in it
    AzureProvider().check_spec(azure_spec(server={"drain_timeout_seconds": 855}))
    with pytest.raises(ConfigError) as info:
        run_plan(azure_spec(server={"drain_timeout_seconds": 856}), "dev")
    assert "drain_timeout_seconds 856" in info.value.message
    assert info.value.hint == "set server.drain_timeout_seconds to at most 855"


@pytest.mark.parametrize("size", ["Standard_NV36ads_A10_v5", "Standard_NV72ads_A10_v5"])
def test_a10_sizes_that_need_the_grid_driver_are_refused(size):
    # NVadsA10 v5 takes only NVIDIA's GRID driver (the GPU driver extension's default for
    # the family); the Ubuntu HPC image carries the datacenter driver, so the server would
    # boot without a GPU and never pass its probe
    with pytest.raises(ConfigError) as info:
        run_plan(azure_spec(compute={"instance_type": size}), "dev")
    assert f"{size} needs NVIDIA's GRID driver" in info.value.message
    AzureProvider().check_spec(azure_spec(compute={"instance_type": "Standard_NC4as_T4_v3"}))
