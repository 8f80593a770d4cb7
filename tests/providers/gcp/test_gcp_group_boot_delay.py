"""The promotion's watch of the GCP instance group against the group the stack declares:
the stack gives each new server its autohealing initial delay (sized for the model load,
up to an hour on the 8-GPU machines) to become healthy, and the watch must not give up
before it — it gave up after promote's 30 minutes, rolling back a version still loading."""

from __future__ import annotations

import inspect
import types
from datetime import datetime, timezone

import pytest

from llmcloud.providers import rollout
from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp import group_wait
from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.stacks.errors import DeploymentError
from tests.providers.declared import declared_for, one, spec_for
from tests.providers.fakes import Answer, Clock

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
PROMOTE_TIMEOUT = inspect.signature(rollout.promote).parameters["timeout"].default
EIGHT_GPUS = {"compute": {"instance_type": "a2-highgpu-8g", "gpus": 8},
              "model": {"name": "t5", "version": "v2"}}


class ComputeApi:
    """The Compute Engine API's answer for the group as the stack declared it: busy until
    the clock reads ``ready_at`` (never, when None), then stable on its new version."""

    def __init__(self, url: str, group: dict, clock: Clock, ready_at: float | None):
        self.url, self.group, self.clock, self.ready_at = url, group, clock, ready_at

    def get(self, url, timeout):
        if url.endswith("/listErrors"):
            return Answer(200, {"items": []})
        assert url == self.url  # the group the stack made, in the stack's region
        ready = self.ready_at is not None and self.clock() >= self.ready_at
        return Answer(200, {
            "name": self.group["name"], "region": self.group["region"],
            # the API lists the policies (Pulumi's input is the one object)
            "autoHealingPolicies": [self.group["autoHealingPolicies"]],
            "currentActions": {"none": 1} if ready else {"creating": 0, "verifying": 1},
            "status": {"isStable": ready, "versionTarget": {"isReached": ready}}})


@pytest.fixture
def watch(monkeypatch, tmp_path):
    """GcpProvider.wait_for_rollout on the 8-GPU stack's outputs, against ComputeApi."""

    def run(ready_at: float | None) -> bool:
        resources, outputs = declared_for("gcp", "prod", **EIGHT_GPUS)
        group = one(resources,
                    "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")
        clock = Clock()
        url = group_wait.group_url("proj", group.inputs["region"], group.inputs["name"])
        api = ComputeApi(url, group.inputs, clock, ready_at)
        monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (api, "proj"))
        monkeypatch.setattr(group_wait, "time", types.SimpleNamespace(
            monotonic=clock, sleep=clock.sleep))
        ctx = StackContext(project_dir=tmp_path, stack="prod",
                           spec=spec_for("gcp", **EIGHT_GPUS), environ={})
        return GcpProvider().wait_for_rollout(ctx, outputs, SINCE, PROMOTE_TIMEOUT)
    return run


def test_servers_healthy_within_the_groups_boot_delay_confirm_the_roll(watch):
    # the a2-highgpu-8g's 320 GB of GPU memory: the stack allows the hour GCP permits
    assert watch(ready_at=2400.0) is True


def test_servers_never_healthy_still_fail_after_the_groups_boot_delay(watch):
    with pytest.raises(DeploymentError) as caught:
        watch(ready_at=None)
    waited = 3600 + group_wait.CREATE_ALLOWANCE_S
    assert caught.value.message == (
        f"the server group's update did not finish within {waited:.0f} s")
