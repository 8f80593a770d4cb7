"""GpuPool: the scale set of GPU servers behind the load balancer, rolled and autoscaled."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import compute, monitor

from llmcloud.providers.azure.identity import MONITORING_METRICS_PUBLISHER, grant
from llmcloud.providers.azure.metric_ready import WAITING
from llmcloud.providers.azure.scaling import rolling_upgrade_policy, scale_rules

#: Ubuntu 22.04 HPC: NVIDIA datacenter driver, CUDA, Docker and the NVIDIA container toolkit
#: preinstalled, for the NC (T4, A100, H100) and ND sizes. The NV A10 v5 sizes need the
#: GRID driver instead (the NVIDIA GPU driver extension, which does not support Secure Boot).
HPC_IMAGE = {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204",
             "version": "latest"}
ADMIN_USER = "llmcloud"


def monitor_agent(identity_id: pulumi.Input[str]) -> dict:
    """The Azure Monitor Agent extension, signed in with the servers' identity: it ships the
    server's journal (through syslog) to the workspace by the monitoring layer's rule."""
    return {"name": "AzureMonitorLinuxAgent", "publisher": "Microsoft.Azure.Monitor",
            "type": "AzureMonitorLinuxAgent", "type_handler_version": "1.0",
            "auto_upgrade_minor_version": True, "enable_automatic_upgrade": True,
            "settings": {"authentication": {"managedIdentity": {
                "identifier-name": "mi_res_id", "identifier-value": identity_id}}}}


@dataclass
class GpuPoolArgs:
    """The servers: what they run, where, how many, and how they scale."""

    resource_group_name: pulumi.Input[str]
    location: str
    subscription_id: str
    stack: str
    vmss_name: str
    computer_name_prefix: str
    vm_size: str
    min_size: int
    max_size: int
    subnet_id: pulumi.Input[str]
    backend_pool_id: str
    probe_id: str
    identity_id: pulumi.Input[str]
    identity_principal_id: pulumi.Input[str]
    custom_data: pulumi.Input[str]
    ssh_public_key: str
    os_disk_gb: int
    repair_grace_period: str
    #: how long a VM's deletion waits for the server to drain (ISO 8601, PT5M to PT15M)
    terminate_notice: str
    scaling_signal: str
    scaling_target: float
    cooldown_seconds: int
    gateway_id: pulumi.Input[str]
    spot: bool = False
    #: False while the in-flight metric the rules read does not exist yet (`metric_ready`):
    #: Azure refuses the setting then, so it waits for a later `up`
    autoscale_ready: bool = True
    notify_emails: Sequence[str] = ()
    #: what the scale set must wait for (the load balancer that owns its probe, the roles
    #: its servers use at boot)
    wait_for: Sequence[pulumi.Resource] = ()
    tags: dict[str, str] = field(default_factory=dict)


class GpuPool(pulumi.ComponentResource):
    """A Uniform scale set on the HPC image: SSH keys only, encryption at host, premium OS
    disk, no public addresses, the stack's identity, members of the load balancer's pool
    whose probe is their health, told before deletion so that each server drains.

    A new model version or image changes the custom data, so the scale set gets a new
    model, which a rolling upgrade with surge rolls out batch by batch, rolling failed
    servers back; automatic repairs replace servers that stay unhealthy. An autoscale
    setting keeps the count between min and max (once its metric exists: `metric_ready`)."""

    vmss: compute.VirtualMachineScaleSet
    autoscale: monitor.AutoscaleSetting | None

    def __init__(self, name: str, args: GpuPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:azure:GpuPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        custom_data = pulumi.Output.from_input(args.custom_data).apply(
            lambda text: base64.b64encode(text.encode()).decode())
        spot = ({"priority": "Spot", "eviction_policy": "Delete",
                 "billing_profile": {"max_price": -1}} if args.spot else {"priority": "Regular"})
        self.vmss = compute.VirtualMachineScaleSet(
            f"{name}-vmss", vm_scale_set_name=args.vmss_name,
            resource_group_name=args.resource_group_name, location=args.location,
            sku={"name": args.vm_size, "tier": "Standard", "capacity": args.min_size},
            orchestration_mode="Uniform", overprovision=False, single_placement_group=False,
            identity={"type": "UserAssigned", "user_assigned_identities": [args.identity_id]},
            upgrade_policy={"mode": "Rolling",
                            "rolling_upgrade_policy": rolling_upgrade_policy()},
            automatic_repairs_policy={"enabled": True, "grace_period": args.repair_grace_period,
                                      "repair_action": "Replace"},
            scale_in_policy={"rules": ["OldestVM"], "force_deletion": False},
            virtual_machine_profile={
                **spot,
                "storage_profile": {
                    "image_reference": HPC_IMAGE,
                    "os_disk": {"create_option": "FromImage", "caching": "ReadWrite",
                                "disk_size_gb": args.os_disk_gb,
                                "managed_disk": {"storage_account_type": "Premium_LRS"}}},
                "os_profile": {
                    "computer_name_prefix": args.computer_name_prefix,
                    "admin_username": ADMIN_USER, "custom_data": custom_data,
                    "linux_configuration": {
                        "disable_password_authentication": True,
                        "provision_vm_agent": True,
                        "ssh": {"public_keys": [{
                            "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                            "key_data": args.ssh_public_key}]}}},
                "security_profile": {"encryption_at_host": True},
                "scheduled_events_profile": {"terminate_notification_profile": {
                    "enable": True, "not_before_timeout": args.terminate_notice}},
                "network_profile": {
                    "health_probe": {"id": args.probe_id},
                    "network_interface_configurations": [{
                        "name": "nic", "primary": True, "enable_accelerated_networking": True,
                        "ip_configurations": [{
                            "name": "ipconfig", "primary": True,
                            "subnet": {"id": args.subnet_id},
                            "load_balancer_backend_address_pools": [
                                {"id": args.backend_pool_id}]}]}]},
                "diagnostics_profile": {"boot_diagnostics": {"enabled": True}},
                "extension_profile": {"extensions": [monitor_agent(args.identity_id)]},
            },
            tags=args.tags,
            # the autoscale setting owns the instance count; an update must not reset it
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for),
                                        ignore_changes=["sku.capacity"]))
        # each server posts its in-flight gauge as a metric of this scale set, nothing wider
        grant(f"{name}-publish-metrics", subscription_id=args.subscription_id,
              stack=args.stack, purpose="publish server metrics",
              role=MONITORING_METRICS_PUBLISHER, principal_id=args.identity_principal_id,
              scope=self.vmss.id, parent=self)
        self.autoscale = None
        if not args.autoscale_ready:
            pulumi.log.warn(WAITING, resource=self)
            self.register_outputs({"vmss_id": self.vmss.id, "vmss_name": self.vmss.name})
            return
        rules = pulumi.Output.all(self.vmss.id, args.gateway_id).apply(
            lambda ids: scale_rules(signal=args.scaling_signal, target=args.scaling_target,
                                    cooldown_seconds=args.cooldown_seconds,
                                    scale_set_id=ids[0], gateway_id=ids[1],
                                    # a new server serves only once its model is loaded
                                    boot_allowance=args.repair_grace_period))
        self.autoscale = monitor.AutoscaleSetting(
            f"{name}-autoscale", autoscale_setting_name=f"{args.vmss_name}-autoscale",
            resource_group_name=args.resource_group_name, location=args.location,
            target_resource_uri=self.vmss.id, enabled=True,
            profiles=[{"name": "default", "capacity": {
                "minimum": str(args.min_size), "maximum": str(args.max_size),
                "default": str(args.min_size)}, "rules": rules}],
            notifications=[{"operation": "Scale", "email": {
                "send_to_subscription_administrator": not args.notify_emails,
                "send_to_subscription_co_administrators": False,
                "custom_emails": list(args.notify_emails)}}],
            tags=args.tags, opts=child)
        self.register_outputs({"vmss_id": self.vmss.id, "vmss_name": self.vmss.name,
                               "autoscale_id": self.autoscale.id})
