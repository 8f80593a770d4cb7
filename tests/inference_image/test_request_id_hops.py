"""One request's id from each cloud's gateway to the server's log line: what each gateway
declares it sends (API Gateway's integration mapping, API Management's policy, Google's
trace header) fed to the real server, whose `llmcloud.requests` line must carry it."""

from __future__ import annotations

import json
import logging
import re
import uuid
import xml.etree.ElementTree as ET

import pytest
from fake_engine import FakeEngine
from starlette.testclient import TestClient

from llmcloud.inference_image.log_format import JsonFormatter
from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.inference_image.router import ServerState, create_app
from llmcloud.inference_image.serving import OpenAIServing

COMP = "/v1/completions"
#: what Google's load balancer sends (TRACE_ID/SPAN_ID;o=TRACE_TRUE)
CLOUD_TRACE = "105445aa7843bc8bf206b12000100000/1;o=1"


@pytest.fixture()
def server(tokenizer) -> TestClient:
    engine = FakeEngine(tokenizer)
    metrics = ServerMetrics("fake-model", "v0", engine.info.task, lambda: engine.num_running,
                            lambda: engine.num_waiting)
    return TestClient(create_app(ServerState(OpenAIServing(engine, metrics, "auto"))))


def _lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "llmcloud.requests"]


def _answered_and_refused(server: TestClient, caplog, headers: dict[str, str]):
    caplog.set_level(logging.INFO)
    answer = server.post(COMP, json={"prompt": "hi", "max_tokens": 2}, headers=headers)
    refused = server.post(COMP, json={"prompt": "hi", "max_tokens": 0}, headers=headers)
    assert answer.status_code == 200 and refused.status_code == 400
    return answer, _lines(caplog)


def test_api_gateways_request_id_reaches_the_servers_log_line(server, caplog):
    from llmcloud.providers.aws.gateway import REQUEST_ID_MAPPING

    ((target, source),) = REQUEST_ID_MAPPING.items()
    # the access log's `extendedRequestId`, the client's `x-amz-apigw-id`: API Gateway's
    # own (a client may set `requestId`)
    assert source == "context.extendedRequestId"
    header = target.removeprefix("integration.request.header.")
    gateway_id = "KxyZ3F7xoAMFnRw="  # what $context.extendedRequestId looks like
    answer, lines = _answered_and_refused(server, caplog, {header: gateway_id})
    assert lines[0].getMessage().startswith(answer.json()["id"])
    assert all(r.getMessage().endswith(f" client_request_id={gateway_id}") for r in lines)


def _set_headers(policy: str, section: str) -> dict[str, str]:
    node = ET.fromstring(policy).find(section)
    return {h.get("name"): h.findtext("value") for h in node.iter("set-header")
            if h.get("exists-action") == "override"}


def test_api_managements_request_id_reaches_the_servers_log_line(server, caplog):
    from llmcloud.providers.azure.apim import GATEWAY_ID_HEADER, api_policy

    policy = api_policy(rate_per_second=5, burst=10, quota_per_day=None,
                        allowed_cidrs=["0.0.0.0/0"], timeout_seconds=60, max_body_kb=64)
    inbound = _set_headers(policy, "inbound")
    to_server = {name: value for name, value in inbound.items()
                 if name.lower() == "x-request-id"}
    assert to_server == {"X-Request-Id": "@(context.RequestId.ToString())"}
    # the same id back to the client, on answers and on the gateway's own refusals
    for section in ("outbound", "on-error"):
        assert _set_headers(policy, section)[GATEWAY_ID_HEADER] == to_server["X-Request-Id"]
    gateway_id = str(uuid.uuid4())  # a Guid's ToString(): what context.RequestId gives
    answer, lines = _answered_and_refused(server, caplog, {"X-Request-Id": gateway_id})
    assert all(r.getMessage().endswith(f" client_request_id={gateway_id}") for r in lines)


def test_googles_trace_reaches_the_servers_log_line(server, caplog):
    # The balancer's log entry has `trace: projects/P/traces/<id>`; the client's own
    # X-Request-Id passes through it unchanged.
    answer, lines = _answered_and_refused(
        server, caplog, {"X-Cloud-Trace-Context": CLOUD_TRACE, "X-Request-Id": "mine-1"})
    trace = CLOUD_TRACE.split("/")[0]
    assert all(r.getMessage().endswith(f" client_request_id=mine-1 trace_id={trace}")
               for r in lines)
    entries = [json.loads(JsonFormatter().format(r)) for r in lines]
    assert [(e["trace_id"], e["client_request_id"]) for e in entries] == [(trace, "mine-1")] * 2


def test_a_trace_header_that_is_not_googles_is_left_out(server, caplog):
    _, lines = _answered_and_refused(
        server, caplog, {"X-Cloud-Trace-Context": "forged trace_id=0 finish=stop"})
    assert not [r for r in lines if "trace_id" in r.getMessage()
                or "trace_id" in getattr(r, "fields", {})]
    assert all(re.search(r"(choices=1|param=max_tokens)$", r.getMessage()) for r in lines)
