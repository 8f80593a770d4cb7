"""SagemakerEndpoint: the model served by a SageMaker real-time endpoint, autoscaled.

SageMaker models and endpoint configurations are immutable: a new model version or image is
a new execution role, model and configuration (their names carry a hash of what they are
made of), and the endpoint moves to the new configuration by a blue/green deployment that
rolls back by itself when a rollback alarm fires. The endpoint's name stays the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llmcloud.providers.aws import naming
from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.endpoint_config import (
    VARIANT,
    deployment_config,
    model_data_source,
    scaling_resource_id,
    target_tracking,
)
from llmcloud.providers.aws.policies import assume_role_policy, sagemaker_execution_policy
from llmcloud.providers.aws.prices import has_instance_storage


@dataclass
class SagemakerEndpointArgs:
    """What to serve (image, model version's prefix, environment), on what, how many."""

    stack: str
    endpoint_name: str
    model_name: str
    version: str
    image: pulumi.Input[str]
    model_uri: pulumi.Input[str]
    environment: dict[str, str]
    bucket_arn: pulumi.Input[str]
    store_key_arn: pulumi.Input[str]
    repository_arns: Sequence[pulumi.Input[str]]
    log_group: aws.cloudwatch.LogGroup
    instance_type: str
    min_replicas: int
    max_replicas: int
    scaling_signal: str  # "in_flight" or "requests"
    scaling_target: float
    cooldown_seconds: int
    rollback_alarm_names: Sequence[pulumi.Input[str]]
    drain_timeout_seconds: int = 60
    #: True: the container can make no network calls (SageMaker mounts the model for it)
    network_isolation: bool = True
    tags: dict[str, str] = field(default_factory=dict)


class SagemakerEndpoint(pulumi.ComponentResource):
    """Execution role, model, endpoint configuration, endpoint, scaling target and policy."""

    model: aws.sagemaker.Model
    configuration: aws.sagemaker.EndpointConfiguration
    endpoint: aws.sagemaker.Endpoint
    endpoint_name: pulumi.Output[str]

    def __init__(self, name: str, args: SagemakerEndpointArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:SagemakerEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account, region = account_and_region(self)

        digest = pulumi.Output.all(args.image, args.model_uri).apply(
            lambda v: naming.fingerprint(v[0], v[1], args.version, args.network_isolation,
                                         sorted(args.environment.items())))
        role = aws.iam.Role(
            f"{name}-execution",
            name=digest.apply(lambda d: naming.versioned_name(args.stack, "sm-exec", d, "role")),
            assume_role_policy=json.dumps(assume_role_policy("sagemaker.amazonaws.com",
                                                             account)),
            description=f"SageMaker: {args.model_name} {args.version}", tags=args.tags,
            opts=child)
        document = pulumi.Output.all(args.bucket_arn, args.store_key_arn,
                                     args.log_group.arn, *args.repository_arns).apply(
            lambda v: json.dumps(sagemaker_execution_policy(
                bucket_arn=v[0], model_name=args.model_name, version=args.version,
                store_key_arn=v[1], log_group_arn=v[2], repository_arns=list(v[3:]),
                region=region)))
        policy = aws.iam.RolePolicy(
            f"{name}-execution", role=role.id, policy=document,
            name_prefix=naming.name_prefix_for(f"{name}-execution", "role_policy"), opts=child)
        self.model = aws.sagemaker.Model(
            f"{name}-model",
            name=digest.apply(lambda d: naming.versioned_name(args.stack, "model", d)),
            execution_role_arn=role.arn, enable_network_isolation=args.network_isolation,
            primary_container={
                "image": args.image, "mode": "SingleModel", "environment": args.environment,
                "model_data_source": model_data_source(args.model_uri)},
            tags=args.tags,
            # SageMaker checks the role's access to the image and data when it creates it
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))

        # SageMaker refuses a KMS key for types whose instance storage is hardware-encrypted
        kms_key = None if has_instance_storage(args.instance_type) else args.store_key_arn
        config_digest = self.model.name.apply(lambda model: naming.fingerprint(
            model, args.instance_type, args.min_replicas, kms_key is not None))
        self.configuration = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            name=config_digest.apply(lambda d: naming.versioned_name(args.stack, "config", d)),
            kms_key_arn=kms_key,
            production_variants=[{
                "variant_name": VARIANT, "model_name": self.model.name,
                "instance_type": args.instance_type,
                "initial_instance_count": args.min_replicas, "initial_variant_weight": 1.0,
                # the model is loaded before the health check counts: allow for big ones
                "container_startup_health_check_timeout_in_seconds": 1800,
                "model_data_download_timeout_in_seconds": 1800}],
            tags=args.tags, opts=child)
        self.endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint", name=args.endpoint_name,
            endpoint_config_name=self.configuration.name,
            deployment_config=pulumi.Output.all(*args.rollback_alarm_names).apply(
                lambda names: deployment_config(list(names), args.drain_timeout_seconds)),
            tags=args.tags,
            # the container's logs must land in the encrypted group, not one SageMaker makes
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.log_group]))
        self.endpoint_name = self.endpoint.name

        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="sagemaker",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=self.endpoint.name.apply(scaling_resource_id),
            min_capacity=args.min_replicas, max_capacity=args.max_replicas, opts=child)
        aws.appautoscaling.Policy(
            f"{name}-scaling", name=f"{args.endpoint_name}-{args.scaling_signal}",
            policy_type="TargetTrackingScaling", resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            service_namespace=target.service_namespace,
            target_tracking_scaling_policy_configuration=target_tracking(
                args.scaling_signal, args.scaling_target, args.cooldown_seconds),
            opts=child)
        self.register_outputs({"endpoint_name": self.endpoint_name,
                               "model_name": self.model.name})
