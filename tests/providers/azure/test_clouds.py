"""Sovereign clouds: the boot script, the private DNS zones and the CLI's tokens follow the
stack's Azure cloud (`clouds.py`); what a cloud does not offer is refused at plan time."""

from __future__ import annotations

import pulumi
import pytest

from llmcloud.providers.azure.cloud_init import ServerLaunch, render_custom_data
from llmcloud.providers.azure.clouds import CLOUDS, cloud_named, environment_name
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.stacks.errors import ConfigError
from tests.providers.azure.helpers import azure_spec
from tests.providers.declared import RecordingMocks

DIGEST = "llmdev1.azurecr.cn/qwen-server@sha256:" + "a" * 64


def _script(cloud: str, region: str, in_flight: bool = True) -> str:
    return render_custom_data(ServerLaunch(
        image=DIGEST, model_uri="az://acct/llmcloud/models/qwen/v3", model_version="v3",
        identity_client_id="1234", region=region, cloud=CLOUDS[cloud],
        publish_in_flight=in_flight))


def test_the_public_cloud_script_keeps_its_addresses():
    script = _script("public", "westeurope")
    assert "resource=https://containerregistry.azure.net&" in script
    assert "resource=https://management" not in script  # ARM tokens: refused
    assert "resource=https://monitoring.azure.com/&" in script
    assert '"https://westeurope.monitoring.azure.com$RID/metrics"' in script


def test_the_china_script_asks_china_for_its_tokens_and_posts_metrics_there():
    script = _script("china", "chinaeast2")
    assert "resource=https://containerregistry.azure.net&" in script
    assert "resource=https://management" not in script  # ARM tokens: refused
    assert "resource=https://monitoring.azure.cn/&" in script
    assert '"https://chinaeast2.monitoring.azure.cn$RID/metrics"' in script
    assert "azure.com" not in script


def test_the_us_government_script_has_no_metrics_publisher_to_guess():
    script = _script("usgovernment", "usgovvirginia", in_flight=False)
    assert "resource=https://containerregistry.azure.net&" in script
    assert "resource=https://management" not in script  # ARM tokens: refused
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


def test_plan_deploys_to_the_sovereign_clouds_and_refuses_an_unknown_one():
    _provider("china").check_spec(azure_spec(region="chinaeast2"))
    _provider("AzureUSGovernment").check_spec(
        azure_spec(region="usgovvirginia", autoscaling={"signal": "requests", "target": 120}))
    with pytest.raises(ConfigError, match="not one llmcloud deploys to"):
        _provider("AzureGermanCloud").check_spec(azure_spec())
    _provider("AzureCloud").check_spec(azure_spec())


def test_plan_with_arm_environment_china_succeeds_and_us_government_in_flight_does_not(
        project, cli, monkeypatch):
    import base64
    import json

    monkeypatch.setenv("ARM_ENVIRONMENT", "china")
    result = cli("plan", "--provider", "azure", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    uri = document["outputs"]["model_uri"]
    assert uri.startswith("az://") and ".blob.core.chinacloudapi.cn/llmcloud/models/" in uri
    [vmss] = [r for r in document["resources"]
              if r["type"] == "azure-native:compute:VirtualMachineScaleSet"]
    script = base64.b64decode(
        vmss["inputs"]["virtualMachineProfile"]["osProfile"]["customData"]).decode()
    assert f"--model {uri} " in script
    monkeypatch.setenv("ARM_ENVIRONMENT", "usgovernment")
    refused = cli("plan", "--provider", "azure", "--stack", "dev", "--json")
    assert refused.exit_code != 0
    assert "in_flight is not offered in Azure US Government" in refused.output


def test_the_china_stack_puts_its_private_endpoints_in_china_zones():
    from llmcloud.providers.azure.service import build_service

    mocks = RecordingMocks(AzureProvider())
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
    assert "resource=https://monitoring.azure.cn/&" in script and "azure.com" not in script
    assert "windows.net" not in script


@pytest.mark.parametrize("environment, host", [
    ("china", "blob.core.chinacloudapi.cn"), ("usgovernment", "blob.core.usgovcloudapi.net")])
def test_a_sovereign_stack_names_its_blob_host_in_the_model_urls(environment, host):
    """The server reads the model, `model upload` writes it and `promote` checks it at the
    host the stack's outputs name: the sovereign cloud's, not the public cloud's."""
    import base64

    from llmcloud.providers.azure.service import build_service

    mocks = RecordingMocks(AzureProvider())
    pulumi.runtime.set_mocks(mocks, project="llmcloud", stack="dev", preview=True)
    spec = azure_spec(region="chinaeast2", autoscaling={"signal": "requests", "target": 120})

    seen = []

    @pulumi.runtime.test
    def declare():
        outputs = build_service(spec, "dev", AzureOptions(environment=environment))
        return pulumi.Output.all(outputs["model_uri"], outputs["model_store_uri"]).apply(
            seen.extend)

    declare()
    model_uri, store_uri = seen
    [account] = [a["accountName"] for a in mocks.created["azure-native:storage:StorageAccount"]]
    assert store_uri == f"az://{account}.{host}/llmcloud/models"
    assert model_uri == f"az://{account}.{host}/llmcloud/models/qwen2-5-0-5b-instruct/v1"
    [vmss] = mocks.created["azure-native:compute:VirtualMachineScaleSet"]
    script = base64.b64decode(vmss["virtualMachineProfile"]["osProfile"]["customData"]).decode()
    assert f"--model {model_uri} --model-version v1" in script


def test_the_public_stack_keeps_its_model_urls():
    from llmcloud.providers.azure import naming

    assert naming.model_uri("acct", "qwen", "v3", cloud=CLOUDS["public"]) == (
        "az://acct/llmcloud/models/qwen/v3")
    assert naming.store_uri("acct", cloud=CLOUDS["china"]) == (
        "az://acct.blob.core.chinacloudapi.cn/llmcloud/models")


def test_each_clouds_blob_host_is_one_the_server_reads():
    from llmcloud.inference_image.bucket_stores import AZURE_BLOB_CLOUDS

    assert {c.blob_suffix: c.authority_host for c in CLOUDS.values()} == AZURE_BLOB_CLOUDS
    assert CLOUDS["usgovernment"].blob_host("acct") == "acct.blob.core.usgovcloudapi.net"
    for cloud in CLOUDS.values():
        assert cloud.private_zones["blob"] == "privatelink." + cloud.blob_suffix


def test_the_image_push_asks_the_callers_cloud_for_a_registry_token(
        tmp_path, monkeypatch):
    import azure.identity

    from llmcloud.providers.azure import provider as azure_provider
    from llmcloud.providers.base import StackContext

    scopes, authorities = [], []

    class Credential:
        def __init__(self, **options):
            authorities.append(options)

        def get_token(self, scope):
            scopes.append(scope)
            return type("Token", (), {"token": "aad"})()

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Credential)
    monkeypatch.setattr(azure_provider, "exchange_acr_token", lambda host, token: "refresh")
    # AZURE_* variables: DefaultAzureCredential's (ARM_* ones: test_sign_in.py)
    environ = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s",
               "ARM_ENVIRONMENT": "usgovernment"}
    ctx = StackContext(tmp_path, "dev", azure_spec(), environ=environ)
    assert AzureProvider().registry_login(ctx, "llmdev1.azurecr.us/x") == (
        azure_provider.ACR_TOKEN_USER, "refresh")
    # the registry's own audience (the same in every cloud), not Resource Manager's
    assert scopes == ["https://containerregistry.azure.net/.default"]
    # a service principal signs in to the US Government's Entra ID, not the public one's
    assert authorities == [{"authority": "login.microsoftonline.us"}]


def test_resource_manager_requests_sign_in_to_the_callers_cloud(monkeypatch):
    import azure.identity

    from llmcloud.providers.azure.arm import Arm

    made = []
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential",
                        lambda **options: made.append(options))
    assert Arm({"ARM_ENVIRONMENT": "china"}).endpoint == "https://management.chinacloudapi.cn"
    Arm({})
    assert made == [{"authority": "login.chinacloudapi.cn"}, {}]
