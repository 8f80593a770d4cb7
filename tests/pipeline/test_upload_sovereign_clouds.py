"""`model upload` writes to the blob host of the caller's Azure cloud: the host an az:// URL
names, else the one of the cloud `ARM_ENVIRONMENT` names (as `pulumi up` deploys there)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmcloud.providers.model_stores import open_writable_store


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Each DefaultAzureCredential's options; asked for a token, it is refused (no request
    leaves the machine: the token comes before the request)."""
    import azure.identity
    from azure.core.exceptions import ClientAuthenticationError

    made: list[dict] = []

    class Credential:
        def __init__(self, **options):
            made.append(options)

        def get_token(self, *scopes, **options):
            raise ClientAuthenticationError("refused in this test")

        get_token_info = get_token

    for name in ("AZURE_STORAGE_CONNECTION_STRING", "ARM_ENVIRONMENT", "AZURE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Credential)
    return made


@pytest.mark.parametrize("environ, url, host, authority", [
    ({}, "az://acct/llmcloud/models", "acct.blob.core.windows.net", None),
    ({"ARM_ENVIRONMENT": "china"}, "az://acct/llmcloud/models",
     "acct.blob.core.chinacloudapi.cn", "login.chinacloudapi.cn"),
    ({"AZURE_ENVIRONMENT": "AzureUSGovernment"}, "az://acct/llmcloud/models",
     "acct.blob.core.usgovcloudapi.net", "login.microsoftonline.us"),
    # the host the URL names wins: the stack's outputs name it
    ({"ARM_ENVIRONMENT": "usgovernment"}, "az://acct.blob.core.chinacloudapi.cn/llmcloud/models",
     "acct.blob.core.chinacloudapi.cn", "login.chinacloudapi.cn"),
])
def test_the_writer_targets_the_clouds_blob_host(credentials, monkeypatch, environ, url, host,
                                                 authority):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    store, prefix = open_writable_store(url + "/m/v1")
    assert store._container.url == f"https://{host}/llmcloud"
    assert prefix == "models/m/v1/"
    assert credentials == [{"authority": authority} if authority else {}]


def test_upload_in_china_goes_to_chinas_blob_host(credentials, cli, tmp_path: Path,
                                                  monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("ARM_ENVIRONMENT", "china")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the SDK's retries of the refusal
    result = cli("model", "upload", str(folder), "--name", "m", "--version", "v1",
                 "--to", "az://acct/llmcloud/models")
    assert result.exit_code != 0
    assert "az://acct.blob.core.chinacloudapi.cn/llmcloud/models/m/v1/manifest.json" in (
        result.output)
    assert credentials == [{"authority": "login.chinacloudapi.cn"}]


def test_an_unknown_cloud_is_refused_not_guessed(credentials, monkeypatch):
    monkeypatch.setenv("ARM_ENVIRONMENT", "AzureGermanCloud")
    with pytest.raises(ValueError, match="not one llmcloud deploys to"):
        open_writable_store("az://acct/llmcloud/models/m/v1")
    assert credentials == []


def test_the_writer_signs_in_as_the_arm_service_principal_pulumi_uses(credentials, monkeypatch):
    # a CI set up the Pulumi way has only ARM_* variables, which DefaultAzureCredential
    # does not read: the upload signs in as that principal, in its cloud's Entra ID
    import azure.identity

    secrets: list[tuple] = []

    class Secret:
        def __init__(self, *args, **options):
            secrets.append((args, options))

        def get_token(self, *scopes, **options):
            raise AssertionError("no token is asked for here")

    monkeypatch.setattr(azure.identity, "ClientSecretCredential", Secret)
    for name, value in {"ARM_CLIENT_ID": "client-1", "ARM_TENANT_ID": "tenant-1",
                        "ARM_CLIENT_SECRET": "s3cret", "ARM_ENVIRONMENT": "china"}.items():
        monkeypatch.setenv(name, value)
    store, _ = open_writable_store("az://acct/llmcloud/models/m/v1")
    assert store._container.url == "https://acct.blob.core.chinacloudapi.cn/llmcloud"
    assert secrets == [(("tenant-1", "client-1", "s3cret"),
                        {"authority": "login.chinacloudapi.cn"})]
    assert credentials == []  # no DefaultAzureCredential


def test_promote_reads_the_manifest_as_the_arm_service_principal(credentials, monkeypatch):
    import azure.identity
    from azure.core.exceptions import ClientAuthenticationError

    from llmcloud.providers.rollout import check_version_in_store
    from llmcloud.stacks.errors import DeploymentError

    signed_in: list[tuple] = []

    class Secret:
        def __init__(self, *args, **options):
            signed_in.append(args)

        def get_token(self, *scopes, **options):
            raise ClientAuthenticationError("refused in this test")

        get_token_info = get_token

    monkeypatch.setattr(azure.identity, "ClientSecretCredential", Secret)
    for name, value in {"ARM_CLIENT_ID": "client-1", "ARM_TENANT_ID": "tenant-1",
                        "ARM_CLIENT_SECRET": "s3cret"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DeploymentError) as refused:
        check_version_in_store("az://acct/llmcloud/models", "m", "v1")
    assert refused.value.message.startswith("the model store refused access to az://acct")
    assert signed_in == [("tenant-1", "client-1", "s3cret")] and credentials == []
