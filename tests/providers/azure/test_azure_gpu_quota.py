"""`up` on Azure reads the subscription's GPU vCPU quotas (the size's family and Total
Regional vCPUs, or spot's) before anything is created: the scale set is created last, after
API Management's 30 to 45 minutes, and a subscription without NC/ND quota failed there."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure import gpu_quota, mocks
from llmcloud.providers.azure.provider import AzureProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import DeploymentError
from tests.providers.azure.helpers import azure_spec, declared

SUB = "11111111-2222-3333-4444-555555555555"
IMAGE = "myreg.azurecr.io/server@sha256:" + "d" * 64
ENVIRON = {"ARM_SUBSCRIPTION_ID": SUB}
USAGES = (f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/eastus/usages"
          "?api-version=2024-07-01")


class _Answer:
    def __init__(self, status: int, body: dict):
        self.status_code, self._body = status, body

    def json(self) -> dict:
        return self._body


def _usage(name: str, title: str, limit: float, current: float = 0.0) -> dict:
    # the shape of Compute's ListUsagesResult items
    return {"unit": "Count", "currentValue": current, "limit": limit,
            "name": {"value": name, "localizedValue": title}}


class _Arm:
    """Resource Manager as `arm.Arm.request` answers: the usages list and the scale set."""

    def __init__(self, family: float = 0.0, cores: float = 100.0, spot: float = 100.0,
                 status: int = 200, scale_set: dict | None = None, in_use: float = 0.0):
        self.asked: list[str] = []
        self.status, self.scale_set = status, scale_set
        self.usages = [
            _usage("cores", "Total Regional vCPUs", cores),
            _usage("virtualMachines", "Virtual Machines", 25000),
            # Azure's own casing of this one differs from the resource SKUs' family
            _usage("StandardNCADSA100v4Family", "Standard NCADS_A100_v4 Family vCPUs",
                   family, in_use),
            _usage("lowPriorityCores", "Total Regional Spot vCPUs", spot)]

    def request(self, method: str, address: str, timeout: float = 30) -> _Answer:
        assert method == "GET"
        self.asked.append(address)
        if "/usages" in address:
            if self.status != 200:
                return _Answer(self.status, {"error": {"code": "AuthorizationFailed"}})
            return _Answer(200, {"value": self.usages})
        if self.scale_set is None:
            return _Answer(404, {"error": {"code": "ResourceGroupNotFound"}})
        return _Answer(200, self.scale_set)


def _up(tmp_path, monkeypatch, arm: _Arm, environ=ENVIRON, **sections) -> None:
    monkeypatch.setattr(AzureProvider, "quota_reader", staticmethod(lambda environ: arm))
    AzureProvider().before_up(StackContext(tmp_path, "dev", azure_spec(**sections),
                                           environ=environ))


@pytest.mark.quota_reads
def test_up_is_refused_when_the_family_has_no_quota(tmp_path, monkeypatch):
    arm = _Arm(family=0.0)
    with pytest.raises(DeploymentError) as raised:
        _up(tmp_path, monkeypatch, arm, image=IMAGE)
    error = raised.value
    assert "'Standard NCADS_A100_v4 Family vCPUs' (StandardNCADSA100v4Family)" in error.message
    assert "in eastus has room for 0 vCPUs" in error.message and "need 24" in error.message
    assert "Azure portal > Quotas" in error.hint
    assert ("az quota update --resource-name StandardNCADSA100v4Family --resource-type "
            f"dedicated --scope /subscriptions/{SUB}/providers/Microsoft.Compute/locations/"
            "eastus --limit-object value=48") in error.hint  # max_replicas: 2 by default
    assert arm.asked[0] == USAGES


@pytest.mark.quota_reads
def test_total_regional_vcpus_are_read_too(tmp_path, monkeypatch):
    with pytest.raises(DeploymentError, match="'Total Regional vCPUs' \\(cores\\) in eastus "
                                              "has room for 10 vCPUs"):
        _up(tmp_path, monkeypatch, _Arm(family=48.0, cores=10.0), image=IMAGE)


@pytest.mark.quota_reads
def test_first_up_without_an_image_only_warns(tmp_path, monkeypatch, capsys):
    _up(tmp_path, monkeypatch, _Arm(family=0.0))
    err = capsys.readouterr().err
    assert err.startswith("warning: the Azure quota 'Standard NCADS_A100_v4 Family vCPUs'")
    assert "this up creates no servers yet" in err


@pytest.mark.quota_reads
def test_a_refused_read_never_blocks_up(tmp_path, monkeypatch, capsys):
    _up(tmp_path, monkeypatch, _Arm(status=403), image=IMAGE)
    assert "skipped: the usages of eastus could not be read (HTTP 403 AuthorizationFailed)" \
        in capsys.readouterr().err


@pytest.mark.quota_reads
def test_no_known_subscription_skips_with_a_note(tmp_path, monkeypatch, capsys):
    arm = _Arm(family=0.0)
    _up(tmp_path, monkeypatch, arm, environ={"AZURE_CONFIG_DIR": str(tmp_path)}, image=IMAGE)
    assert "ARM_SUBSCRIPTION_ID" in capsys.readouterr().err and arm.asked == []


@pytest.mark.quota_reads
def test_room_short_of_max_replicas_is_a_note(tmp_path, monkeypatch, capsys):
    _up(tmp_path, monkeypatch, _Arm(family=48.0), image=IMAGE,
        compute={"min_replicas": 1, "max_replicas": 4})
    assert "can run 2 of the 4 Standard_NC24ads_A100_v4 servers" in capsys.readouterr().err


@pytest.mark.quota_reads
def test_spot_servers_draw_on_the_spot_quota(tmp_path, monkeypatch):
    # the family has none, but spot VMs count only against Total Regional Spot vCPUs
    with pytest.raises(DeploymentError, match="'Total Regional Spot vCPUs'"):
        _up(tmp_path, monkeypatch, _Arm(family=0.0, spot=0.0), image=IMAGE,
            compute={"spot": True})


def _stack_scale_set(capacity: int) -> dict:
    return {"location": "eastus", "sku": {"name": "Standard_NC24ads_A100_v4",
                                          "capacity": capacity},
            "properties": {"virtualMachineProfile": {"priority": "Regular"}}}


@pytest.mark.quota_reads
def test_the_stacks_own_servers_count_as_room(tmp_path, monkeypatch, capsys):
    # the family's 24 vCPUs are in use by this stack's own server: an up that keeps it fits
    arm = _Arm(family=24.0, in_use=24.0, scale_set=_stack_scale_set(1))
    _up(tmp_path, monkeypatch, arm, image=IMAGE)  # not refused
    assert "has room for 24 vCPUs: the autoscaler can run 1 of the 2" in capsys.readouterr().err
    assert arm.asked[1] == (gpu_quota.scale_set_address(SUB, "dev") + "?api-version=2024-07-01")
    # used by something else, the same numbers refuse
    with pytest.raises(DeploymentError):
        _up(tmp_path, monkeypatch, _Arm(family=24.0, in_use=24.0), image=IMAGE)


def test_the_scale_set_read_is_the_one_the_stack_declares():
    # the producer: service.py names the scale set; the reader must build the same id
    _, outputs = declared("dev", image=IMAGE)
    assert outputs["scale_set_id"] == gpu_quota.scale_set_address(mocks.SUBSCRIPTION_ID, "dev")


def test_every_priced_size_has_its_family(tmp_path):
    from llmcloud.providers.azure.prices import GPU_SIZES

    assert set(gpu_quota.SIZES) == set(GPU_SIZES)


def test_the_subscription_is_the_az_clis_default(tmp_path):
    profile = ('\ufeff{"subscriptions": [{"id": "a", "isDefault": false}, '
               '{"id": "b", "isDefault": true}]}')
    (tmp_path / "azureProfile.json").write_text(profile, encoding="utf-8")
    assert gpu_quota.subscription_of({"AZURE_CONFIG_DIR": str(tmp_path)}) == "b"
    assert gpu_quota.subscription_of({"ARM_SUBSCRIPTION_ID": "c",
                                      "AZURE_CONFIG_DIR": str(tmp_path)}) == "c"


def test_every_page_of_usages_is_read():
    pages = {"first": _Answer(200, {"value": [_usage("cores", "Total Regional vCPUs", 100)],
                                    "nextLink": "https://management.azure.com/next"}),
             "https://management.azure.com/next": _Answer(200, {"value": [_usage(
                 "standardNCADSA100v4Family", "Standard NCADS_A100_v4 Family vCPUs", 0)]})}

    def get(address: str) -> _Answer:
        return pages["first"] if "/usages" in address else pages.get(address, _Answer(404, {}))

    with pytest.raises(DeploymentError, match="room for 0 vCPUs"):
        gpu_quota.check(get, SUB, "eastus", "dev", "Standard_NC24ads_A100_v4", 1, 1)
