"""`gateway.max_body_kb` in API Management's policy, decided for sample requests.

The policy's conditions are C# expressions that only API Management runs; `_decide` reads
the few forms `apim._body_limit` writes (header lookups, `Body != null`, `long.Parse`,
`&&`, `||`, comparisons) as Python, and fails on anything else, so a condition it cannot
read is a failing test rather than a silent pass.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from llmcloud.providers.azure import apim

LIMIT_KB = 4
_HEADER = re.compile(r'context\.Request\.Headers\.GetValueOrDefault\("([^"]+)", "([^"]*)"\)')
_ALLOWED = re.compile(r'(header\("[^"]+", "[^"]*"\)|has_body|int\(| and | or '
                      r'|"[^"]*"|\d+|[()<>=!\s])+')


def _python(condition: str) -> str:
    assert condition.startswith("@(") and condition.endswith(")"), condition
    code = _HEADER.sub(r'header("\1", "\2")', condition[2:-1])
    code = code.replace("context.Request.Body != null", "has_body")
    code = code.replace("long.Parse(", "int(").replace("&&", " and ").replace("||", " or ")
    assert _ALLOWED.fullmatch(code), f"a condition this test cannot read: {condition}"
    return code


def _decide(policy: str, headers: dict[str, str], has_body: bool) -> int | None:
    """The status the inbound policy answers with itself, or None when it forwards."""
    lowered = {name.lower(): value for name, value in headers.items()}

    def header(name: str, default: str) -> str:
        return lowered.get(name.lower(), default)

    for when in ET.fromstring(policy).findall("inbound/choose/when"):
        if eval(_python(when.get("condition")), {"header": header, "has_body": has_body}):
            return int(when.find("return-response/set-status").get("code"))
    return None


@pytest.fixture(scope="module")
def policy() -> str:
    return apim.api_policy(rate_per_second=10, burst=20, quota_per_day=None,
                           allowed_cidrs=["0.0.0.0/0"], timeout_seconds=300,
                           max_body_kb=LIMIT_KB)


@pytest.mark.parametrize(("headers", "has_body", "status"), [
    ({"Content-Length": str(LIMIT_KB * 1024)}, True, None),  # at the limit
    ({"Content-Length": str(LIMIT_KB * 1024 + 1)}, True, 413),
    ({}, False, None),  # GET /v1/models
    ({"Content-Length": "0"}, False, None),
    # chunked: no Content-Length, so the old check read "0" and let any size through
    ({"Transfer-Encoding": "chunked"}, True, 411),
    # a small declared length beside chunked framing would smuggle a large body past it
    ({"Transfer-Encoding": "chunked", "Content-Length": "10"}, True, 411),
    # HTTP/2 frames the body itself and may leave the length out
    ({}, True, 411),
])
def test_the_limit_holds_whatever_the_framing(policy, headers, has_body, status):
    assert _decide(policy, headers, has_body) == status


def test_an_undeclared_length_gets_an_openai_shaped_411(policy):
    when = ET.fromstring(policy).find("inbound/choose/when")
    response = when.find("return-response")
    assert response.find("set-status").get("code") == "411"
    assert response.find("set-header/value").text == "application/json"
    error = json.loads(response.find("set-body").text)["error"]
    assert error["code"] == "length_required" and "Content-Length" in error["message"]


def test_the_body_checks_come_before_the_rate_limit(policy):
    names = [child.tag for child in ET.fromstring(policy).find("inbound")]
    assert names.index("choose") < names.index("rate-limit-by-key")
