"""The console's rollout form takes `min_requests` (as `--min-requests`): refused without a
bake as the CLI refuses it, shown with the bake, and a bake that counted fewer requests
fails the rollout with the previous version back. A running local stack (fake replicas);
the bake's clock does not wait (`test_console_bake`'s `baking`)."""

from __future__ import annotations

import pytest

from tests.console.conftest import wait_rollout
from tests.console.test_console_bake import baking, bearer, fragment_of  # noqa: F401


@pytest.fixture
def quiet(request):
    """``quiet(*reads)``: `test_console_bake`'s `baking`, with v2 uploaded."""
    return request.getfixturevalue("baking")


def test_min_requests_without_a_bake_is_refused_before_anything_runs(console, running):
    headers = bearer(running.admin_key)
    refused = console.post("/api/rollouts", json={"action": "rollback", "min_requests": 10},
                           headers=headers)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["message"] == "--min-requests needs --bake" and "--bake" in error["hint"]
    for wrong in (-1, True, "many"):
        invalid = console.post("/api/rollouts", json={
            "action": "rollback", "bake_seconds": 70, "min_requests": wrong}, headers=headers)
        assert invalid.status_code == 422 and "min_requests" in invalid.text
    # on the form: the refusal shows in the confirmation's error slot
    on_form = console.post("/api/rollouts", data={"action": "rollback", "bake_seconds": "",
                                                  "min_requests": "5"},
                           headers={**fragment_of(running.admin_key), "HX-Target": "confirm"})
    assert on_form.headers["HX-Retarget"] == "#confirm-error"
    assert "--min-requests needs --bake" in on_form.text
    assert console.get("/api/rollouts/current", headers=headers).status_code == 404


def test_the_confirmation_offers_the_field_with_the_bake(console, running):
    confirm = console.get("/models/confirm?action=promote&version=v2",
                          headers=bearer(running.admin_key)).text
    assert 'name="min_requests"' in confirm
    assert 'hx-include="#bake-seconds, #min-requests"' in confirm


def test_a_bake_that_counted_too_few_requests_fails_and_the_previous_version_serves(
        console, running, quiet):
    quiet({})
    headers = bearer(running.admin_key)
    started = console.post("/api/rollouts", data={"action": "promote", "version": "v2",
                                                  "bake_seconds": "70", "min_requests": "5"},
                           headers=headers)
    assert started.status_code == 202, started.text
    assert started.json()["bake"]["min_requests"] == 5
    done = wait_rollout(console, headers)
    assert done["state"] == "failed", done
    assert done["error"]["message"] == "promoting v2 failed; v1 is serving again"
    assert "the bake counted 0 requests, fewer than the 5" in done["error"]["context"]
    assert "lower --min-requests" in done["error"]["hint"]
    assert console.get("/api/deployment", headers=headers).json()["model_version"] == "v1"
    page = console.get("/api/rollouts/current", headers=fragment_of(running.admin_key)).text
    assert "at least 5 requests" in page


def test_an_empty_field_asks_for_no_requests(console, running, quiet):
    quiet({})
    headers = bearer(running.admin_key)
    started = console.post("/api/rollouts", data={"action": "promote", "version": "v2",
                                                  "bake_seconds": "70", "min_requests": ""},
                           headers=headers)
    assert started.status_code == 202, started.text
    done = wait_rollout(console, headers)
    assert done["state"] == "succeeded", done
    assert (done["result"]["baked_requests"], done["result"]["min_requests"]) == (0, 0)
