"""Sovereign clouds: the boot script, the private DNS zones and the CLI's tokens follow the
stack's Azure cloud (`clouds.py`); what a cloud does not offer is refused at plan time."""

from __future__ import annotations

import pulumi
import pytest

from llmcloud.providers.azure.cloud_init import ServerLaunch, render_custom_data
from llmcloud.providers.azure.clouds import CLOUDS, cloud_named, environment_name
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.stacks.errors import ConfigError, NotSupportedError
from tests.providers.azure.helpers import azure_spec

DIGEST = "llmdev1.azurecr.cn/qwen-server@sha256:" + "a" * 64


def _script(cloud: str, region: str, in_flight: bool = True) -> str:
    return render_custom_data(ServerLaunch(
        image=DIGEST, model_uri="az://acct/llmcloud/models/qwen/v3", model_version="v3",
        identity_client_id="1234", region=region, cloud=CLOUDS[cloud],
        publish_in_flight=in_flight))


def test_the_public_cloud_script_keeps_its_addresses():
    script = _script("public", "westeurope")
    assert "resource=https://management.azure.com/&" in script
    assert "resource=https://monitoring.azure.com/&" in script
    assert '"https://westeurope.monitoring.azure.com$RID/metrics"' in script


def test_the_china_script_asks_china_for_its_tokens_and_posts_metrics_there():
    script = _script("china", "chinaeast2")
    assert "resource=https://management.chinacloudapi.cn/&" in script
    assert "resource=https://monitoring.azure.cn/&" in script
    assert '"https://chinaeast2.monitoring.azure.cn$RID/metrics"' in script
    assert "azure.com" not in script


def test_the_us_government_script_has_no_metrics_publisher_to_guess():
    script = _script("usgovernment", "usgovvirginia", in_flight=False)
    assert "resource=https://management.usgovcloudapi.net/&" in script
    assert "azure.com" not in script and "llmcloud-metrics" not in script
    with pytest.raises(ValueError, match="custom-metrics"):
        _script("usgovernment", "usgovvirginia")


def test_cloud_names_as_pulumi_and_the_az_cli_spell_them():
    assert cloud_named(None) is CLOUDS["public"] and cloud_named("AzureCloud").name == "public"
    assert cloud_named("AzureUSGovernment").name == "usgovernment"
    assert cloud_named("AzureChinaCloud").name == "china"
    assert cloud_named(" China ").name == "china"
    with pytest.raises(ValueError, match="german"):
        cloud_named("german")
    # pulumi-azure-native's order: its setting, ARM_ENVIRONMENT, AZURE_ENVIRONMENT
    environ = {"ARM_ENVIRONMENT": "china", "AZURE_ENVIRONMENT": "usgovernment"}
    assert environment_name(environ, "public") == "public"
    assert environment_name(environ) == "china"
    assert environment_name({"AZURE_ENVIRONMENT": "usgovernment"}) == "usgovernment"
    assert AzureOptions.from_environ({"ARM_ENVIRONMENT": "china"}).environment == "china"
    assert AzureOptions.from_environ({}).environment == "public"


def _provider(environment: str) -> AzureProvider:
    provider = AzureProvider()
    provider.options = AzureOptions(environment=environment)
    return provider


def test_plan_refuses_the_in_flight_signal_where_azure_documents_no_endpoint():
    with pytest.raises(ConfigError, match="in_flight is not offered in Azure US Gov"):
        _provider("usgovernment").check_spec(azure_spec(region="usgovvirginia"))


def test_plan_refuses_a_sovereign_cloud_the_server_cannot_load_models_in():
    spec = azure_spec(region="chinaeast2", autoscaling={"signal": "requests"})
    with pytest.raises(NotSupportedError, match="Azure China") as caught:
        _provider("china").check_spec(spec)
    assert "blob.core.windows.net" in caught.value.context
    with pytest.raises(ConfigError, match="not one llmcloud deploys to"):
        _provider("AzureGermanCloud").check_spec(azure_spec())
    _provider("AzureCloud").check_spec(azure_spec())


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.provider = AzureProvider()
        self.created: dict[str, list[dict]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.setdefault(args.typ, []).append(args.inputs)
        if not args.custom:
            return f"{args.name}-component", {}
        return self.provider.mock_resource(args.typ, args.name, args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return self.provider.mock_invoke(args.token, args.args)


def test_the_china_stack_puts_its_private_endpoints_in_china_zones():
    from llmcloud.providers.azure.service import build_service

    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project="llmcloud", stack="dev", preview=True)
    spec = azure_spec(region="chinaeast2")

    @pulumi.runtime.test
    def declare():
        return pulumi.Output.from_input(build_service(spec, "dev", AzureOptions(
            environment="china"))["image"])

    declare()
    zones = {z["privateZoneName"] for z in mocks.created["azure-native:privatedns:PrivateZone"]}
    assert zones == {"privatelink.blob.core.chinacloudapi.cn", "privatelink.azurecr.cn"}
    [vmss] = mocks.created["azure-native:compute:VirtualMachineScaleSet"]
    import base64

    script = base64.b64decode(vmss["virtualMachineProfile"]["osProfile"]["customData"]).decode()
    assert "management.chinacloudapi.cn/" in script and "azure.com" not in script


def test_the_image_push_asks_for_a_resource_manager_token_of_the_callers_cloud(
        tmp_path, monkeypatch):
    import azure.identity

    from llmcloud.providers.azure import provider as azure_provider
    from llmcloud.providers.base import StackContext

    scopes = []

    class Credential:
        def get_token(self, scope):
            scopes.append(scope)
            return type("Token", (), {"token": "aad"})()

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Credential)
    monkeypatch.setattr(azure_provider, "exchange_acr_token", lambda host, token: "refresh")
    environ = {"ARM_CLIENT_ID": "c", "ARM_TENANT_ID": "t", "ARM_CLIENT_SECRET": "s",
               "ARM_ENVIRONMENT": "usgovernment"}
    ctx = StackContext(tmp_path, "dev", azure_spec(), environ=environ)
    assert AzureProvider().registry_login(ctx, "llmdev1.azurecr.us/x") == (
        azure_provider.ACR_TOKEN_USER, "refresh")
    assert scopes == ["https://management.usgovcloudapi.net/.default"]
