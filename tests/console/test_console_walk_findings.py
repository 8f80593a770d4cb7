"""What an operator's walk of the console on a real local stack found: answers outside the
documented error shape, a request that started a rollout the CLI refuses, a JSON body that
made an admin key of `"yes"`, a confirmation for a promote of no version, and a bake's
seconds said ahead of its progress bar."""

from __future__ import annotations

from llmcloud.console.render import environment
from tests.console.conftest import csrf_of, login


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _documented(response) -> dict:
    document = response.json()
    assert set(document) == {"error"}, document
    assert set(document["error"]) == {"message", "context", "hint"}, document
    return document["error"]


def test_a_route_or_method_the_console_lacks_answers_in_the_documented_shape(console, running):
    missing = console.get("/api/nothing", headers=bearer(running.admin_key))
    assert missing.status_code == 404
    assert "/api/nothing" in _documented(missing)["message"]
    not_allowed = console.put("/api/keys", headers=bearer(running.admin_key))
    assert not_allowed.status_code == 405 and "GET" in not_allowed.headers["allow"]
    assert "PUT" in _documented(not_allowed)["message"]
    # a key id htmx could send that no route matches
    assert _documented(console.delete("/api/keys/a%2Fb", headers=bearer(running.admin_key)))


def test_refusals_of_who_calls_carry_the_documented_context_field(console, running):
    _documented(console.get("/api/keys"))
    _documented(console.get("/api/keys", headers=bearer(running.key)))


def test_a_promote_to_a_version_that_is_no_name_is_refused_before_a_rollout_starts(
        console, running):
    response = console.post("/api/rollouts", json={"action": "promote", "version": "../v1"},
                            headers=bearer(running.admin_key))
    assert response.status_code == 400
    assert "model.version" in _documented(response)["message"]
    # nothing ran: `llmcloud promote --model-version ../v1` is refused the same way (exit 2)
    assert console.get("/api/rollouts/current",
                       headers=bearer(running.admin_key)).status_code == 404


def test_admin_is_a_json_boolean_never_a_word(console, running):
    for word in ("yes", "on", 1):
        response = console.post("/api/keys", json={"name": "team", "admin": word},
                                headers=bearer(running.admin_key))
        assert response.status_code == 422, word
        assert "admin" in _documented(response)["message"]
    keys = console.get("/api/keys", headers=bearer(running.admin_key)).json()["keys"]
    assert [k["name"] for k in keys if k["admin"]] == ["ops"]
    # the page's form sends its checkbox as `on`, which still makes an admin key
    login(console, running.admin_key)
    form = console.post("/api/keys", data={"name": "team", "admin": "on"},
                        headers={"X-CSRF-Token": csrf_of(console)})
    assert form.status_code == 201 and form.json()["admin"] is True


def test_the_confirmation_of_a_promote_needs_a_version(console, running):
    login(console, running.admin_key)
    response = console.get("/models/confirm?action=promote",
                           headers={"HX-Request": "true", "HX-Target": "confirm"})
    assert "Promote None" not in response.text
    assert "promote needs a version" in response.text
    assert response.headers["hx-retarget"] == "#confirm-error"


def test_the_bakes_seconds_agree_with_its_progress_bar():
    fragment = environment.get_template("fragments/rollout.html").render(doc={
        "id": "rollout-1", "action": "promote", "target": "v2", "state": "running",
        "phase": "baking", "events": [], "replicas": [],
        "bake": {"seconds": 70, "min_requests": 0, "started": 1.0, "elapsed_seconds": 12.6}})
    assert "baking, 12 of 70 s" in fragment and 'value="12"' in fragment


def test_a_page_the_console_lacks_is_a_page_in_a_browser(console, running):
    # a mistyped address answered JSON in the browser, where the refusals of who calls
    # (401, 403, 429) answer the console's error page
    login(console, running.admin_key)
    response = console.get("/modles")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "the console has no /modles" in response.text and "/models" in response.text
    # scripts still get the documented JSON, htmx its error fragment
    assert _documented(console.get("/api/modles"))
