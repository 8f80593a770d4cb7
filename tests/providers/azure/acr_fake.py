"""A fake Azure Container Registry for the prune: the token endpoint, the manifest listing
(`/acr/v1/{repo}/_manifests`, pages in digest order with the next page in a relative `Link`
header, as ACR answers) and the manifest delete, behind an httpx MockTransport."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs

import httpx

HOST = "llmdev.azurecr.io"
REPOSITORY = "llmcloud-server"
NOW = datetime.fromisoformat("2026-06-01T12:00:00+00:00")


def digest(n: int) -> str:
    """A digest that does not sort with `n`: pages in digest order mix old and new."""
    return "sha256:" + format((n * 7919) % 1000, "03d") * 21 + "0"


def manifest(n: int, age_days: float, tags: list[str] | None = None,
             delete_enabled: bool = True, references: list[int] | None = None) -> dict:
    """One item of ACR's listing: pushed `age_days` before NOW (seven fractional digits);
    with `references`, an index listing those manifests (ACR's `references`)."""
    pushed = (NOW - timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "3Z"
    item = {"digest": digest(n), "imageSize": 10_000_000_000, "createdTime": pushed,
            "lastUpdateTime": pushed, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "tags": [f"1.0.{n}"] if tags is None else tags,
            "changeableAttributes": {"deleteEnabled": delete_enabled, "writeEnabled": True,
                                     "readEnabled": True, "listEnabled": True}}
    if references is not None:
        item["mediaType"] = "application/vnd.oci.image.index.v1+json"
        item["references"] = [{"digest": digest(r), "architecture": "amd64", "os": "linux"}
                              for r in references]
    return item


class FakeAcr:
    """The registry's answers; `requests` records (method, path, query or form)."""

    def __init__(self, manifests: list[dict], page_size: int = 3):
        self.manifests = sorted(manifests, key=lambda m: m["digest"])
        self.page_size = page_size
        self.requests: list[tuple[str, str, dict]] = []
        self.list_status: dict[int, int] = {}  # page number -> status
        self.delete_status: dict[str, int] = {}  # digest -> status
        self.link_host = ""  # e.g. "https://elsewhere.example" for an absolute Link

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport)

    def deleted(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for method, path, _ in self.requests
                if method == "DELETE"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.requests.append(("POST", path, form))
            return httpx.Response(200, json={"access_token": "access-1"})
        assert request.headers["Authorization"] == "Bearer access-1"
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        self.requests.append((request.method, path, query))
        if request.method == "GET" and path == f"/acr/v1/{REPOSITORY}/_manifests":
            return self._page(query)
        if request.method == "DELETE" and path.startswith(f"/v2/{REPOSITORY}/manifests/"):
            found = path.rsplit("/", 1)[-1]
            status = self.delete_status.get(found, 202)
            if status == 202:
                self.manifests = [m for m in self.manifests if m["digest"] != found]
            return httpx.Response(status)
        return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})

    def _page(self, query: dict) -> httpx.Response:
        last = query.get("last", "")
        rest = [m for m in self.manifests if m["digest"] > last]
        number = sum(1 for _, p, _ in self.requests if p.endswith("/_manifests"))
        status = self.list_status.get(number, 200)
        if status != 200:
            return httpx.Response(status, json={"errors": [{"code": "UNKNOWN"}]})
        page = rest[:self.page_size]
        headers = {}
        if len(rest) > self.page_size:
            headers["Link"] = (f"<{self.link_host}/acr/v1/{REPOSITORY}/_manifests?"
                               f"last={page[-1]['digest']}&n={query.get('n')}&orderby=>; "
                               'rel="next"')
        return httpx.Response(200, headers=headers, json={
            "registry": HOST, "imageName": REPOSITORY, "manifests": page})
