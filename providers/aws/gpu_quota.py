"""Pre-flight read of the account's GPU vCPU quota, before `up` creates the server group.

A new AWS account has 0 vCPUs of "Running On-Demand G and VT instances": its Auto Scaling
group is created, every launch fails with `VcpuLimitExceeded`, and the user learned it from
a failed update, or not at all. EC2 counts the quota in vCPUs per instance family, per
region (Service Quotas, service code `ec2`). The read never blocks a user whose credentials
may not call `servicequotas:GetServiceQuota`: it is skipped with a note.
"""

from __future__ import annotations

from typing import Any

from llmcloud.stacks.errors import DeploymentError

#: instance family -> (quota code, quota name) for On-Demand instances (the group's minimum
#: is always on-demand, see gpu_pool's `on_demand_base_capacity`)
ON_DEMAND_QUOTAS = {
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}
#: vCPUs of a size of the GPU families llmcloud sizes for (g4dn, g5, g6, g6e, p4d, p5)
SIZE_VCPUS = {"xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "12xlarge": 48,
              "16xlarge": 64, "24xlarge": 96, "48xlarge": 192}


def vcpus(instance_type: str) -> int | None:
    """The vCPUs of a GPU instance type, from its size (None for a size not known)."""
    return SIZE_VCPUS.get(instance_type.partition(".")[2])


def quota_for(instance_type: str) -> tuple[str, str] | None:
    """The On-Demand vCPU quota (code, name) an instance type draws on, or None."""
    return ON_DEMAND_QUOTAS.get(instance_type[:1].lower())


def check(client: Any, instance_type: str, min_servers: int, max_servers: int,
          region: str) -> str | None:
    """Read the quota that `instance_type` draws on with ``client`` (boto3's
    `service-quotas` client in ``region``). Raises `DeploymentError` when the quota cannot
    hold ``min_servers``; returns a note when it cannot hold ``max_servers``, or when the
    quota could not be read (the check is skipped, never in the user's way); else None."""
    from botocore.exceptions import BotoCoreError, ClientError

    quota, size = quota_for(instance_type), vcpus(instance_type)
    if quota is None or size is None:
        return None
    code, name = quota
    try:
        limit = float(client.get_service_quota(ServiceCode="ec2", QuotaCode=code)
                      ["Quota"]["Value"])
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        return (f"note: the GPU quota check was skipped: '{name}' ({code}) in {region} could "
                f"not be read ({_why(exc)})")
    need, most = min_servers * size, max_servers * size
    ask = (f"aws service-quotas request-service-quota-increase --region {region} "
           f"--service-code ec2 --quota-code {code} --desired-value {most}")
    if limit < need:
        raise DeploymentError(
            f"the AWS quota '{name}' in {region} is {limit:g} vCPUs; {min_servers} "
            f"{instance_type} server(s) need {need}",
            context=f"quota {code} counts the vCPUs of running instances of the family "
                    f"(a {instance_type} has {size}); EC2 would refuse every launch "
                    "(VcpuLimitExceeded) and the servers would never come",
            hint=f"ask for more (the Service Quotas console, or: {ask}), wait for the "
                 "approval, then run llmcloud up again; or pick another region or "
                 "instance type with quota")
    if limit < most:
        return (f"note: the AWS quota '{name}' ({code}) in {region} is {limit:g} vCPUs: the "
                f"autoscaler can run {int(limit // size)} of the {max_servers} "
                f"{instance_type} servers compute.max_replicas allows (to ask for more: "
                f"{ask})")
    return None


def _why(exc: Exception) -> str:
    """The AWS error code (AccessDeniedException, ...) or the exception's kind."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code or type(exc).__name__
