"""`llmcloud keys` on Azure: API Management subscriptions to the stack's product, made
through Resource Manager. The provider's real session talks to a fake Resource Manager on
loopback (API Management's subscription routes)."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from llmcloud.providers.azure import api_keys
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.providers.fakes import AzureToken, JsonApi, Outputs, serving

APIM = ("/subscriptions/sub/resourceGroups/llm-prod-rg/providers/Microsoft.ApiManagement/"
        "service/llm-prod-apim")


class FakeApim(JsonApi):
    """API Management's subscriptions (by sid), listed one per page to follow nextLink."""

    subscriptions: dict[str, dict] = {}
    keys: dict[str, str] = {}
    asked: list[tuple[str, str, dict]] = []

    def _route(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        type(self).asked.append((self.command, url.path, query))
        if query.get("api-version") != api_keys.API_VERSION:
            return None, None, query
        return url.path, self.headers, query

    def do_GET(self):  # noqa: N802 - http.server's name
        path, _, query = self._route()
        if path != f"{APIM}/products/llm/subscriptions":
            return self.answer(404, {"error": {"message": f"no route {path}"}})
        items = sorted(self.subscriptions.values(), key=lambda s: s["name"])
        start = int(query.get("skip", 0))
        page = {"value": items[start:start + 1]}
        if start + 1 < len(items):
            page["nextLink"] = (f"http://127.0.0.1:{self.server.server_port}{path}"
                                f"?api-version={api_keys.API_VERSION}&skip={start + 1}")
        self.answer(200, page)

    def do_PUT(self):  # noqa: N802
        path, _, query = self._route()
        sid = path.rsplit("/", 1)[-1] if path else ""
        if path != f"{APIM}/subscriptions/{sid}" or query.get("notify") != "false":
            return self.answer(400, {"error": {"message": "bad request"}})
        body = self.body()["properties"]
        if body["scope"] != "/products/llm":
            return self.answer(403, {"error": {"message": "scope not allowed"}})
        type(self).keys[sid] = body["primaryKey"]
        item = {"name": sid, "properties": {
            "scope": f"{APIM}/products/llm", "displayName": body["displayName"],
            "state": body["state"], "createdDate": datetime.now(timezone.utc).isoformat()}}
        type(self).subscriptions[sid] = item
        self.answer(201, item)  # (API Management returns no keys here)

    def do_DELETE(self):  # noqa: N802
        path, headers, _ = self._route()
        sid = path.rsplit("/", 1)[-1] if path else ""
        if headers is None or headers.get("If-Match") != "*" or sid not in self.subscriptions:
            return self.answer(412, {"error": {"message": "precondition"}})
        del type(self).subscriptions[sid]
        self.answer(200, {})


@pytest.fixture
def azure(monkeypatch, tmp_path):
    import azure.identity

    from llmcloud.providers.azure import arm
    from llmcloud.providers.azure.provider import AzureProvider
    from llmcloud.providers.base import StackContext
    from tests.providers.azure.helpers import azure_spec

    FakeApim.subscriptions = {"default": {"name": "default", "properties": {
        "scope": f"{APIM}/products/llm", "displayName": "default", "state": "active",
        "createdDate": "2026-11-01T00:00:00Z"}}}
    FakeApim.keys, FakeApim.asked = {}, []
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", AzureToken)
    outputs = {"apim_id": APIM}
    monkeypatch.setattr(AzureProvider, "_engine", lambda self, ctx, operation: Outputs(outputs))
    environ = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"}
    with serving(FakeApim) as url:
        monkeypatch.setitem(arm.ENDPOINTS, "public", url)
        yield AzureProvider(), StackContext(tmp_path, "prod", azure_spec(), environ=environ), \
            outputs


def test_a_key_is_a_subscription_to_the_stacks_product_shown_once(azure):
    provider, ctx, _ = azure
    made = provider.keys_create(ctx, "ci pipeline")
    assert made["key"].startswith("llmc-") and made["prefix"] == made["key"][:9]
    assert FakeApim.keys[made["id"]] == made["key"]  # API Management checks this one
    assert made["name"] == "ci pipeline" and made["managed_by"] == "keys"
    assert made["admin"] is False


def test_keys_are_listed_across_pages_without_their_keys(azure):
    provider, ctx, _ = azure
    first, second = provider.keys_create(ctx, "a"), provider.keys_create(ctx, "b")
    listed = provider.keys_list(ctx)
    assert {k["id"] for k in listed} == {"default", first["id"], second["id"]}
    by_id = {k["id"]: k for k in listed}
    assert by_id["default"]["managed_by"] == "stack"
    assert by_id[first["id"]]["prefix"] == first["prefix"]
    assert first["key"] not in repr(listed) and second["key"] not in repr(listed)
    assert sum(1 for method, *_ in FakeApim.asked if method == "GET") >= 3  # one per page


def test_revoking_deletes_the_subscription(azure):
    provider, ctx, _ = azure
    made = provider.keys_create(ctx, "leaked")
    assert provider.keys_revoke(ctx, made["id"])["revoked"] is True
    assert set(FakeApim.subscriptions) == {"default"}


def test_the_stacks_own_key_and_unknown_ids_are_not_revoked(azure):
    provider, ctx, _ = azure
    with pytest.raises(ConfigError, match="would make again"):
        provider.keys_revoke(ctx, "default")
    with pytest.raises(ConfigError, match="has no API key key-0"):
        provider.keys_revoke(ctx, "key-0")
    assert set(FakeApim.subscriptions) == {"default"}


def test_admin_keys_are_refused_and_refusals_are_reported(azure):
    provider, ctx, outputs = azure
    with pytest.raises(ConfigError, match="local provider only"):
        provider.keys_create(ctx, "ops", admin=True)
    outputs["apim_id"] = APIM + "-other"
    with pytest.raises(DeploymentError) as failed:
        provider.keys_list(ctx)
    assert failed.value.message == ("API Management answered HTTP 404 listing the "
                                    "subscriptions")
    outputs.pop("apim_id")
    with pytest.raises(DeploymentError) as missing:
        provider.keys_list(ctx)
    assert missing.value.hint == "llmcloud up --provider azure --stack prod"
