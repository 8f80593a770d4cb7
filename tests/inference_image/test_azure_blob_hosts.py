"""The server's Azure store reads from the account's blob host in its own cloud: an az:// URL
names the account (the public cloud) or its whole blob host (a sovereign cloud)."""

from __future__ import annotations

import pytest

from llmcloud.inference_image.bucket_stores import open_store

AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
           "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw"
           "==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The options each DefaultAzureCredential is made with (no token is asked for)."""
    import azure.identity

    made: list[dict] = []

    class Credential:
        def __init__(self, **options):
            made.append(options)

        def get_token(self, *scopes, **options):
            raise AssertionError("these tests ask for no token")

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Credential)
    return made


@pytest.mark.parametrize("url, account_url, authority", [
    ("az://acct/llmcloud/models/m/v1", "https://acct.blob.core.windows.net", None),
    ("az://acct.blob.core.windows.net/llmcloud/models/m/v1",
     "https://acct.blob.core.windows.net", None),
    ("az://acct.blob.core.chinacloudapi.cn/llmcloud/models/m/v1",
     "https://acct.blob.core.chinacloudapi.cn", "login.chinacloudapi.cn"),
    ("az://acct.blob.core.usgovcloudapi.net/llmcloud/models/m/v1",
     "https://acct.blob.core.usgovcloudapi.net", "login.microsoftonline.us"),
])
def test_the_store_reads_from_the_clouds_blob_host(credentials, url, account_url, authority):
    store = open_store(url)
    assert store._container.url == f"{account_url}/llmcloud"
    assert store._container.primary_hostname == account_url.removeprefix("https://")
    # a service principal signs in to its cloud's Entra ID; the public cloud's as before
    assert credentials == [{"authority": authority} if authority else {}]


@pytest.mark.parametrize("netloc", [
    "acct.example.com", "acct.blob.core.windows.net.example.com",
    "acct.file.core.chinacloudapi.cn", "a.blob.core.windows.net", "acct:8080"])
def test_a_host_that_is_not_azures_blob_service_is_refused(credentials, netloc):
    with pytest.raises(ValueError, match="expected a storage account name or its blob host"):
        open_store(f"az://{netloc}/llmcloud/models/m/v1")
    assert credentials == []  # refused before any credential was made


def test_a_connection_string_still_names_the_endpoint(credentials, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", AZURITE)
    for url in ("az://devstoreaccount1/models/m/v1",
                "az://devstoreaccount1.blob.core.chinacloudapi.cn/models/m/v1"):
        store = open_store(url)
        assert store._container.url == "http://127.0.0.1:10000/devstoreaccount1/models"
    assert credentials == []
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    assert open_store("az://devstoreaccount1.blob.core.chinacloudapi.cn/models/m").where == (
        "az://devstoreaccount1.blob.core.chinacloudapi.cn/models")
    assert credentials == [{"authority": "login.chinacloudapi.cn"}]
