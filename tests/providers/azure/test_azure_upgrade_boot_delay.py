"""The promotion's watch of the Azure rolling upgrade against the scale set the stack
declares: the stack gives each new server its automatic repairs' grace period (sized for
the model load, up to 90 minutes) to become healthy, and the watch must not give up
before it — it gave up after promote's 30 minutes, rolling back a version still loading."""

from __future__ import annotations

import inspect
import types
from datetime import datetime, timezone

import pytest

from llmcloud.providers import rollout
from llmcloud.providers.azure import arm, upgrade_wait
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import DeploymentError
from tests.providers.azure.helpers import VMSS, azure_spec, declared, one
from tests.providers.fakes import Answer, Clock

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
PROMOTE_TIMEOUT = inspect.signature(rollout.promote).parameters["timeout"].default
FOUR_A100S = {"compute": {"instance_type": "Standard_NC96ads_A100_v4", "gpus": 4},
              "model": {"name": "t5", "version": "v2"}}
SCALE_SET = ("/subscriptions/sub/resourceGroups/llm-prod-rg/providers/Microsoft.Compute/"
             "virtualMachineScaleSets/llm-prod-gpu")
ENVIRON = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"}


class ResourceManager:
    """Resource Manager's latest rolling upgrade of the scale set: rolling until the clock
    reads ``done_at`` (never, when None), then completed."""

    endpoint = "https://management.azure.com"

    def __init__(self, clock: Clock, done_at: float | None):
        self.clock, self.done_at, self.cancelled = clock, done_at, False

    def request(self, method: str, address: str):
        if method == "POST":
            self.cancelled = True
            return Answer(202, "")
        assert address.startswith(self.endpoint + SCALE_SET + "/rollingUpgrades/latest")
        done = self.done_at is not None and self.clock() >= self.done_at
        code = "Cancelled" if self.cancelled else "Completed" if done else "RollingForward"
        return Answer(200, {"properties": {
            "runningStatus": {"code": code, "startTime": "2026-11-30T12:01:10Z"},
            "progress": {"successfulInstanceCount": int(done),
                         "inProgressInstanceCount": int(not done)}}})


@pytest.fixture
def watch(monkeypatch, tmp_path):
    """AzureProvider.wait_for_rollout on the 4-GPU stack, against ResourceManager."""

    def run(done_at: float | None) -> tuple[bool, ResourceManager]:
        clock = Clock()
        manager = ResourceManager(clock, done_at)
        monkeypatch.setattr(arm, "Arm", lambda environ: manager)
        monkeypatch.setattr(upgrade_wait, "time", types.SimpleNamespace(
            monotonic=clock, sleep=clock.sleep))
        ctx = StackContext(tmp_path, "prod", azure_spec(**FOUR_A100S), environ=ENVIRON)
        return AzureProvider().wait_for_rollout(ctx, {"scale_set_id": SCALE_SET}, SINCE,
                                                PROMOTE_TIMEOUT), manager
    return run


def declared_grace_s() -> float:
    """The automatic repairs' grace period the stack declares for its scale set."""
    resources, _ = declared("prod", **FOUR_A100S)
    grace = one(resources, VMSS).inputs["automaticRepairsPolicy"]["gracePeriod"]
    assert grace.startswith("PT") and grace.endswith("M")
    return int(grace[2:-1]) * 60


def test_servers_healthy_within_the_repairs_grace_period_confirm_the_roll(watch):
    grace = declared_grace_s()
    assert grace > PROMOTE_TIMEOUT  # the case at hand: 4 A100s of 80 GB
    done, manager = watch(done_at=grace - 300)
    assert done is True and not manager.cancelled


def test_an_upgrade_that_never_ends_is_still_cancelled_after_the_grace_period(watch):
    with pytest.raises(DeploymentError) as caught:
        watch(done_at=None)
    waited = declared_grace_s() + upgrade_wait.CREATE_ALLOWANCE_S
    assert caught.value.message == (
        f"the scale set's rolling upgrade did not finish within {waited:.0f} s")
