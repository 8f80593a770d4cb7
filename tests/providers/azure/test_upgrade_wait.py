"""`promote` on Azure watches the scale set's rolling upgrade to its end: `Completed`
confirms the roll; `Faulted` (the policy stopped it and put the failed servers back on the
previous model, while the scale set's model stays new) or `Cancelled`, or no end in time
(then cancelled), is a failed rollout, which puts the previous version back; no upgrade at
all means nothing had to be replaced."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from llmcloud.providers.azure.arm import management_endpoint
from llmcloud.providers.azure.upgrade_wait import API_VERSION, START_GRACE_S, wait_for_upgrade
from llmcloud.stacks.errors import CredentialsError, DeploymentError
from tests.providers.fakes import (
    Answer,
    AzureToken,
    Clock,
    JsonApi,
    Python310Datetime,
    serving,
)

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
SCALE_SET = ("/subscriptions/sub/resourceGroups/llm-prod-rg/providers/Microsoft.Compute/"
             "virtualMachineScaleSets/llmcloud-gpu")
URL = "https://management.azure.com" + SCALE_SET
LATEST = f"{URL}/rollingUpgrades/latest?api-version={API_VERSION}"


def upgrade(code: str, started: str = "2026-11-30T12:01:10.1234567+00:00", **counts):
    return {"properties": {
        "runningStatus": {"code": code, "startTime": started, "lastAction": "Start"},
        "progress": {"successfulInstanceCount": counts.get("ok", 0),
                     "failedInstanceCount": counts.get("failed", 0),
                     "inProgressInstanceCount": counts.get("busy", 0),
                     "pendingInstanceCount": counts.get("pending", 0)},
        **({"error": {"message": counts["error"]}} if "error" in counts else {})}}


OLDER = upgrade("Completed", started="2026-11-30T09:00:00Z", ok=3)  # an earlier update's


class FakeArm:
    """Answers the latest upgrade with each answer in turn (the last one stays)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked: list[tuple[str, str]] = []
        self.cancelled = False

    def get(self, url):
        self.asked.append(("GET", url))
        if self.cancelled:
            return Answer(200, upgrade("Cancelled"))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, Answer) else Answer(200, answer)

    def post(self, url):
        self.asked.append(("POST", url))
        self.cancelled = True
        return Answer(202, "")


def wait(arm: FakeArm, timeout: float = 1800.0) -> tuple[bool, Clock]:
    clock = Clock()
    done = wait_for_upgrade(arm.get, URL, SINCE, timeout=timeout, post=arm.post, clock=clock,
                            sleep=clock.sleep)
    return done, clock


def test_a_completed_upgrade_confirms_the_roll():
    arm = FakeArm(Answer(404, {"error": {"message": "no upgrade yet"}}), OLDER,
                  upgrade("RollingForward", ok=1, busy=1, pending=1), upgrade("Completed", ok=3))
    done, clock = wait(arm)
    assert done is True and clock.now == 45
    assert arm.asked == [("GET", LATEST)] * 4


@pytest.mark.parametrize("code", ["Faulted", "Cancelled"])
def test_a_faulted_or_cancelled_upgrade_is_a_failed_rollout(code):
    arm = FakeArm(upgrade("RollingForward", busy=2),
                  upgrade(code, ok=1, failed=1, error="1 of 2 new servers failed the probe"))
    with pytest.raises(DeploymentError) as failed:
        wait(arm)
    assert failed.value.message == f"the scale set's rolling upgrade ended {code}"
    assert failed.value.context == ("servers: 1 upgraded, 1 failed, 0 in progress, 0 pending; "
                                    "1 of 2 new servers failed the probe")
    assert ("POST", f"{URL}/rollingUpgrades/cancel?api-version={API_VERSION}") not in arm.asked


def test_an_upgrade_that_never_ends_is_cancelled_and_a_failed_rollout():
    arm = FakeArm(upgrade("RollingForward", ok=1, busy=1))
    with pytest.raises(DeploymentError) as failed:
        wait(arm, timeout=900)
    assert "did not finish within 900 s" in failed.value.message
    assert failed.value.context.startswith("servers: 1 upgraded, 0 failed, 1 in progress")
    assert ("POST", f"{URL}/rollingUpgrades/cancel?api-version={API_VERSION}") in arm.asked
    assert arm.asked[-1] == ("GET", LATEST)  # it waited for the cancel to take


def test_no_upgrade_within_the_grace_means_nothing_was_replaced():
    done, clock = wait(FakeArm(OLDER))  # only an earlier update's, however long it waits
    assert done is False and START_GRACE_S <= clock.now < START_GRACE_S + 30


@pytest.mark.parametrize("started", ["2026-11-30T12:01:10.1234567+00:00",
                                     "2026-11-30T12:01:10.1234567Z", "2026-11-30T12:01:10Z"])
def test_resource_managers_start_times_are_read_on_every_supported_python(monkeypatch,
                                                                           started):
    # Resource Manager writes seven fractional digits ("2018-07-24T17:46:06.1248429+00:00" in
    # the scale set upgrade docs); Python 3.10's fromisoformat refuses them, and an unread
    # start looked like no upgrade at all: the promotion was confirmed without watching it
    from llmcloud.providers import api_answers

    monkeypatch.setattr(api_answers, "datetime", Python310Datetime)
    arm = FakeArm(upgrade("RollingForward", started=started, busy=1),
                  upgrade("Faulted", started=started, failed=1))
    with pytest.raises(DeploymentError) as failed:
        wait(arm)
    assert failed.value.message == "the scale set's rolling upgrade ended Faulted"


def test_rate_limits_azure_failures_and_dropped_connections_are_asked_again():
    arm = FakeArm(Answer(429, "slow down"), Answer(503, "busy"),
                  requests.ConnectionError("reset"), upgrade("Completed", ok=2))
    assert wait(arm)[0] is True and len(arm.asked) == 4


def test_a_refusal_stops_the_wait_with_azures_message():
    arm = FakeArm(Answer(403, {"error": {"message": "does not have authorization to perform "
                                                    "action 'Microsoft.Compute/read'"}}))
    with pytest.raises(DeploymentError) as failed:
        wait(arm)
    assert "HTTP 403" in failed.value.message and "Microsoft.Compute/read" in \
        failed.value.context


def test_sovereign_clouds_have_their_own_resource_manager():
    assert management_endpoint(None) == "https://management.azure.com"
    assert management_endpoint("usgovernment") == "https://management.usgovcloudapi.net"
    assert management_endpoint("China") == "https://management.chinacloudapi.cn"


class FakeResourceManager(JsonApi):
    """Resource Manager's latest rolling upgrade, on loopback: rolling once, then done."""

    asked: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).asked.append((self.path, self.headers.get("Authorization")))
        self.answer(200, upgrade("RollingForward", busy=1) if len(type(self).asked) == 1
                    else upgrade("Completed", ok=2))


def provider_context(monkeypatch, tmp_path):
    import azure.identity

    from llmcloud.providers.azure import upgrade_wait
    from llmcloud.providers.azure.provider import AzureProvider
    from llmcloud.providers.base import StackContext
    from tests.providers.azure.helpers import azure_spec

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", AzureToken)
    monkeypatch.setattr(AzureToken, "scopes", [])
    monkeypatch.setattr(upgrade_wait.time, "sleep", lambda seconds: None)
    environ = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"}
    return AzureProvider(), StackContext(tmp_path, "prod", azure_spec(), environ=environ)


def test_the_provider_watches_the_stacks_scale_set_with_a_resource_manager_token(
        monkeypatch, tmp_path):
    from llmcloud.providers.azure import arm

    provider, ctx = provider_context(monkeypatch, tmp_path)
    with serving(FakeResourceManager) as url:
        monkeypatch.setitem(arm.ENDPOINTS, "public", url)
        assert provider.wait_for_rollout(ctx, {"scale_set_id": SCALE_SET}, SINCE, 60) is True
    assert FakeResourceManager.asked == [
        (f"{SCALE_SET}/rollingUpgrades/latest?api-version={API_VERSION}", "Bearer token-1")] * 2
    assert set(AzureToken.scopes) == {f"{url}/.default"}


def test_a_refused_token_is_a_credentials_error(monkeypatch, tmp_path):
    provider, ctx = provider_context(monkeypatch, tmp_path)
    monkeypatch.setattr(AzureToken, "refuse", True)
    with pytest.raises(CredentialsError) as refused:
        provider.wait_for_rollout(ctx, {"scale_set_id": SCALE_SET}, SINCE, 60)
    assert "AADSTS700016" in refused.value.context


def test_a_stack_without_servers_has_nothing_to_watch(monkeypatch, tmp_path):
    provider, ctx = provider_context(monkeypatch, tmp_path)
    assert provider.wait_for_rollout(ctx, {"registry_url": "r"}, SINCE, 60) is False


# -- what Resource Manager answers before the scale set's first rolling upgrade -------------

#: a scale set that has never had a rolling upgrade (the Azure SDK's own tests meet this:
#: "The entity was not found in this Azure location.")
NO_UPGRADE_YET = Answer(404, {"error": {"code": "NotFound", "message":
                                        "The entity was not found in this Azure location."}})


@pytest.mark.parametrize("before", [NO_UPGRADE_YET, Answer(200, ""), Answer(204, ""),
                                    Answer(200, {})],
                         ids=["404-NotFound", "200-empty", "204", "200-no-status"])
def test_no_upgrade_yet_is_waited_for_however_resource_manager_says_it(before):
    arm = FakeArm(before, before, upgrade("RollingForward", busy=1), upgrade("Completed", ok=1))
    assert wait(arm)[0] is True and len(arm.asked) == 4


@pytest.mark.parametrize("code", ["ResourceNotFound", "ResourceGroupNotFound",
                                  "ParentResourceNotFound"])
def test_a_missing_scale_set_is_an_error_not_an_upgrade_still_to_come(code):
    # without this, a deleted scale set (or group) looked like "no upgrade needed": the
    # promotion ended after the grace period as if nothing had to be replaced
    gone = Answer(404, {"error": {"code": code, "message": "The Resource 'Microsoft.Compute/"
                                  "virtualMachineScaleSets/llmcloud-gpu' was not found."}})
    arm = FakeArm(gone)
    with pytest.raises(DeploymentError) as failed:
        wait(arm)
    assert failed.value.message == "the stack's scale set was not found in Azure"
    assert "llmcloud-gpu' was not found" in failed.value.context
    assert arm.asked == [("GET", LATEST)]  # at once, and nothing to cancel
