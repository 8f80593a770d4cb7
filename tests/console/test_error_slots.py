"""An error banner on a console page clears on the next success of the page part that
failed: the error goes to that part's error slot (`#deployment-error` next to
`#deployment`), and each successful fragment empties it out of band. Before, every error
went to the page's one `#errors` banner, which nothing ever emptied."""

from __future__ import annotations

import re

from llmcloud.providers.local.console_entry import LocalConsoleBackend
from llmcloud.stacks.errors import LlmcloudError
from tests.console.conftest import csrf_of, login

#: the parts each page updates with htmx: their fragments, and the targets of their buttons
LIVE = {"/": ["/api/deployment"], "/models": ["/api/models", "/api/rollouts/current"],
        "/keys": ["/api/keys"], "/metrics": ["/api/metrics?minutes=10"]}


def _htmx(target: str) -> dict[str, str]:
    return {"HX-Request": "true", "HX-Target": target}


def _empty_slot(target: str) -> re.Pattern[str]:
    return re.compile(rf'<div id="{target}-error" class="error-slot" role="alert" '
                      r'hx-swap-oob="true"></div>')


def test_a_failed_refresh_shows_in_its_slot_and_the_next_success_empties_it(
        console, running, monkeypatch):
    login(console, running.admin_key)
    real = LocalConsoleBackend.deployment
    failing = [True]

    def deployment(self):
        if failing[0]:
            raise LlmcloudError("the stack's state could not be read", hint="try again")
        return real(self)

    monkeypatch.setattr(LocalConsoleBackend, "deployment", deployment)
    failed = console.get("/api/deployment", headers=_htmx("deployment"))
    assert failed.status_code == 200
    assert failed.headers["hx-retarget"] == "#deployment-error"
    assert "the stack&#39;s state could not be read" in failed.text
    assert "hx-swap-oob" not in failed.text

    failing[0] = False
    fine = console.get("/api/deployment", headers=_htmx("deployment"))
    assert fine.status_code == 200 and "hx-retarget" not in fine.headers
    assert _empty_slot("deployment").search(fine.text), fine.text
    assert 'id="replicas"' in fine.text


def test_a_part_that_keeps_failing_keeps_its_error_while_another_part_refreshes(
        console, running, monkeypatch):
    # On Models, the rollout refreshes every second: it must not wipe the models' error.
    login(console, running.admin_key)
    monkeypatch.setattr(LocalConsoleBackend, "models", lambda self: (_ for _ in ()).throw(
        LlmcloudError("the model store is unreadable")))
    failed = console.get("/api/models", headers=_htmx("models"))
    assert failed.headers["hx-retarget"] == "#models-error"
    rollout = console.get("/api/rollouts/current", headers=_htmx("rollout"))
    assert _empty_slot("rollout").search(rollout.text)
    assert "models-error" not in rollout.text


def test_a_failed_action_clears_when_it_next_succeeds(console, running, monkeypatch):
    login(console, running.admin_key)
    headers = {**_htmx("created"), "X-CSRF-Token": csrf_of(console)}
    refused = console.post("/api/keys", data={"name": "bad name!"}, headers=headers)
    assert refused.headers["hx-retarget"] == "#created-error"
    created = console.post("/api/keys", data={"name": "team-search"}, headers=headers)
    assert created.status_code == 201 and _empty_slot("created").search(created.text)
    confirm = console.get("/models/confirm?action=cancel", headers=_htmx("confirm"))
    assert _empty_slot("confirm").search(confirm.text)


def test_every_part_a_page_updates_has_its_error_slot_on_that_page(console, running):
    # an error retargeted to a slot the page lacks would be lost (htmx finds no target)
    login(console, running.admin_key)
    for path, fragments in LIVE.items():
        page = console.get(path).text
        html = page + "".join(console.get(f, headers={"HX-Request": "true"}).text
                              for f in fragments)
        targets = set(re.findall(r'hx-target="#([a-z-]+)"', html))
        targets |= set(re.findall(r'<div id="([a-z-]+)" hx-get=', html))
        assert targets, path
        for target in targets:
            assert f'<div id="{target}-error" class="error-slot" role="alert"></div>' in page, \
                (path, target)


def test_a_request_without_a_named_target_still_uses_the_pages_banner(console, running):
    login(console, running.admin_key)
    for target in ("", "#x", "a b", "x" * 80):
        headers = {"HX-Request": "true", "HX-Target": target}
        answer = console.get("/api/rollouts/nope", headers=headers)
        assert answer.headers["hx-retarget"] == "#errors", target
