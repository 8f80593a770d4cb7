"""GpuPool: the regional managed instance group of GPU servers, its template, autohealing,
rolling updates and autoscaler."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers.gcp.startup import IN_FLIGHT_METRIC

#: Deep Learning VM images: the NVIDIA driver, CUDA, Docker and the NVIDIA container toolkit
IMAGE_PROJECT = "deeplearning-platform-release"
IMAGE_FAMILY = "common-cu129-ubuntu-2204-nvidia-580"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
READY_PATH = "/health/ready"
NAMED_PORT = "http"
AUTOHEAL_INTERVAL = 30
#: How the group spreads its servers over the zones that offer the GPU. Google autoscales a
#: regional group only with the EVEN or BALANCED shape, runs two versions (the spot split)
#: only with EVEN, and takes BALANCED, ANY and ANY_SINGLE_ZONE only with proactive
#: redistribution off; turning it off (NONE) is for groups that are not autoscaled. So an
#: autoscaled group that may split on-demand and Spot servers is EVEN with PROACTIVE.
TARGET_SHAPE = "EVEN"
INSTANCE_REDISTRIBUTION = "PROACTIVE"


def initial_delay_seconds(gpu_memory_gb: int | None) -> int:
    """Time from boot to the first autohealing check that counts: image pull plus model load,
    which grows with the model (bounded by GPU memory); GCP allows at most 3600."""
    return min(3600, 600 + 10 * (gpu_memory_gb or 24))


def autoheal_unhealthy_threshold(drain_timeout_seconds: int,
                                 interval: int = AUTOHEAL_INTERVAL) -> int:
    """Failed checks before autohealing recreates a server: more than a drain lasts, since a
    draining server answers 503 on readiness and must not be recreated mid-drain."""
    return min(10, max(3, math.floor(drain_timeout_seconds / interval) + 2))


def surge_and_unavailable(zones: int) -> tuple[int, int]:
    """A rolling update's fixed surge and unavailability: a regional group needs a fixed
    surge of 0 or at least its zone count; never take a server away before its replacement
    is ready."""
    return max(1, zones), 0


def autoscaling_policy(*, min_replicas: int, max_replicas: int, signal: str, target: float,
                       cooldown_seconds: int, initial_delay: int) -> dict:
    """The regional autoscaler's policy: on the servers' in-flight gauge (a per-instance
    custom metric), or on load-balancing utilization for the requests signal (the backend's
    capacity is the target rate, see `rate_capacity`)."""
    policy: dict = {"min_replicas": min_replicas, "max_replicas": max_replicas,
                    # a new server is not useful until its model is loaded
                    "cooldown_period": max(cooldown_seconds, initial_delay), "mode": "ON",
                    "scale_in_control": {"max_scaled_in_replicas": {"fixed": 1},
                                         "time_window_sec": max(600, cooldown_seconds)}}
    if signal == "requests":
        policy["load_balancing_utilization"] = {"target": LB_UTILIZATION}
    else:
        policy["metrics"] = [{"name": IN_FLIGHT_METRIC, "target": target, "type": "GAUGE",
                              "filter": 'resource.type = "gce_instance"'}]
    return policy


#: the share of a backend's rate capacity the autoscaler keeps it at
LB_UTILIZATION = 0.8


def rate_capacity(requests_per_minute: float) -> float:
    """The backend's max rate per instance such that the autoscaler, holding utilization at
    LB_UTILIZATION, keeps each server near `requests_per_minute`."""
    return round(requests_per_minute / 60 / LB_UTILIZATION, 4)


@dataclass
class GpuPoolArgs:
    """The servers: what they run, where, how many, and how they scale."""

    name: str
    name_prefix: str
    project: pulumi.Input[str]
    region: str
    #: the zones the group spreads over (known once the region's zones are looked up)
    zones: pulumi.Input[Sequence[str]]
    #: the most zones the group may span (sizes the rolling update's surge)
    max_zones: int
    machine_type: str
    accelerator: tuple[str, int] | None
    subnetwork: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    startup_script: pulumi.Input[str]
    shutdown_script: str
    boot_disk_gb: int
    min_replicas: int
    max_replicas: int
    server_port: int
    initial_delay_seconds: int
    drain_timeout_seconds: int
    scaling_signal: str
    scaling_target: float
    cooldown_seconds: int
    spot: bool = False
    secure_boot: bool = False
    labels: dict[str, str] = field(default_factory=dict)


class GpuPool(pulumi.ComponentResource):
    """An instance template (Deep Learning VM image, Shielded VM, no external IP, project SSH
    keys blocked, serial port off, TERMINATE on host maintenance), a regional managed
    instance group over the zones that offer the GPU with autohealing on readiness, and a
    regional autoscaler.

    A new model version or image changes the startup script, so a new template; the group
    then replaces its servers proactively, one surge per zone, none taken away first.
    With `spot`, the minimum stays on-demand and the servers above it run on Spot VMs.
    """

    template: gcp.compute.InstanceTemplate
    group: gcp.compute.RegionInstanceGroupManager
    health_check: gcp.compute.HealthCheck

    def __init__(self, name: str, args: GpuPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:gcp:GpuPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        image = gcp.compute.get_image_output(family=IMAGE_FAMILY, project=IMAGE_PROJECT,
                                             opts=pulumi.InvokeOutputOptions(parent=self))
        self.template = self._template(f"{name}-template", args, image.self_link, spot=False)
        versions = [{"name": "on-demand", "instance_template": self.template.self_link_unique}]
        if args.spot:
            spot = self._template(f"{name}-spot-template", args, image.self_link, spot=True)
            # the group's other version takes whatever the on-demand base leaves
            versions = [{**versions[0], "target_size": {"fixed": args.min_replicas}},
                        {"name": "spot", "instance_template": spot.self_link_unique}]
        self.health_check = gcp.compute.HealthCheck(
            f"{name}-autoheal", name=f"{args.name}-autoheal",
            check_interval_sec=AUTOHEAL_INTERVAL, timeout_sec=10, healthy_threshold=1,
            unhealthy_threshold=autoheal_unhealthy_threshold(args.drain_timeout_seconds),
            http_health_check={"port": args.server_port, "request_path": READY_PATH},
            log_config={"enable": True}, opts=child)
        surge, unavailable = surge_and_unavailable(args.max_zones)
        self.group = gcp.compute.RegionInstanceGroupManager(
            f"{name}-mig", name=args.name, base_instance_name=args.name, region=args.region,
            distribution_policy_zones=args.zones,
            distribution_policy_target_shape=TARGET_SHAPE, versions=versions,
            named_ports=[{"name": NAMED_PORT, "port": args.server_port}],
            auto_healing_policies={"health_check": self.health_check.id,
                                   "initial_delay_sec": args.initial_delay_seconds},
            update_policy={"type": "PROACTIVE", "minimal_action": "REPLACE",
                           "most_disruptive_allowed_action": "REPLACE",
                           "replacement_method": "SUBSTITUTE",
                           "instance_redistribution_type": INSTANCE_REDISTRIBUTION,
                           "max_surge_fixed": surge, "max_unavailable_fixed": unavailable,
                           "min_ready_sec": 60},
            instance_lifecycle_policy={"default_action_on_failure": "REPAIR",
                                       "force_update_on_repair": "YES"},
            wait_for_instances=False,
            # The autoscaler owns the size; an update must not reset it. The zones are fixed
            # when the group is made (the API cannot change them: a change replaces the
            # group, every server at once); a later up that finds a zone DOWN, or a newer
            # zone table, must not do that behind the user's back.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=[
                "targetSize", "distributionPolicyZones"]))
        gcp.compute.RegionAutoscaler(
            f"{name}-autoscaler", name=args.name, region=args.region,
            target=self.group.id, autoscaling_policy=autoscaling_policy(
                min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                signal=args.scaling_signal, target=args.scaling_target,
                cooldown_seconds=args.cooldown_seconds,
                initial_delay=args.initial_delay_seconds), opts=child)
        self.register_outputs({"instance_group": self.group.instance_group,
                               "template": self.template.self_link_unique})

    def _template(self, name: str, args: GpuPoolArgs, image: pulumi.Input[str], *,
                  spot: bool) -> gcp.compute.InstanceTemplate:
        scheduling: dict = {"on_host_maintenance": "TERMINATE", "automatic_restart": True,
                            "provisioning_model": "STANDARD"}
        if spot:
            scheduling = {"on_host_maintenance": "TERMINATE", "automatic_restart": False,
                          "preemptible": True, "provisioning_model": "SPOT",
                          "instance_termination_action": "DELETE"}
        return gcp.compute.InstanceTemplate(
            name, name_prefix=f"{args.name_prefix}{'spot-' if spot else ''}",
            region=args.region, machine_type=args.machine_type,
            description="llmcloud model server", labels=args.labels,
            disks=[{"source_image": image, "boot": True, "auto_delete": True,
                    "disk_type": "pd-balanced", "disk_size_gb": args.boot_disk_gb,
                    "labels": args.labels}],
            guest_accelerators=[{"type": args.accelerator[0], "count": args.accelerator[1]}]
            if args.accelerator else None,
            # no access_configs: no external address; egress goes through Cloud NAT
            network_interfaces=[{"subnetwork": args.subnetwork}],
            # the account's IAM grants, not the scope, limit what the servers may do
            service_account={"email": args.service_account_email, "scopes": [CLOUD_PLATFORM]},
            scheduling=scheduling,
            shielded_instance_config={"enable_secure_boot": args.secure_boot,
                                      "enable_vtpm": True, "enable_integrity_monitoring": True},
            metadata={"block-project-ssh-keys": "true", "serial-port-enable": "false",
                      "enable-oslogin": "TRUE", "google-logging-enabled": "true",
                      "shutdown-script": args.shutdown_script},
            metadata_startup_script=args.startup_script,
            opts=pulumi.ResourceOptions(parent=self))
