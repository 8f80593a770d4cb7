"""The first `up` on an account without GPU quota or a zone without capacity: the cloud's
own failure, as the engine reports it, reaches the user as quota or capacity (with where to
ask), and on AWS a pre-flight read of the vCPU quota refuses before anything is created."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import create_command_error

from llmcloud.providers.aws import gpu_quota
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.automation import translate_command_error
from llmcloud.stacks.errors import DeploymentError
from tests.providers.aws_helpers import aws_spec

#: pulumi-aws's Auto Scaling group fails on the group's failed scaling activity
AWS_NO_QUOTA = (
    "aws:autoscaling/group:Group (llm-dev-servers-asg):\n"
    "  error: 1 error occurred:\n"
    "  * creating Auto Scaling Group (llm-dev-servers): waiting for Auto Scaling Group "
    "(llm-dev-servers) capacity satisfied: scaling activity (0a1b): Failed: Launching a new "
    "EC2 instance. Status Reason: You have requested more vCPU capacity than your current "
    "vCPU limit of 0 allows for the instance bucket that the specified instance type belongs "
    "to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment "
    "to this limit. Launching EC2 instance failed.")
GCP_NO_QUOTA = (
    "gcp:compute/instance:Instance (x):\n"
    "  error: googleapi: Error 403: Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally., "
    "quotaExceeded")
GCP_STOCKOUT = (
    "gcp:compute/instance:Instance (x):\n"
    "  error: Error 503: The zone 'projects/p/zones/us-central1-b' does not have enough "
    "resources available to fulfill the request. (state:STOCKOUT), "
    "ZONE_RESOURCE_POOL_EXHAUSTED")
AZURE_NO_QUOTA = (
    "azure-native:compute:VirtualMachineScaleSet (llm-dev-vmss):\n"
    "  error: Code=\"OperationNotAllowed\" Message=\"Operation could not be completed as it "
    "results in exceeding approved standardNCADSA10v4Family Cores quota. Additional details - "
    "Deployment Model: Resource Manager, Location: eastus, Current Limit: 0, Current Usage: 0, "
    "Additional Required: 36, (Minimum) New Limit Required: 36.\"")
AZURE_NO_CAPACITY = (
    "azure-native:compute:VirtualMachineScaleSet (llm-dev-vmss):\n"
    "  error: Code=\"SkuNotAvailable\" Message=\"The requested VM size for resource "
    "'Following SKUs have failed for Capacity Restrictions: Standard_NC24ads_A100_v4' is "
    "currently not available in location 'eastus'.\"")


def _failed_update(diagnostic: str) -> Exception:
    stdout = ("Updating (dev):\n"
              "    pulumi:pulumi:Stack llmcloud-dev running error: update failed\n\n"
              "Diagnostics:\n" + diagnostic + "\n"
              "  pulumi:pulumi:Stack (llmcloud-dev):\n    error: update failed\n"
              "Resources:\n    + 12 created\n\nDuration: 4m2s\n")
    return create_command_error(CommandResult(stdout=stdout, stderr="", code=255))


@pytest.mark.parametrize(("diagnostic", "said", "where", "fact"), [
    (AWS_NO_QUOTA, "quota", "L-DB2E81BA", "vCPU limit of 0 allows"),
    (GCP_NO_QUOTA, "quota", "GPUS_ALL_REGIONS", "Limit: 0.0 globally"),
    (AZURE_NO_QUOTA, "quota", "az vm list-usage", "standardNCADSA10v4Family Cores quota"),
    (GCP_STOCKOUT, "no capacity", "another region", "us-central1-b"),
    (AZURE_NO_CAPACITY, "no capacity", "another region", "Standard_NC24ads_A100_v4"),
])
def test_the_engine_failure_says_quota_or_capacity(diagnostic, said, where, fact):
    error = translate_command_error(_failed_update(diagnostic), "dev", "aws configure")
    assert isinstance(error, DeploymentError)
    assert said in error.message and "'dev'" in error.message
    assert where in error.hint
    assert "--debug" not in error.hint  # (the old answer: "the Pulumi engine failed")
    # the cloud's own words, naming the quota and its limit (or the zone), are kept
    assert fact in error.context


def _client(region: str = "us-east-1"):
    return boto3.client("service-quotas", region_name=region, aws_access_key_id="x",
                        aws_secret_access_key="y")


def _answer(stub: Stubber, value: float, code: str = "L-DB2E81BA") -> None:
    stub.add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": value}},
                      {"ServiceCode": "ec2", "QuotaCode": code})


def test_a_quota_of_zero_refuses_with_the_quota_and_how_to_ask():
    client = _client()
    with Stubber(client) as stub:
        _answer(stub, 0.0)
        with pytest.raises(DeploymentError) as raised:
            gpu_quota.check(client, "g6.xlarge", 1, 3, "us-east-1")
    error = raised.value
    assert "Running On-Demand G and VT instances" in error.message
    assert "is 0 vCPUs" in error.message and "need 4" in error.message
    assert "--quota-code L-DB2E81BA --desired-value 12" in error.hint


def test_p_instances_draw_on_their_own_quota():
    client = _client()
    with Stubber(client) as stub:
        _answer(stub, 96.0, "L-417A185B")
        note = gpu_quota.check(client, "p4d.24xlarge", 1, 2, "us-west-2")
    assert note and "Running On-Demand P instances" in note and "can run 1 of the 2" in note


def test_a_quota_that_cannot_be_read_is_skipped_with_a_note():
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("get_service_quota", "AccessDeniedException", "not allowed")
        note = gpu_quota.check(client, "g5.xlarge", 1, 1, "us-east-1")
    assert note and "skipped" in note and "AccessDeniedException" in note


@pytest.mark.quota_reads
def test_up_is_refused_before_anything_is_created(tmp_path, monkeypatch, capsys):
    client = _client("eu-west-1")
    monkeypatch.setattr(AwsProvider, "quota_client", staticmethod(lambda region: client))
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/llm@sha256:" + "a" * 64
    with_image = StackContext(tmp_path, "dev", aws_spec(region="eu-west-1", image=image))
    with Stubber(client) as stub:
        _answer(stub, 0.0)
        with pytest.raises(DeploymentError, match="eu-west-1 is 0 vCPUs"):
            AwsProvider().before_up(with_image)
        # the first up (registry and store only) warns, so the increase is asked early
        _answer(stub, 0.0)
        AwsProvider().before_up(StackContext(tmp_path, "dev", aws_spec(region="eu-west-1")))
    assert "warning:" in capsys.readouterr().err


class _Answer:
    def __init__(self, status: int, body: dict):
        self.status_code, self._body = status, body

    def json(self) -> dict:
        return self._body


class _Compute:
    """Compute Engine's `regions.get` and `projects.get`, as a `requests` session answers."""

    def __init__(self, regional: float, everywhere: float, status: int = 200,
                 usage: float = 0.0, group_size: int | None = None):
        self.asked: list[str] = []
        self.quotas = {"regions/us-central1": ("NVIDIA_L4_GPUS", regional),
                       "projects/p": ("GPUS_ALL_REGIONS", everywhere)}
        self.status, self.usage, self.group_size = status, usage, group_size

    def get(self, url: str, timeout: float) -> _Answer:
        self.asked.append(url)
        if "/instanceGroupManagers/" in url:  # the stack's own group, if it has one yet
            if self.group_size is None:
                return _Answer(404, {"error": {"code": 404}})
            return _Answer(200, {"name": url.rsplit("/", 1)[-1], "targetSize": self.group_size})
        metric, limit = next(q for key, q in self.quotas.items() if url.endswith(key))
        return _Answer(self.status, {"quotas": [
            {"metric": "CPUS", "limit": 24.0, "usage": 0.0},
            {"metric": metric, "limit": limit, "usage": self.usage}]})


def _gcp_up(tmp_path, monkeypatch, session: _Compute, **sections):
    from llmcloud.providers.gcp.provider import GcpProvider
    from tests.providers.declared import spec_for

    monkeypatch.setattr(GcpProvider, "_google", lambda self, ctx: (session, "p"))
    GcpProvider().before_up(StackContext(tmp_path, "dev", spec_for("gcp", **sections)))


GCP_IMAGE = "us-central1-docker.pkg.dev/p/llm/server@sha256:" + "b" * 64


@pytest.mark.quota_reads
def test_gcp_up_is_refused_when_gpus_all_regions_is_zero(tmp_path, monkeypatch):
    compute = _Compute(regional=1.0, everywhere=0.0)
    with pytest.raises(DeploymentError) as raised:
        _gcp_up(tmp_path, monkeypatch, compute, image=GCP_IMAGE)
    assert "GPUS_ALL_REGIONS (all regions) has room for 0 GPUs" in raised.value.message
    assert "IAM & Admin > Quotas" in raised.value.hint
    assert compute.asked == [
        "https://compute.googleapis.com/compute/v1/projects/p/regions/us-central1/"
        "instanceGroupManagers/llm-dev-gpu",
        "https://compute.googleapis.com/compute/v1/projects/p/regions/us-central1",
        "https://compute.googleapis.com/compute/v1/projects/p"]


@pytest.mark.quota_reads
def test_gcp_up_of_a_stack_whose_own_servers_fill_the_quota_goes_on(tmp_path, monkeypatch,
                                                                    capsys):
    # the project's one L4 is the stack's own server: its next `up` keeps it, needs no more
    compute = _Compute(regional=1.0, everywhere=1.0, usage=1.0, group_size=1)
    _gcp_up(tmp_path, monkeypatch, compute, image=GCP_IMAGE,
            compute={"min_replicas": 1, "max_replicas": 1})
    assert "warning" not in capsys.readouterr().err
    # the same usage from other VMs, with no group of the stack's yet: refused
    with pytest.raises(DeploymentError):
        _gcp_up(tmp_path, monkeypatch, _Compute(1.0, 1.0, usage=1.0), image=GCP_IMAGE,
                compute={"min_replicas": 1, "max_replicas": 1})


@pytest.mark.quota_reads
def test_gcp_quota_that_cannot_be_read_never_blocks_up(tmp_path, monkeypatch, capsys):
    _gcp_up(tmp_path, monkeypatch, _Compute(0.0, 0.0, status=403), image=GCP_IMAGE)
    assert "skipped: NVIDIA_L4_GPUS could not be read (HTTP 403)" in capsys.readouterr().err


@pytest.mark.quota_reads
def test_gcp_first_up_warns_of_a_regional_quota_too_small(tmp_path, monkeypatch, capsys):
    _gcp_up(tmp_path, monkeypatch, _Compute(regional=0.0, everywhere=8.0))
    err = capsys.readouterr().err
    assert err.startswith("warning: the GCP quota NVIDIA_L4_GPUS (region us-central1)")


@pytest.mark.quota_reads
def test_gcp_asks_for_a_limit_that_holds_the_other_vms_gpus_too():
    from llmcloud.providers.gcp import gpu_quota

    # 4 L4s held by other VMs of the project: 2 servers need a limit of 6, not 2
    with pytest.raises(DeploymentError) as raised:
        gpu_quota.check(_Compute(regional=4.0, everywhere=16.0, usage=4.0), "p", "us-central1",
                        "nvidia-l4", 1, 1, 2)
    assert "has room for 0 GPUs (limit 4, in use 4)" in raised.value.message
    assert raised.value.hint.startswith("ask for a limit of at least 6 (")
