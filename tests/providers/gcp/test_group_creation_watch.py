"""GCP's `up` ends the way AWS's and Azure's do: the stack's instance group does not wait
for its servers (`wait_for_instances` is off), so `up` watches it make them, and fails,
with the group's own reason classified as quota or capacity, when it has made none and
reports errors creating them. `status` shows those errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmcloud.providers.gcp.group_creation import CREATE_ALLOWANCE_S, watch_creation
from llmcloud.providers.gcp.group_wait import group_url
from llmcloud.stacks.errors import DeploymentError
from tests.providers.fakes import Answer, Clock, JsonApi, serving
from tests.providers.gcp.test_group_wait import FakeSession as GroupSession

NOW = datetime.now(timezone.utc)
SINCE = NOW - timedelta(minutes=1)
URL = group_url("proj", "us-central1", "llm-prod-gpu")


def _error(code: str, message: str, when: datetime = NOW, action: str | None = "CREATING"):
    item = {"timestamp": when.isoformat(), "error": {"code": code, "message": message}}
    if action:
        item["instanceActionDetails"] = {
            "action": action, "instance": "projects/proj/zones/us-central1-a/instances/x-1"}
    return item


#: regionInstanceGroupManagers.listErrors items, as Compute Engine writes them
QUOTA = _error("QUOTA_EXCEEDED", "Quota 'NVIDIA_L4_GPUS' exceeded. Limit: 1.0 in region "
                                 "us-central1.")
STOCKOUT = _error("ZONE_RESOURCE_POOL_EXHAUSTED", "The zone 'projects/proj/zones/"
                  "us-central1-a' does not have enough resources available to fulfill the "
                  "request. '(resource type:compute)'.")
BAD_IMAGE = _error("RESOURCE_NOT_FOUND", "The resource 'projects/proj/global/images/nope' "
                                         "was not found")

CREATING = {"targetSize": 2, "currentActions": {"none": 0, "creating": 2, "verifying": 0},
            "status": {"isStable": False}}
MADE = {"targetSize": 2, "currentActions": {"none": 1, "creating": 0, "verifying": 1},
        "status": {"isStable": False}}
HALF = {"targetSize": 2, "currentActions": {"none": 0, "creating": 1, "verifying": 1},
        "status": {"isStable": False}}


class FakeSession(GroupSession):
    """The group's address answers each answer in turn (the last one stays); `listErrors`
    answers the items ``errors``."""

    def __init__(self, *answers, errors=()):
        super().__init__(*answers, errors={"items": list(errors)})


def watch(session, minimum=2) -> tuple[str | None, Clock]:
    clock = Clock()
    said = watch_creation(session, URL, SINCE, minimum=minimum, stack="prod", clock=clock,
                          sleep=clock.sleep)
    return said, clock


def test_a_group_that_makes_its_minimum_ends_the_watch_at_once():
    session = FakeSession(CREATING, MADE)
    said, clock = watch(session)
    assert said is None and clock.now == 15
    assert session.asked.count(URL) == 2


def test_a_quota_the_group_cannot_pass_fails_at_once_naming_it():
    session = FakeSession(CREATING, errors=[QUOTA])
    with pytest.raises(DeploymentError) as failed:
        watch(session)
    error = failed.value
    assert error.message.startswith("a quota of the cloud account is too low for stack 'prod'")
    assert "NVIDIA_L4_GPUS" in error.context and "llm-prod-gpu made none of its 2" in \
        error.context
    assert "IAM & Admin > Quotas" in error.hint and "keeps trying" in error.hint


def test_a_zone_out_of_stock_fails_after_the_creation_allowance_as_capacity():
    session = FakeSession(CREATING, errors=[STOCKOUT])
    with pytest.raises(DeploymentError) as failed:
        watch(session)
    error = failed.value
    assert error.message.startswith("the cloud has no capacity for the servers of stack 'prod'")
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in error.context and "(x-1)" in error.context
    assert "another region" in error.hint


def test_the_capacity_watch_lasts_the_creation_allowance_and_no_longer():
    clock = Clock()
    with pytest.raises(DeploymentError):
        watch_creation(FakeSession(CREATING, errors=[STOCKOUT]), URL, SINCE, minimum=1,
                       stack="prod", clock=clock, sleep=clock.sleep)
    assert clock.now == CREATE_ALLOWANCE_S == 600


def test_another_error_is_the_groups_own_with_what_to_fix():
    with pytest.raises(DeploymentError) as failed:
        watch(FakeSession(CREATING, errors=[BAD_IMAGE]))
    assert failed.value.message == ("the server group of stack 'prod' could not create any "
                                    "of its servers")
    assert "RESOURCE_NOT_FOUND" in failed.value.context
    assert "llmcloud up --provider gcp --stack prod" in failed.value.hint


def test_errors_before_the_up_or_of_other_actions_are_not_this_ups():
    older = _error("QUOTA_EXCEEDED", "an older one", when=NOW - timedelta(hours=2))
    deleting = _error("QUOTA_EXCEEDED", "deleting", action="DELETING")
    said, clock = watch(FakeSession(CREATING, errors=[older, deleting]))
    assert said.startswith("warning: the server group llm-prod-gpu has 0 of its 2 servers "
                           "after 600 s;") and "errors" not in said
    assert "llmcloud status --provider gcp --stack prod" in said


def test_a_group_with_some_servers_warns_instead_of_failing():
    said, _ = watch(FakeSession(HALF, errors=[STOCKOUT]))
    assert said.startswith("warning: the server group llm-prod-gpu has 1 of its 2 servers")
    assert "its latest errors: ZONE_RESOURCE_POOL_EXHAUSTED" in said


def test_a_watch_that_goes_on_says_so_once():
    heard, clock = [], Clock()
    watch_creation(FakeSession(CREATING, CREATING, MADE), URL, SINCE, minimum=2,
                   stack="prod", clock=clock, sleep=clock.sleep, tell=heard.append)
    assert heard == ["waiting for the server group llm-prod-gpu to create its servers "
                     "(0 of 2; at most 600 s)"]


def test_a_group_that_cannot_be_read_is_a_note_not_a_failure():
    said, _ = watch(FakeSession(Answer(403, {"error": {"message": "Required 'compute."
                                                                  "instanceGroupManagers.get'"}})))
    assert said.startswith("note: the creation of the servers was not watched: the Compute "
                           "Engine API answered HTTP 403")


# -- across the hand-over: the stack's outputs, the provider's `up` and `status` ----------


class FakeCompute(JsonApi):
    """The Compute Engine API on loopback: a group still creating its servers, with a
    quota error since the `up` began."""

    asked: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).asked.append(self.path)
        if self.path.endswith("/listErrors"):
            self.answer(200, {"items": [_error(
                "QUOTA_EXCEEDED", "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally.",
                when=datetime.now(timezone.utc))]})
        else:
            self.answer(200, {**CREATING, "targetSize": 1})


@pytest.fixture
def gcp_stack(monkeypatch, tmp_path):
    """GcpProvider over a fake engine whose `up` gives the declared stack's outputs, and
    the Compute Engine API on loopback; yields (provider, ctx, outputs)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    from llmcloud.providers import gcp
    from llmcloud.providers.base import StackContext
    from llmcloud.providers.gcp.provider import GcpProvider
    from tests.providers.gcp.helpers import declared, gcp_spec
    from tests.stacks.fakes import FakeStack

    _, outputs = declared("prod")  # the group's name, as the stack declares it
    monkeypatch.setattr(google.auth, "default",
                        lambda scopes: (AnonymousCredentials(), "adc-project"))
    monkeypatch.setattr(gcp.group_creation.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(GcpProvider, "check_gpu_quota", lambda self, ctx: None)
    monkeypatch.setattr(GcpProvider, "stack_opener", staticmethod(FakeStack.opener(
        stack_outputs=outputs)))  # a new stack: its first `up` with an image
    key = tmp_path / "key.json"
    key.write_text("{}")
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  llmcloud:provider: gcp\n")
    FakeCompute.asked = []
    with serving(FakeCompute) as url:
        environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(key),
                   "GOOGLE_CLOUD_PROJECT": "my-proj", "PULUMI_CONFIG_PASSPHRASE": "x",
                   "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": f"{url}/compute/v1/",
                   # (status reads the alerts too: never Google's own API from a test)
                   "CLOUDSDK_API_ENDPOINT_OVERRIDES_MONITORING": f"{url}/v3/"}
        spec = gcp_spec(image="europe-west4-docker.pkg.dev/my-proj/r/server@sha256:"
                              + "a" * 64, region="europe-west4")
        yield GcpProvider(), StackContext(tmp_path, "prod", spec, environ=environ), outputs


def test_up_fails_when_the_stacks_group_cannot_make_a_server(gcp_stack):
    provider, ctx, outputs = gcp_stack
    with pytest.raises(DeploymentError) as failed:
        provider.up(ctx)
    assert failed.value.message.startswith("a quota of the cloud account is too low")
    assert "GPUS_ALL_REGIONS" in failed.value.context
    group = outputs["instance_group"]
    assert f"/compute/v1/projects/my-proj/regions/europe-west4/instanceGroupManagers/{group}" \
        in FakeCompute.asked


def test_status_shows_the_groups_recent_errors_making_servers(gcp_stack):
    provider, ctx, outputs = gcp_stack
    servers = provider.status(ctx)["servers"]
    assert servers["group"] == outputs["instance_group"]
    assert (servers["servers_made"], servers["target_size"]) == (0, 1)
    assert servers["doing"] == "creating 2"
    assert servers["recent_errors"][0].startswith("QUOTA_EXCEEDED: Quota 'GPUS_ALL_REGIONS'")


def test_status_reads_the_group_with_a_short_timeout():
    # the console asks for status every 10 s: up's watches wait 30 s for an answer, and a
    # read that hung that long held the console's page
    from llmcloud.providers.gcp.group_creation import STATUS_TIMEOUT_S, describe

    session = FakeSession({"targetSize": 1, "currentActions": {"none": 1},
                           "status": {"isStable": True}})
    url = group_url("proj", "us-central1", "llm-prod-pool")
    shown = describe(session, url, datetime.now(timezone.utc))
    assert shown["servers_made"] == 1
    assert len(session.timeouts) == 2 and set(session.timeouts) == {STATUS_TIMEOUT_S}
    assert STATUS_TIMEOUT_S < 10
