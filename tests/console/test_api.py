"""The console's JSON API and pages over a running local stack (fake replicas): every action,
its authentication, CSRF, and what the answers must never contain."""

from __future__ import annotations

import time

import httpx

from llmcloud.console.auth import LoginThrottle
from tests.console.conftest import auth, csrf_of, fake_model, login, wait_rollout


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- authentication ------------------------------------------------------------------------

def test_every_api_route_refuses_no_key_a_wrong_key_and_a_client_key(console, running):
    routes = [("GET", "/api/deployment"), ("GET", "/api/models"), ("GET", "/api/keys"),
              ("POST", "/api/keys"), ("DELETE", "/api/keys/key-0"), ("GET", "/api/metrics"),
              ("POST", "/api/rollouts"), ("GET", "/api/rollouts/current"),
              ("GET", "/api/openapi.json"), ("GET", "/models/confirm?action=rollback")]
    guard = console.app.state.console.guard
    for method, path in routes:
        guard.throttle = LoginThrottle()  # this test is not about guessing
        anonymous = console.request(method, path)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "login" in (anonymous.json()["error"]["hint"] if path.startswith("/api/")
                           else anonymous.text)
        wrong = console.request(method, path, headers=bearer("llmc-wrong"))
        assert wrong.status_code == 401, (method, path)
        client = console.request(method, path, headers=bearer(running.key))
        assert client.status_code == 403, (method, path)
        assert "keys create --admin" in client.text


def test_pages_send_a_browser_without_a_session_to_the_login_page(console):
    for path in ("/", "/models", "/keys", "/metrics"):
        response = console.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


def test_login_refuses_a_wrong_key_and_a_client_key_with_pages_that_say_what_to_do(
        console, running):
    wrong = login(console, "llmc-not-a-key")
    assert wrong.status_code == 401
    assert "What to do" in wrong.text and "keys create --admin" in wrong.text
    client = login(console, running.key)
    assert client.status_code == 403
    assert "not an admin key" in client.text and "keys create --admin" in client.text
    assert "llmcloud_console_8765=" not in client.headers.get("set-cookie", "")
    assert console.get("/", follow_redirects=False).status_code == 303


def test_login_needs_the_forms_own_csrf_token(console, running):
    console.get("/login")
    forged = console.post("/login", data={"csrf": "forged", "key": running.admin_key},
                          follow_redirects=False)
    assert forged.status_code == 403 and "reload" in forged.text


def test_admin_login_opens_every_page_with_strict_headers_and_no_secret(console, running):
    response = login(console, running.admin_key)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    for path in ("/", "/models", "/keys", "/metrics"):
        page = console.get(path)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
        assert running.admin_key not in page.text and running.key not in page.text
        assert "<script>" not in page.text and " style=" not in page.text


def test_the_login_throttle_slows_down_guessing(console, running):
    for _ in range(10):
        assert login(console, "llmc-guess").status_code == 401
    throttled = login(console, running.admin_key)
    assert throttled.status_code == 429
    # a client (or a script) is told how long to wait, as every other 429 of llmcloud does
    assert 1 <= int(throttled.headers["retry-after"]) <= 60


def test_mutations_with_a_session_need_the_csrf_token_and_the_consoles_origin(
        console, running):
    login(console, running.admin_key)
    token = csrf_of(console)
    missing = console.post("/api/keys", json={"name": "x"})
    assert missing.status_code == 403 and "CSRF" in missing.json()["error"]["message"]
    wrong = console.post("/api/keys", json={"name": "x"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    other_site = console.post("/api/keys", json={"name": "x"}, headers={
        "X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert other_site.status_code == 403
    ok = console.post("/api/keys", json={"name": "x"}, headers={
        "X-CSRF-Token": token, "Origin": "http://127.0.0.1:8765"})
    assert ok.status_code == 201


def test_logout_ends_the_session(console, running):
    login(console, running.admin_key)
    token = csrf_of(console)
    assert console.post("/logout", data={"csrf": token},
                        follow_redirects=False).status_code == 303
    assert console.get("/api/keys").status_code == 401


def test_revoking_the_admin_key_ends_the_sessions_it_opened(console, running):
    # before, a session lived on for up to 12 hours with the rights of a revoked key,
    # minting new admin keys included
    second = running.stack.provider.keys_create(running.stack.ctx(), "ops2", admin=True)
    login(console, second["key"])
    assert console.get("/api/keys").status_code == 200
    running.stack.provider.keys_revoke(running.stack.ctx(), second["id"])
    refused = console.post("/api/keys", json={"name": "x", "admin": True}, headers={
        "X-CSRF-Token": "anything", "Origin": "http://127.0.0.1:8765"})
    assert refused.status_code == 401 and "revoked" in refused.text
    assert console.get("/api/keys").status_code == 401  # and the session is gone
    login(console, running.admin_key)  # another admin key still opens one
    assert console.get("/api/keys").status_code == 200


def test_a_wrong_host_header_is_refused(running):
    from fastapi.testclient import TestClient

    from llmcloud.console.server import create_app

    app = create_app(running.backend(), allowed_hosts={"127.0.0.1:8765"}, scrape=False)
    with TestClient(app, base_url="http://rebound.example:8765") as client:
        assert client.get("/login").status_code == 421
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/login").status_code == 200


# -- deployment ----------------------------------------------------------------------------

def test_deployment_shows_the_endpoint_health_and_two_ready_replicas(console, running):
    document = console.get("/api/deployment", headers=bearer(running.admin_key)).json()
    assert document["provider"] == "local"
    assert document["endpoint"] == running.stack.url + "/v1"
    assert document["health"] == "healthy"
    assert document["ready_replicas"] == 2 and document["desired_replicas"] == 2
    assert [r["version"] for r in document["replicas"]] == ["v1", "v1"]
    assert all(r["ready"] and r["in_flight"] == 0 for r in document["replicas"])
    fragment = console.get("/api/deployment", headers={**bearer(running.admin_key),
                                                        "HX-Request": "true"})
    assert fragment.headers["content-type"].startswith("text/html")
    assert fragment.text.count('data-state="ready"') == 2


def test_deployment_of_a_stopped_stack_says_so(console, running):
    running.stack.destroy()
    document = console.get("/api/deployment", headers=bearer(running.admin_key))
    # The state folder (and its keys) is gone with destroy: the admin key is no longer valid.
    assert document.status_code == 401


# -- keys ----------------------------------------------------------------------------------

def test_a_created_key_is_shown_once_works_at_the_endpoint_and_revoked_is_refused(
        console, running):
    headers = bearer(running.admin_key)
    created = console.post("/api/keys", json={"name": "team-a"}, headers=headers)
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    key = created.json()["key"]
    assert created.json()["prefix"] == key[:9] and not created.json()["admin"]
    listed = console.get("/api/keys", headers=headers).json()
    assert listed["rate_limit"]["rate_limit"] == 10000
    record = next(k for k in listed["keys"] if k["id"] == created.json()["id"])
    assert "key" not in record and "hash" not in record and key not in str(listed)
    assert record["name"] == "team-a" and record["created"] > 0

    endpoint = running.stack.url + "/v1/completions"
    request = {"prompt": "hi", "max_tokens": 2}
    assert httpx.post(endpoint, json=request, headers=auth(key)).status_code == 200
    revoked = console.delete(f"/api/keys/{record['id']}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert httpx.post(endpoint, json=request, headers=auth(key)).status_code == 401
    assert record["id"] not in str(console.get("/api/keys", headers=headers).json())


def test_admin_keys_and_unknown_keys_cannot_be_revoked_from_the_console(console, running):
    headers = bearer(running.admin_key)
    keys = console.get("/api/keys", headers=headers).json()["keys"]
    admin = next(k for k in keys if k["admin"])
    refused = console.delete(f"/api/keys/{admin['id']}", headers=headers)
    assert refused.status_code == 403
    assert f"llmcloud keys revoke {admin['id']}" in refused.json()["error"]["hint"]
    assert console.get("/api/deployment", headers=headers).status_code == 200
    assert console.delete("/api/keys/key-nope", headers=headers).status_code == 404


def test_key_names_are_validated(console, running):
    headers = bearer(running.admin_key)
    for body in ({}, {"name": ""}, {"name": "<script>"}, {"name": "x" * 65}):
        response = console.post("/api/keys", json=body, headers=headers)
        assert response.status_code == 422, body
    assert console.post("/api/keys", content=b"{not json", headers={
        **headers, "Content-Type": "application/json"}).status_code == 400


def test_the_keys_fragment_shows_prefixes_never_hashes(console, running):
    fragment = console.get("/api/keys", headers={**bearer(running.admin_key),
                                                  "HX-Request": "true"}).text
    state = running.stack.state_file.read()
    for record in state["keys"]:
        assert record["prefix"] in fragment and record["hash"] not in fragment
    assert "revoke with the CLI" in fragment  # the admin key has no revoke button


# -- models and rollouts -------------------------------------------------------------------

def test_models_lists_versions_with_size_date_and_manifest(console, running, tmp_path):
    running.stack.upload(fake_model(tmp_path / "v2", answer="two"), "v2")
    document = console.get("/api/models", headers=bearer(running.admin_key)).json()
    assert document["model"] == "fake" and document["serving"] == "v1"
    versions = {v["version"]: v for v in document["versions"]}
    assert set(versions) == {"v1", "v2"}
    assert versions["v1"]["serving"] and not versions["v2"]["serving"]
    assert versions["v2"]["manifest"] == "complete"
    assert versions["v2"]["size_bytes"] == sum(
        p.stat().st_size for p in (tmp_path / "v2").iterdir())
    assert versions["v2"]["created"].endswith("Z")
    (running.stack.state_file.models / "fake" / "v2" / "fake.json").write_text("{}")
    changed = console.get("/api/models", headers=bearer(running.admin_key)).json()
    assert next(v for v in changed["versions"] if v["version"] == "v2")[
        "manifest"].startswith("incomplete: 1")


def test_promote_rolls_replica_by_replica_then_rollback_returns(console, running, tmp_path):
    headers = bearer(running.admin_key)
    running.stack.upload(fake_model(tmp_path / "v2"), "v2")
    confirm = console.get("/models/confirm?action=promote&version=v2", headers=headers)
    assert "Promote v2?" in confirm.text and "serves <strong>v1</strong>" in confirm.text
    started = console.post("/api/rollouts", json={"action": "promote", "version": "v2"},
                           headers=headers)
    assert started.status_code == 202, started.text
    assert started.json()["action"] == "promote" and started.json()["from_version"] == "v1"
    rollout = wait_rollout(console, headers)
    assert rollout["state"] == "succeeded", rollout
    messages = [e["message"] for e in rollout["events"]]
    ready_on_v2 = [m for m in messages if m.endswith("ready on v2")]
    stopped = [m for m in messages if m.startswith("replica") and "stopped (v1)" in m]
    assert len(ready_on_v2) == 2 and len(stopped) == 2, messages
    # replica by replica: the first new one is ready before the first old one stops
    assert messages.index(ready_on_v2[0]) < messages.index(stopped[0])
    assert messages[-1] == "done: serving v2"
    deployment = console.get("/api/deployment", headers=headers).json()
    assert deployment["model_version"] == "v2"
    assert [r["version"] for r in deployment["replicas"]] == ["v2", "v2"]
    assert console.get(f"/api/rollouts/{rollout['id']}", headers=headers).json()["id"] \
        == rollout["id"]

    back = console.post("/api/rollouts", json={"action": "rollback"}, headers=headers)
    assert back.status_code == 202
    rollout = wait_rollout(console, headers)
    assert rollout["state"] == "succeeded" and rollout["result"]["model_version"] == "v1"


def test_promoting_a_missing_version_fails_with_the_providers_hint(console, running):
    headers = bearer(running.admin_key)
    started = console.post("/api/rollouts", json={"action": "promote", "version": "v9"},
                           headers=headers)
    assert started.status_code == 202
    rollout = wait_rollout(console, headers)
    assert rollout["state"] == "failed"
    assert "no version v9" in rollout["error"]["message"]
    assert "model upload" in rollout["error"]["hint"]
    assert console.post("/api/rollouts", json={"action": "promote"},
                        headers=headers).status_code == 422
    assert console.post("/api/rollouts", json={"action": "scale"},
                        headers=headers).status_code == 422


def test_a_second_rollout_while_one_runs_is_refused(console, running):
    import threading

    release = threading.Event()
    rollouts = console.app.state.console.rollouts
    rollouts.start("promote", "v2", "v1", lambda: (release.wait(10), {})[1])
    try:
        busy = console.post("/api/rollouts", json={"action": "rollback"},
                            headers=bearer(running.admin_key))
        assert busy.status_code == 409 and "still running" in busy.json()["error"]["message"]
    finally:
        release.set()


# -- metrics and the API description -------------------------------------------------------

def test_metrics_chart_requests_from_the_gateway_and_replicas(console, running):
    history = console.app.state.console.history
    history.scrape_once()
    with httpx.Client(headers=auth(running.key)) as client:
        for _ in range(20):
            answer = client.post(running.stack.url + "/v1/completions",
                                 json={"prompt": "hi", "max_tokens": 3})
            assert answer.status_code == 200
    time.sleep(0.2)
    history.scrape_once()
    series = console.get("/api/metrics?minutes=5", headers=bearer(running.admin_key)).json()
    # the gateway; the fake replicas answer /metrics with JSON, which is reported, not charted
    assert series["sources"] == 1, series
    assert sorted(series["errors"]) == sorted(
        f"replica-{r['id']}-{r['pid']}" for r in running.stack.status()["replicas"])
    last = series["points"][-1]
    assert last["requests_per_s"] > 0 and last["errors_per_s"] == 0
    charts = console.get("/api/metrics", headers={**bearer(running.admin_key),
                                                  "HX-Request": "true"}).text
    assert charts.count("<svg") == 5 and "Time to first token p95" in charts


def test_the_openapi_document_describes_every_action(console, running):
    spec = console.get("/api/openapi.json", headers=bearer(running.admin_key)).json()
    paths = spec["paths"]
    assert set(paths) >= {"/api/deployment", "/api/models", "/api/rollouts",
                          "/api/rollouts/current", "/api/keys", "/api/keys/{key_id}",
                          "/api/metrics"}
    assert {"get", "post"} <= set(paths["/api/keys"]) and "delete" in paths["/api/keys/{key_id}"]
    body = paths["/api/keys"]["post"]["requestBody"]["content"]
    assert "application/json" in body and "application/x-www-form-urlencoded" in body
    assert "/login" not in paths and "/" not in paths


def test_a_busy_stack_is_a_conflict_not_a_bad_gateway():
    # another operation holding the stack changed nothing and passes: 409, as the CLI's 75
    from llmcloud.console.api import from_llmcloud
    from llmcloud.stacks.errors import BusyError, DeploymentError

    busy = from_llmcloud(BusyError("another update of stack 'dev' is in progress"))
    assert busy.status == 409
    assert from_llmcloud(DeploymentError("the update failed")).status == 502
