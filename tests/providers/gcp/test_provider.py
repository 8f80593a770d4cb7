"""The GCP provider's own behaviour: prices, credentials, the image and budget gates."""

from __future__ import annotations

import pytest

from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp.prices import GPU_MACHINES, boot_disk_gb, nat_billed_vms
from llmcloud.providers.registry import get_provider
from llmcloud.stacks.cost import estimate
from llmcloud.stacks.errors import CredentialsError, DeploymentError
from llmcloud.stacks.plan import run_plan
from tests.providers.gcp.helpers import gcp_spec


def test_default_cost_is_one_l4_server_plus_the_edge():
    cost = estimate(get_provider("gcp").prices(gcp_spec()))
    items = {i["name"]: i for i in cost["items"]}
    gpu = items["GPU servers (g2-standard-8, on-demand)"]
    assert (gpu["quantity_min"], gpu["quantity_max"]) == (1, 2)
    assert gpu["unit_usd"] == GPU_MACHINES["g2-standard-8"].hourly_usd
    assert 0.9 < cost["hourly_min"] < 1.0 and 1.8 < cost["hourly_max"] < 1.9
    assert cost["price_date"] and "cloud.google.com" in cost["source"]
    assert not cost["notes"]
    # usage-priced lines are listed but not summed
    assert items["Cloud Armor requests"]["hourly_max"] == 0


def test_other_regions_are_flagged_as_estimated():
    cost = estimate(get_provider("gcp").prices(gcp_spec(region="europe-west4")))
    assert cost["notes"] == ["europe-west4 is priced as us-central1; check the region's prices"]


def test_price_arithmetic():
    assert boot_disk_gb(200, "g2-standard-8") == 200
    assert boot_disk_gb(30, "a3-highgpu-8g") == 70 + 2 * 8 * 80
    assert nat_billed_vms(50) == 32 and nat_billed_vms(3) == 3


def test_plan_over_budget_reports_it():
    doc = run_plan(gcp_spec(budget={"max_hourly_usd": 1.0}), "dev")
    assert doc["budget"] == {"max_hourly_usd": 1.0, "exceeded": True}


def test_budget_gate_before_up(tmp_path):
    provider = get_provider("gcp")
    image = "us-central1-docker.pkg.dev/p/r/server@sha256:" + "a" * 64
    for spec in (gcp_spec(image=image, budget={"max_hourly_usd": 1.0}),
                 gcp_spec(budget={"max_hourly_usd": 1.0})):  # checked before the first up too
        ctx = StackContext(project_dir=tmp_path, stack="dev", environ={}, spec=spec)
        with pytest.raises(DeploymentError, match=r"\$1.83/h at max replicas"):
            provider.before_up(ctx)


def test_credentials_need_a_project(tmp_path):
    key = tmp_path / "key.json"
    key.write_text("{}")
    provider = get_provider("gcp")
    with pytest.raises(CredentialsError, match="no Google Cloud project") as info:
        provider.check_credentials({"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    assert "GOOGLE_CLOUD_PROJECT" in info.value.hint
    provider.check_credentials({"GOOGLE_APPLICATION_CREDENTIALS": str(key),
                                "GOOGLE_CLOUD_PROJECT": "my-project"})


def test_promote_rollback_upload_and_push_are_offered():
    offered = {"promote", "rollback", "model_upload", "image_push"}
    assert not offered & set(get_provider("gcp").unsupported)
