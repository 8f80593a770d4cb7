"""The AWS service: every layer's component, wired together from one deployment spec."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pulumi_aws as aws

from llmcloud.providers import alerts
from llmcloud.providers.aws import alarm_state, execution_logs, naming
from llmcloud.providers.aws.account import account_and_region
from llmcloud.providers.aws.endpoint_config import (
    container_environment,
    gpus_of,
    invoke_timeout_ms,
    repository_arn_of,
    sagemaker_instance_type,
)
from llmcloud.providers.aws.endpoint_config import endpoint_arn as sagemaker_endpoint_arn
from llmcloud.providers.aws.endpoint_monitoring import EndpointMonitoring, EndpointMonitoringArgs
from llmcloud.providers.aws.gateway import AlbBackend, Gateway, GatewayArgs, SagemakerBackend
from llmcloud.providers.aws.gpu_pool import GpuPool, GpuPoolArgs, grace_period_seconds
from llmcloud.providers.aws.identity import Identity, IdentityArgs
from llmcloud.providers.aws.load_balancer import (
    LISTENER_PORT,
    LoadBalancer,
    LoadBalancerArgs,
    server_keep_alive_seconds,
)
from llmcloud.providers.aws.model_store import ModelStore, ModelStoreArgs
from llmcloud.providers.aws.monitoring import CONFIRM_NOTE, Monitoring, MonitoringArgs
from llmcloud.providers.aws.network import Network, NetworkArgs
from llmcloud.providers.aws.prices import GPU_INSTANCES, gpu_memory_gb, root_volume_gb
from llmcloud.providers.aws.provider import DEFAULT_INSTANCE_TYPE
from llmcloud.providers.aws.registry import Registry, RegistryArgs
from llmcloud.providers.aws.sagemaker_endpoint import SagemakerEndpoint, SagemakerEndpointArgs
from llmcloud.providers.aws.userdata import ServerLaunch, render_user_data
from llmcloud.providers.first_up import next_step, registry_only
from llmcloud.providers.scaling import replica_target
from llmcloud.stacks.spec import DeploymentSpec

#: the digest `plan` and `preview` show while no image has been pushed (all zeros: no image
#: can have it, so nothing can run from it by mistake)
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class AwsOptions:
    """AWS-only knobs (not part of the cloud-neutral spec)."""

    waf: bool = False
    private_endpoints: bool = False
    zones: int = 3


def stack_tags(spec: DeploymentSpec, stack: str) -> dict[str, str]:
    """Tags on every resource (through the provider's default tags)."""
    return {"llmcloud:stack": stack, "llmcloud:model": spec.model.name or "model",
            **spec.tags}


def alternative_types(instance_type: str) -> list[str]:
    """Instance types with the same GPUs and GPU memory, for spot capacity to fall back on."""
    spec = GPU_INSTANCES.get(instance_type)
    if spec is None:
        return []
    return sorted(t for t, s in GPU_INSTANCES.items()
                  if t != instance_type and s[:2] == spec[:2] and t.split(".")[0] in
                  ("g5", "g6", "g6e"))[:3]


class AwsService(pulumi.ComponentResource):
    """One LLM service on AWS: model store, registry, monitoring and gateway, in front of
    either a GPU instance group (network, load balancer, identity, GPU pool) or, with
    `compute.kind: sagemaker`, a SageMaker endpoint."""

    outputs: dict[str, Any]

    def __init__(self, spec: DeploymentSpec, stack: str, options: AwsOptions | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmcloud:aws:Service", naming.base_name(stack), None, opts)
        options = options or AwsOptions()
        name = naming.base_name(stack)
        child = pulumi.ResourceOptions(parent=self)
        model = spec.model.name or "model"
        _, region = account_and_region(self)

        store = ModelStore(f"{name}-store", ModelStoreArgs(), opts=child)
        registry = Registry(f"{name}-registry", RegistryArgs(
            repository_name=naming.repository_name(stack, model), in_service_image=spec.image),
            opts=child)
        if spec.image:
            image: pulumi.Output[str] = pulumi.Output.from_input(spec.image)
        else:
            image = registry.repository_url.apply(lambda url: f"{url}@{PLACEHOLDER_DIGEST}")
        model_uri = store.bucket.bucket.apply(
            lambda b: f"s3://{b}/{naming.model_key_prefix(model, spec.model.version)}")
        first_up = registry_only(spec)
        if first_up:
            served: dict[str, Any] = {"next_step": next_step("aws", stack, spec.model.version)}
        else:
            serve = self._sagemaker if spec.compute.kind == "sagemaker" else self._instances
            served = serve(spec, stack, options, store, registry, image, model_uri, region)

        self.outputs = {
            **served,
            "bucket": store.bucket.bucket,
            "model_store_uri": store.bucket.bucket.apply(lambda b: f"s3://{b}/models"),
            "registry_url": registry.repository_url,
            "model_version": spec.model.version,
            "model_history": list(spec.model.history),
        }
        if not first_up:
            self.outputs["image"] = image
            self.outputs[alerts.OUTPUT] = alerts.recipients_note(spec.alerts.emails,
                                                                 CONFIRM_NOTE)
        if not spec.image and not first_up:
            # `plan` and `preview`: the whole service, with a placeholder digest (a real
            # update declares only the registry and the store: see first_up)
            self.outputs["image_placeholder"] = True
        self.register_outputs(self.outputs)

    def _instances(self, spec: DeploymentSpec, stack: str, options: AwsOptions,
                   store: ModelStore, registry: Registry, image: pulumi.Output[str],
                   model_uri: pulumi.Output[str], region: str) -> dict[str, Any]:
        """The GPU instance group behind an internal ALB, reached through a VPC link."""
        name = naming.base_name(stack)
        child = pulumi.ResourceOptions(parent=self)
        model = spec.model.name or "model"
        instance_type = spec.compute.instance_type or DEFAULT_INSTANCE_TYPE
        asg_name = naming.asg_name(stack)
        network = Network(f"{name}-network", NetworkArgs(
            vpc_cidr=spec.network.vpc_cidr, listener_port=LISTENER_PORT,
            server_port=spec.server.port, zones=options.zones,
            private_endpoints=options.private_endpoints,
            flow_log_bucket_arn=store.log_bucket.arn, logs_ready=[store.log_policy]),
            opts=child)
        balancer = LoadBalancer(f"{name}-lb", LoadBalancerArgs(
            name=naming.physical_name(stack, "alb", "alb"), vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            security_group_id=network.alb_security_group_id,
            log_bucket=store.log_bucket.bucket, server_port=spec.server.port,
            drain_timeout_seconds=spec.server.drain_timeout_seconds,
            generation_timeout_seconds=spec.gateway.timeout_seconds,
            logs_ready=[store.log_policy], canary_weights=canary_weights(spec)), opts=child)
        monitoring = Monitoring(f"{name}-monitoring", MonitoringArgs(
            alb_arn_suffix=balancer.alb.arn_suffix,
            target_group_arn_suffix=balancer.target_group.arn_suffix, asg_name=asg_name,
            log_group_name=naming.log_group_name(stack), dashboard_name=name,
            timeout_seconds=spec.gateway.timeout_seconds,
            alert_emails=spec.alerts.emails), opts=child)
        identity = Identity(f"{name}-identity", IdentityArgs(
            bucket_arn=store.bucket.arn, store_key_arn=store.key_arn,
            repository_arn=registry.repository.arn, log_group_arn=monitoring.log_group.arn,
            model_name=model), opts=child)

        def user_data_of(version: str, uri: pulumi.Output[str], group: str) -> Any:
            return pulumi.Output.all(image, uri).apply(lambda v: render_user_data(
                _launch(spec, stack, region, v[0], v[1], version, group)))

        user_data = user_data_of(spec.model.version, model_uri, asg_name)
        grace = grace_period_seconds(gpu_memory_gb(instance_type))
        pool = GpuPoolArgs(
            asg_name=asg_name, instance_type=instance_type, min_size=spec.compute.min_replicas,
            max_size=spec.compute.max_replicas, subnet_ids=network.private_subnet_ids,
            security_group_id=network.server_security_group_id,
            instance_profile_arn=identity.instance_profile.arn,
            target_group_arn=balancer.target_group.arn, user_data=user_data,
            root_volume_gb=root_volume_gb(spec.compute.disk_gb, instance_type),
            grace_period_seconds=grace, scaling_signal=spec.autoscaling.signal,
            scaling_target=replica_target(
                spec, GPU_INSTANCES.get(instance_type, (spec.compute.gpus,))[0]),
            alb_request_label=pulumi.Output.concat(balancer.alb.arn_suffix, "/",
                                                   balancer.target_group.arn_suffix),
            spot=spec.compute.spot, alternative_types=alternative_types(instance_type),
            boot_ready=[monitoring.log_group, identity.policy],
            instance_tags=stack_tags(spec, stack))
        GpuPool(f"{name}-gpu", pool, opts=child)
        canary = spec.model.canary
        served: dict[str, Any] = {}
        if canary is not None and balancer.canary_target_group is not None:
            group = naming.canary_asg_name(stack)
            canary_uri = store.bucket.bucket.apply(
                lambda b: f"s3://{b}/{naming.model_key_prefix(model, canary.version)}")
            GpuPool(f"{name}-canary", replace(
                pool, asg_name=group, min_size=canary.servers, max_size=canary.servers,
                target_group_arn=balancer.canary_target_group.arn,
                user_data=user_data_of(canary.version, canary_uri, group), spot=False,
                alternative_types=(), fixed_size=canary.servers), opts=child)
            # what promote waits on and judges the canary by (`canary_wait`, `canary_verdict`)
            served["model_canary"] = {
                "version": canary.version, "servers": canary.servers,
                "fleet_weight": canary.fleet_weight, "serving": canary.serving,
                "group": group, "target_group": balancer.canary_target_group.arn,
                "target_group_suffix": balancer.canary_target_group.arn_suffix,
                "load_balancer": balancer.alb.arn_suffix}
        gateway = _gateway(name, spec, options, monitoring.key_arn, child, AlbBackend(
            alb_arn=balancer.alb.arn, alb_dns_name=balancer.alb.dns_name,
            listener=balancer.listener, subnet_ids=network.private_subnet_ids,
            security_group_id=network.vpc_link_security_group_id))

        return {"endpoint_url": gateway.endpoint_url, "api_key_id": gateway.api_key_id,
                "usage_plan_id": gateway.usage_plan_id,
                "log_group": monitoring.log_group.name,
                execution_logs.OUTPUT: gateway.execution_log_group,
                "dashboard_url": monitoring.dashboard_url,
                # what `promote --bake` watches (SageMaker's guardrail watches its own)
                alarm_state.OUTPUT: monitoring.alarm_names, **served}

    def _sagemaker(self, spec: DeploymentSpec, stack: str, options: AwsOptions,
                   store: ModelStore, registry: Registry, image: pulumi.Output[str],
                   model_uri: pulumi.Output[str], region: str) -> dict[str, Any]:
        """A SageMaker real-time endpoint that API Gateway invokes: no VPC, ALB or servers
        of the stack's own (the model container runs network-isolated)."""
        name = naming.base_name(stack)
        child = pulumi.ResourceOptions(parent=self)
        model = spec.model.name or "model"
        instance_type = sagemaker_instance_type(spec.compute.instance_type,
                                                DEFAULT_INSTANCE_TYPE)
        endpoint_name = naming.endpoint_name(stack)
        account, _ = account_and_region(self)
        timeout_ms = invoke_timeout_ms(spec.gateway.timeout_seconds)
        monitoring = EndpointMonitoring(f"{name}-monitoring", EndpointMonitoringArgs(
            endpoint_name=endpoint_name, dashboard_name=name, invoke_timeout_ms=timeout_ms,
            alert_emails=spec.alerts.emails), opts=child)
        repositories: list[pulumi.Input[str]] = [registry.repository.arn]
        external = repository_arn_of(spec.image) if spec.image else None
        if external:
            repositories.append(external)  # an image from another repository (AWS's own)
        endpoint = SagemakerEndpoint(f"{name}-endpoint", SagemakerEndpointArgs(
            stack=stack, endpoint_name=endpoint_name, model_name=model,
            version=spec.model.version, image=image, model_uri=model_uri,
            environment=container_environment(
                model_name=model, version=spec.model.version, dtype=spec.server.dtype,
                max_batch_size=spec.server.max_batch_size,
                drain_timeout_seconds=spec.server.drain_timeout_seconds,
                max_body_kb=spec.gateway.max_body_kb,
                gpus=gpus_of(instance_type), task=spec.model.task,
                engine_settings=spec.server.engine_settings()),
            bucket_arn=store.bucket.arn, store_key_arn=store.key_arn,
            repository_arns=repositories, log_group=monitoring.log_group,
            instance_type=instance_type, min_replicas=spec.compute.min_replicas,
            max_replicas=spec.compute.max_replicas, scaling_signal=spec.autoscaling.signal,
            scaling_target=replica_target(spec, gpus_of(instance_type)),
            cooldown_seconds=spec.autoscaling.cooldown_seconds,
            rollback_alarm_names=monitoring.rollback_alarm_names,
            drain_timeout_seconds=spec.server.drain_timeout_seconds), opts=child)
        gateway = _gateway(name, spec, options, monitoring.key_arn, child, SagemakerBackend(
            endpoint_name=endpoint_name, region=region, model_id=model,
            endpoint_arn=sagemaker_endpoint_arn(region, account, endpoint_name),
            endpoint=endpoint.endpoint, adapter_ids=tuple(sorted(spec.server.lora_modules))))
        return {"endpoint_url": gateway.endpoint_url, "api_key_id": gateway.api_key_id,
                "usage_plan_id": gateway.usage_plan_id,
                "log_group": monitoring.log_group.name,
                execution_logs.OUTPUT: gateway.execution_log_group,
                "dashboard_url": monitoring.dashboard_url,
                "sagemaker_endpoint": endpoint.endpoint_name}


def canary_weights(spec: DeploymentSpec) -> tuple[int, int] | None:
    """The fleet's and the canary's weights in the listener's forward (the canary's 0 until
    promote says its servers are healthy); None without a canary."""
    canary = spec.model.canary
    if canary is None:
        return None
    return canary.fleet_weight, canary.servers if canary.serving else 0


def _launch(spec: DeploymentSpec, stack: str, region: str, image: str, model_uri: str,
            version: str, asg_name: str) -> ServerLaunch:
    """What a server of the group `asg_name` runs: `version` of the model at `model_uri`."""
    return ServerLaunch(region=region, image=image, model_uri=model_uri,
                        model_version=version,
                        log_group=naming.log_group_name(stack), asg_name=asg_name,
                        port=spec.server.port,
                        drain_timeout_seconds=spec.server.drain_timeout_seconds,
                        max_batch_size=spec.server.max_batch_size, dtype=spec.server.dtype,
                        engine_flags=tuple(spec.server.engine_flags()),
                        task=spec.model.task,
                        max_body_kb=spec.gateway.max_body_kb,
                        keep_alive_seconds=server_keep_alive_seconds(
                            spec.gateway.timeout_seconds),
                        publish_in_flight=spec.autoscaling.signal == "in_flight")


def _gateway(name: str, spec: DeploymentSpec, options: AwsOptions, log_key_arn: Any,
             child: pulumi.ResourceOptions, backend: Any) -> Gateway:
    """The stack's API Gateway in front of `backend`, with the spec's limits."""
    return Gateway(f"{name}-gateway", GatewayArgs(
        api_name=name, backend=backend, log_key_arn=log_key_arn,
        rate_limit=spec.gateway.rate_limit, burst=spec.gateway.burst,
        quota_per_day=spec.gateway.quota, timeout_seconds=spec.gateway.timeout_seconds,
        allowed_cidrs=spec.network.allowed_cidrs, waf=options.waf), opts=child)


def build_service(spec: DeploymentSpec, stack: str,
                  options: AwsOptions | None = None) -> dict[str, Any]:
    """Declare the service in the running Pulumi program; return the stack's outputs."""
    provider = aws.Provider(f"{naming.base_name(stack)}-aws", region=spec.region,
                            default_tags={"tags": stack_tags(spec, stack)})
    service = AwsService(spec, stack, options,
                         opts=pulumi.ResourceOptions(providers=[provider]))
    return service.outputs
