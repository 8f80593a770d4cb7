"""GpuPool: the Auto Scaling group of GPU servers, rolled by instance refresh."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws.userdata import IN_FLIGHT_METRIC, METRIC_NAMESPACE

#: AWS's public parameter naming the latest GPU Deep Learning AMI (NVIDIA driver, Docker and
#: the NVIDIA container toolkit on Amazon Linux 2023)
DLAMI_PARAMETER = ("/aws/service/deeplearning/ami/x86_64/"
                   "base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id")
ROOT_DEVICE = "/dev/xvda"


def grace_period_seconds(gpu_memory_gb: int | None) -> int:
    """Time from boot to the first readiness check that counts: image pull plus model load,
    which grows with the model (bounded by GPU memory)."""
    return 600 + 10 * (gpu_memory_gb or 24)


@dataclass
class GpuPoolArgs:
    """The servers: what they run, where, how many, and how they scale."""

    asg_name: str
    instance_type: str
    min_size: int
    max_size: int
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    instance_profile_arn: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    user_data: pulumi.Input[str]
    root_volume_gb: int
    grace_period_seconds: int
    scaling_signal: str  # "in_flight" or "requests"
    scaling_target: float
    alb_request_label: pulumi.Input[str]
    spot: bool = False
    alternative_types: Sequence[str] = ()
    #: what must exist before a server boots (the log group its container logs to)
    boot_ready: Sequence[pulumi.Resource] = ()
    tags: dict[str, str] = field(default_factory=dict)
    #: tags for the group and what it launches (instances, volumes): the provider's
    #: default tags reach neither an Auto Scaling group nor the instances it starts
    instance_tags: dict[str, str] = field(default_factory=dict)
    #: a canary's group (`promote --canary`): exactly this many on-demand servers, no
    #: scaling policy, no instance refresh (it is created on its version and deleted), and
    #: no wait of Pulumi's for their health (promote watches it); None: the fleet
    fixed_size: int | None = None


class GpuPool(pulumi.ComponentResource):
    """A launch template (DLAMI, IMDSv2, encrypted gp3, no public IP) and an Auto Scaling
    group registered to the load balancer's target group.

    A new model version or image changes the user data, which makes a new launch template
    version; the group then replaces its servers by instance refresh, keeping 100 % of the
    healthy capacity and rolling back by itself if the new servers fail their checks.
    """

    launch_template: aws.ec2.LaunchTemplate
    group: aws.autoscaling.Group

    def __init__(self, name: str, args: GpuPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:GpuPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        launched = {**args.tags, **args.instance_tags}
        ami = aws.ssm.get_parameter_output(name=DLAMI_PARAMETER,
                                           opts=pulumi.InvokeOutputOptions(parent=self)).value
        user_data = pulumi.Output.from_input(args.user_data).apply(
            lambda text: base64.b64encode(text.encode()).decode())
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt", name_prefix=f"{args.asg_name}-", image_id=ami,
            instance_type=args.instance_type, update_default_version=True,
            iam_instance_profile={"arn": args.instance_profile_arn},
            # hop limit 2: the server's container reaches IMDS for the role's credentials
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 2,
                              "instance_metadata_tags": "disabled"},
            block_device_mappings=[{"device_name": ROOT_DEVICE, "ebs": {
                "volume_size": args.root_volume_gb, "volume_type": "gp3", "encrypted": "true",
                "delete_on_termination": "true"}}],
            network_interfaces=[{"associate_public_ip_address": "false",
                                 "delete_on_termination": "true",
                                 "security_groups": [args.security_group_id]}],
            monitoring={"enabled": True}, user_data=user_data,
            tag_specifications=[{"resource_type": kind, "tags": {**launched,
                                                                 "Name": args.asg_name}}
                                for kind in ("instance", "volume")],
            tags=args.tags, opts=child)
        template = {"id": self.launch_template.id,
                    "version": self.launch_template.latest_version.apply(str)}
        placement: dict = {"launch_template": template}
        if args.fixed_size is not None:
            self.group = self._fixed_group(name, args, template, launched)
            self.register_outputs({"asg_name": self.group.name,
                                   "launch_template_id": self.launch_template.id})
            return
        if args.spot:
            placement = {"mixed_instances_policy": {
                "instances_distribution": {
                    # the minimum stays on-demand; only the burst above it rides on spot
                    "on_demand_base_capacity": args.min_size,
                    "on_demand_percentage_above_base_capacity": 0,
                    "spot_allocation_strategy": "price-capacity-optimized"},
                "launch_template": {
                    "launch_template_specification": {
                        "launch_template_id": template["id"], "version": template["version"]},
                    "overrides": [{"instance_type": t} for t in
                                  (args.instance_type, *args.alternative_types)]}},
                "capacity_rebalance": True}
        self.group = aws.autoscaling.Group(
            f"{name}-asg", name=args.asg_name, min_size=args.min_size, max_size=args.max_size,
            vpc_zone_identifiers=list(args.subnet_ids), target_group_arns=[args.target_group_arn],
            health_check_type="ELB", health_check_grace_period=args.grace_period_seconds,
            default_instance_warmup=args.grace_period_seconds,
            wait_for_capacity_timeout="30m", termination_policies=["OldestLaunchTemplate",
                                                                   "OldestInstance"],
            enabled_metrics=["GroupInServiceInstances", "GroupDesiredCapacity",
                             "GroupPendingInstances", "GroupTerminatingInstances"],
            # No auto_rollback: the provider sets the new template version on the group
            # before it starts the refresh, so a rollback would return to the new version
            # and replace failing servers with failing servers (terraform-provider-aws
            # #34189); `promote` watches the refresh and puts the previous version back.
            instance_refresh={"strategy": "Rolling", "preferences": {
                "min_healthy_percentage": 100, "max_healthy_percentage": 200,
                "instance_warmup": str(args.grace_period_seconds), "auto_rollback": False,
                "skip_matching": True, "scale_in_protected_instances": "Refresh",
                "standby_instances": "Terminate"}},
            tags=[{"key": k, "value": v, "propagate_at_launch": False}
                  for k, v in launched.items()],
            **placement,
            # the autoscaler owns the desired capacity; an update must not reset it
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"],
                                        depends_on=list(args.boot_ready)))
        aws.autoscaling.Policy(
            f"{name}-scaling", autoscaling_group_name=self.group.name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=args.grace_period_seconds,
            target_tracking_configuration=self._tracking(args), opts=child)
        self.register_outputs({"asg_name": self.group.name,
                               "launch_template_id": self.launch_template.id})

    def _fixed_group(self, name: str, args: GpuPoolArgs, template: dict,
                     launched: dict[str, str]) -> aws.autoscaling.Group:
        """A canary's group: `fixed_size` servers behind the ELB's checks, the fleet's grace."""
        size = args.fixed_size
        return aws.autoscaling.Group(
            f"{name}-asg", name=args.asg_name, min_size=size, max_size=size,
            desired_capacity=size, vpc_zone_identifiers=list(args.subnet_ids),
            target_group_arns=[args.target_group_arn], launch_template=template,
            health_check_type="ELB", health_check_grace_period=args.grace_period_seconds,
            default_instance_warmup=args.grace_period_seconds,
            # "0": Pulumi does not wait for healthy servers, which a bad version never has
            wait_for_capacity_timeout="0",
            enabled_metrics=["GroupInServiceInstances", "GroupDesiredCapacity"],
            tags=[{"key": k, "value": v, "propagate_at_launch": False}
                  for k, v in launched.items()],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.boot_ready)))

    def _tracking(self, args: GpuPoolArgs) -> dict:
        if args.scaling_signal == "requests":
            return {"target_value": args.scaling_target, "predefined_metric_specification": {
                "predefined_metric_type": "ALBRequestCountPerTarget",
                "resource_label": args.alb_request_label}}
        return {"target_value": args.scaling_target, "customized_metric_specification": {
            "namespace": METRIC_NAMESPACE, "metric_name": IN_FLIGHT_METRIC, "statistic": "Average",
            "metric_dimensions": [{"name": "AutoScalingGroupName", "value": args.asg_name}]}}
