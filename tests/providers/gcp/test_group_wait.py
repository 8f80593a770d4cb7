"""`promote` on GCP watches the regional instance group's update to its end: a group that
becomes stable with every server on its target version confirms the roll; one still busy
at the timeout is a failed rollout (which puts the previous version back), reported with
what its servers were doing and its errors since the promotion began."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from llmcloud.providers.gcp.group_wait import group_url, wait_for_group
from llmcloud.stacks.errors import DeploymentError
from tests.providers.fakes import Answer, Clock, JsonApi, serving

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
URL = group_url("proj", "us-central1", "llm-prod-gpu")

BUSY = {"status": {"isStable": False, "versionTarget": {"isReached": False}},
        "currentActions": {"none": 1, "creating": 1, "recreating": 2, "deleting": 0}}
DONE = {"status": {"isStable": True, "versionTarget": {"isReached": True}},
        "currentActions": {"none": 3}}
ERRORS = {"items": [
    {"timestamp": "2026-11-30T04:05:00.123-08:00",  # 12:05 UTC: during this promotion
     "error": {"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "no a2 left in the zone"},
     "instanceActionDetails": {"action": "CREATING",
                               "instance": "projects/proj/zones/us-central1-a/instances/x-1"}},
    {"timestamp": "2026-11-30T11:00:00Z",  # before it: another update's
     "error": {"code": "QUOTA_EXCEEDED", "message": "an older error"}},
]}


class FakeSession:
    """Answers the group's address with each answer in turn (the last one stays; an
    exception is raised), and `listErrors` with ``errors``; notes each address asked and
    each read's timeout."""

    def __init__(self, *answers, errors=ERRORS):
        self.answers = list(answers)
        self.errors = errors
        self.asked: list[str] = []
        self.timeouts: list[float] = []

    def get(self, url, timeout):
        self.asked.append(url)
        self.timeouts.append(timeout)
        if url.endswith("/listErrors"):
            return Answer(200, self.errors)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, Answer) else Answer(200, answer)


def wait(session, timeout=1800.0) -> tuple[bool, Clock]:
    clock = Clock()
    done = wait_for_group(session, URL, SINCE, timeout=timeout, clock=clock,
                          sleep=clock.sleep)
    return done, clock


def test_a_group_that_settles_on_its_new_version_confirms_the_roll():
    stable_but_not_reached = {"status": {"isStable": True,
                                         "versionTarget": {"isReached": False}}}
    session = FakeSession(BUSY, BUSY, stable_but_not_reached, DONE)
    done, clock = wait(session)
    assert done is True
    assert session.asked == [URL] * 4 and clock.now == 45
    assert URL == ("https://compute.googleapis.com/compute/v1/projects/proj/regions/"
                   "us-central1/instanceGroupManagers/llm-prod-gpu")


def test_a_group_still_busy_at_the_timeout_is_a_failed_rollout_with_its_errors():
    session = FakeSession(BUSY)
    with pytest.raises(DeploymentError) as failed:
        wait(session, timeout=600)
    assert "did not finish within 600 s" in failed.value.message
    context = failed.value.context
    assert context.startswith("llm-prod-gpu: servers creating 1, recreating 2;")
    assert "ZONE_RESOURCE_POOL_EXHAUSTED: no a2 left in the zone (x-1)" in context
    assert "older error" not in context  # from before this promotion
    assert session.asked[-1] == URL + "/listErrors"


def test_a_failed_rollout_without_errors_says_where_to_look():
    with pytest.raises(DeploymentError) as failed:
        wait(FakeSession(BUSY, errors={}), timeout=60)
    assert "recreated without one" in failed.value.context


def test_rate_limits_google_failures_and_dropped_connections_are_asked_again():
    session = FakeSession(Answer(429, {"error": {"message": "slow down"}}),
                          Answer(503, "unavailable"), requests.ConnectionError("reset"), DONE)
    done, _ = wait(session)
    assert done is True and len(session.asked) == 4


class PagedErrors(FakeSession):
    """`listErrors` answered in pages, as the API does past 500 errors (`nextPageToken`)."""

    def get(self, url, timeout):
        if "/listErrors" not in url:
            return super().get(url, timeout)
        self.asked.append(url)
        if url.endswith("/listErrors"):
            return Answer(200, {"items": [ERRORS["items"][1]], "nextPageToken": "p/2=="})
        assert url.endswith("/listErrors?pageToken=p%2F2%3D%3D")
        return Answer(200, {"items": [ERRORS["items"][0]]})


def test_a_failed_rollout_reads_every_page_of_the_groups_errors():
    # regionInstanceGroupManagers.listErrors: maxResults defaults to (and is at most) 500,
    # the rest come with nextPageToken; this promotion's error is on the second page
    session = PagedErrors(BUSY)
    with pytest.raises(DeploymentError) as failed:
        wait(session, timeout=60)
    assert "ZONE_RESOURCE_POOL_EXHAUSTED: no a2 left in the zone (x-1)" in failed.value.context
    assert session.asked[-2:] == [URL + "/listErrors",
                                  URL + "/listErrors?pageToken=p%2F2%3D%3D"]


@pytest.mark.parametrize("status", [403, 404])
def test_a_refusal_stops_the_wait_with_googles_message(status):
    session = FakeSession(Answer(status, {"error": {"message": "Required 'compute."
                                                               "instanceGroupManagers.get'"}}))
    with pytest.raises(DeploymentError) as failed:
        wait(session)
    assert f"HTTP {status}" in failed.value.message
    assert "instanceGroupManagers.get" in failed.value.context
    assert len(session.asked) == 1


class FakeCompute(JsonApi):
    """The Compute Engine API's instance group manager, on loopback: busy once, then done."""

    asked: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).asked.append((self.path, self.headers.get("Authorization")))
        self.answer(200, BUSY if len(type(self).asked) == 1 else DONE)


def test_the_provider_watches_the_stacks_group_in_its_project_and_region(monkeypatch,
                                                                          tmp_path):
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    from llmcloud.providers import gcp
    from llmcloud.providers.base import StackContext
    from llmcloud.providers.gcp.provider import GcpProvider
    from tests.providers.gcp.helpers import declared, gcp_spec

    monkeypatch.setattr(google.auth, "default",
                        lambda scopes: (AnonymousCredentials(), "adc-project"))
    monkeypatch.setattr(gcp.group_wait.time, "sleep", lambda seconds: None)
    key = tmp_path / "key.json"
    key.write_text("{}")
    with serving(FakeCompute) as url:
        environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(key),
                   "GOOGLE_CLOUD_PROJECT": "my-proj",
                   "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": f"{url}/compute/v1/"}
        ctx = StackContext(tmp_path, "prod", gcp_spec(region="europe-west4"), environ=environ)
        _, outputs = declared("prod")  # the group's name, as the stack declares it
        assert GcpProvider().wait_for_rollout(ctx, outputs, SINCE, 60) is True
        # a first `up` (registry and store only) has no group to watch
        first_up = {k: v for k, v in outputs.items() if k != "instance_group"}
        assert GcpProvider().wait_for_rollout(ctx, first_up, SINCE, 60) is False
    paths = {path for path, _ in FakeCompute.asked}
    assert paths == {"/compute/v1/projects/my-proj/regions/europe-west4/"
                     f"instanceGroupManagers/{outputs['instance_group']}"}
    assert len(FakeCompute.asked) == 2
