"""``logit_bias`` keys that are no token id as OpenAI writes them (ASCII digits): a 400 that
names the field, never a 500."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine
from starlette.testclient import TestClient
from test_http import CHAT, COMP, USER, assert_error, make_client


@pytest.fixture()
def client(tokenizer):
    served, _ = make_client(FakeEngine(tokenizer), max_body_bytes=1 << 16)
    # a bug's 500 comes back as an answer, not as an exception in the test
    return TestClient(served.app, raise_server_exceptions=False)


@pytest.mark.parametrize("key", [
    "\u00b2",  # superscript two: str.isdigit() takes it, int() refuses it
    "\u2460",  # circled one, the same
    "\u0661",  # Arabic-Indic one, which int() read as token 1
    "9" * 5000,  # more digits than int() converts
])
@pytest.mark.parametrize("path, body", [(COMP, {"prompt": "hi", "max_tokens": 2}),
                                        (CHAT, {"messages": USER, "max_tokens": 2}),
                                        ("/v1/responses", {"input": "hi"})])
def test_a_key_that_is_no_token_id_is_a_400(client, key, path, body):
    response = client.post(path, json={**body, "logit_bias": {key: 5}})
    error = assert_error(response, 400, param="logit_bias", code="invalid_value")
    assert "token ids" in error["message"]


def test_token_ids_still_take_a_bias(client):
    response = client.post(COMP, json={"prompt": "hi", "max_tokens": 2,
                                       "logit_bias": {"5": 10, " 7 ": -100}})
    assert response.status_code == 200, response.text
