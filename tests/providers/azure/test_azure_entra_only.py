"""Entra ID only, the registry's and Application Insights' way (docs/azure.md, the Microsoft
cloud security benchmark's IM-1 lines): the registry refuses ARM-audience tokens, so the
servers and `image push` ask for its own audience; Application Insights refuses its
instrumentation key, so API Management sends its traces signed in with its own identity."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmcloud.policies import Resource, run_checks
from llmcloud.providers.azure.identity import MONITORING_METRICS_PUBLISHER
from tests.providers.azure.helpers import (
    APIM,
    INSIGHTS,
    LOGGER,
    REGISTRY,
    ROLE,
    azure_spec,
    declared,
    of_type,
    one,
)
from tests.providers.test_boot_scripts_run import _azure, _sandbox_works, run_script

REGISTRY_AUDIENCE = "https://containerregistry.azure.net"


# -- the registry ---------------------------------------------------------------------------


def test_the_registry_refuses_arm_audience_tokens():
    # IM-1: "Container registries should have ARM audience token authentication disabled"
    registry = one(declared()[0], REGISTRY).inputs
    assert registry["policies"]["azureADAuthenticationAsArmPolicy"] == {"status": "disabled"}


@pytest.mark.parametrize("policies, passes", [
    ({"azureADAuthenticationAsArmPolicy": {"status": "disabled"}}, True),
    ({"azureADAuthenticationAsArmPolicy": {"status": "Disabled"}}, True),
    ({"azureADAuthenticationAsArmPolicy": {"status": "enabled"}}, False),
    ({"exportPolicy": {"status": "disabled"}}, False),  # unset: Azure's default, enabled
    (None, False),
])
def test_the_arm_audience_check(policies, passes):
    inputs = {} if policies is None else {"policies": policies}
    results = [r for r in run_checks([Resource(REGISTRY, "acr", inputs)])
               if r.id == "LLMCLOUD_AZURE_4"]
    assert [r.passed for r in results] == [passes]


#: the instance metadata service hands out a token for any audience; the registry's exchange
#: takes only one for its own (as with azureADAuthenticationAsArmPolicy disabled)
REGISTRY_ONLY = f"""case "$*" in
  *oauth2/token*"resource={REGISTRY_AUDIENCE}&"*) echo '{{"access_token": "acr-aud"}}' ;;
  *oauth2/token*) echo '{{"access_token": "arm-aud"}}' ;;
  *oauth2/exchange*) [ "$(cat)" = \
"grant_type=access_token&service=llmdev1.azurecr.io&access_token=acr-aud" ] || exit 22
    echo '{{"refresh_token": "acr-refresh"}}' ;;
  *compute/name*) echo vm1 ;;
esac"""


@pytest.mark.skipif(not _sandbox_works(), reason="needs bash and a working `unshare -rm`")
def test_a_new_server_logs_in_to_a_registry_that_refuses_arm_tokens(tmp_path):
    run = run_script(_azure(), tmp_path, {"curl": REGISTRY_ONLY})
    assert run.rc == 0, run.out
    assert len(run.called("docker", "login")) == 1  # at the first try
    assert run.called("docker", "pull")


def test_image_push_asks_for_a_registry_token_the_registry_takes(tmp_path, monkeypatch):
    import azure.identity
    import httpx

    from llmcloud.providers.azure import provider as azure_provider
    from llmcloud.providers.base import StackContext

    scopes = []

    class Credential:  # signs in to the public cloud, any audience
        def __init__(self, **options):
            pass

        def get_token(self, scope):
            scopes.append(scope)
            return SimpleNamespace(token=f"token-for {scope}")

    def registry(url, timeout, data):  # takes only a token for its own audience
        ok = data["access_token"] == f"token-for {REGISTRY_AUDIENCE}/.default"
        return SimpleNamespace(status_code=200 if ok else 401,
                               json=lambda: {"refresh_token": "acr-refresh"})

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Credential)
    monkeypatch.setattr(httpx, "post", registry)
    # AZURE_* variables: DefaultAzureCredential's (the public cloud's Entra ID)
    environ = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"}
    ctx = StackContext(tmp_path, "dev", azure_spec(), environ=environ)
    assert azure_provider.AzureProvider().registry_login(ctx, "llmdev1.azurecr.io/x") == (
        azure_provider.ACR_TOKEN_USER, "acr-refresh")
    assert scopes == [f"{REGISTRY_AUDIENCE}/.default"]


def test_a_refused_registry_token_names_the_registry():
    from azure.core.exceptions import ClientAuthenticationError

    from llmcloud.providers.azure.arm import Arm
    from llmcloud.stacks.errors import CredentialsError

    class Refusing:
        def get_token(self, scope):
            raise ClientAuthenticationError("AADSTS500011: resource principal not found")

    arm = Arm({}, Refusing())
    with pytest.raises(CredentialsError, match="a token for the container registry") as caught:
        arm.token(f"{REGISTRY_AUDIENCE}/.default", service="the container registry")
    assert caught.value.context.startswith("AADSTS500011")


# -- Application Insights -------------------------------------------------------------------


@pytest.mark.parametrize("sku", ["Developer", "Premium", "PremiumV2", "StandardV2"])
def test_api_management_sends_traces_with_its_identity_not_the_key(sku):
    # Microsoft documents the managed-identity logger for all API Management tiers
    from llmcloud.stacks.plan import declare
    from tests.providers.declared import cloud_options

    with cloud_options("azure", {"apim_sku": sku}):
        resources, _ = declare(azure_spec(), "dev")
    service = one(resources, APIM)
    assert service.inputs["identity"] == {"type": "SystemAssigned"}
    insights = one(resources, INSIGHTS)
    # IM-1: "Application Insights components should block non-Azure Active Directory based
    # ingestion"
    assert insights.inputs["disableLocalAuth"] is True
    logger = one(resources, LOGGER)
    assert logger.inputs["credentials"] == {
        "connectionString": insights.outputs["connectionString"],
        "identityClientId": "SystemAssigned"}
    [publisher] = [r for r in of_type(resources, ROLE) if r.inputs["scope"] == insights.id]
    assert publisher.inputs["roleDefinitionId"].endswith(MONITORING_METRICS_PUBLISHER)
    assert publisher.inputs["principalId"] == service.outputs["identity"]["principalId"]
    # the logger switches to the identity only once the identity may publish
    assert publisher.name in logger.depends_on


@pytest.mark.parametrize("inputs, passes", [
    ({"disableLocalAuth": True}, True), ({"disableLocalAuth": False}, False), ({}, False)])
def test_the_insights_local_auth_check(inputs, passes):
    results = [r for r in run_checks([Resource(INSIGHTS, "insights", inputs)])
               if r.id == "LLMCLOUD_AZURE_5"]
    assert [r.passed for r in results] == [passes]
