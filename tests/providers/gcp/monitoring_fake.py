"""A fake Cloud Monitoring API on loopback, for the provider's reads after a bake (its open
alerts, the requests its load balancer answered)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp.provider import GcpProvider
from tests.providers.fakes import JsonApi, serving
from tests.providers.gcp.helpers import gcp_spec


class FakeMonitoring(JsonApi):
    """A Cloud Monitoring list (alerts or time series): ``pages`` in turn (by `pageToken`),
    or ``refusal``; ``asked`` holds each request's path and query."""

    pages: list[dict] = []
    refusal: tuple[int, dict] | None = None
    asked: list[tuple[str, dict]] = []

    def do_GET(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        type(self).asked.append((parts.path, query))
        if self.refusal:
            self.answer(*self.refusal)
            return
        self.answer(200, self.pages[int(query.get("pageToken", ["0"])[0])])


def monitoring_reads(monkeypatch) -> None:
    """GcpProvider's Google session the test's (project `my-proj`), nothing asked yet."""
    import requests

    monkeypatch.setattr(GcpProvider, "_google",
                        lambda self, ctx: (requests.Session(), "my-proj"))
    FakeMonitoring.asked = []


@contextlib.contextmanager
def monitoring_stack(project_dir: Path, pages: list[dict] | None = None,
                     refusal: tuple[int, dict] | None = None) -> Iterator[StackContext]:
    """The GCP stack `prod` whose Cloud Monitoring is the fake, answering ``pages`` (one
    empty page if None) or ``refusal``, for the block."""
    FakeMonitoring.pages, FakeMonitoring.refusal = pages or [{}], refusal
    with serving(FakeMonitoring) as url:
        environ = {"CLOUDSDK_API_ENDPOINT_OVERRIDES_MONITORING": f"{url}/v3/"}
        yield StackContext(project_dir, "prod", gcp_spec(), environ=environ)
