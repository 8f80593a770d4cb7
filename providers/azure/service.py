"""The Azure service: every layer's component, wired together from one deployment spec."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import authorization, resources

from llmcloud.providers import alerts
from llmcloud.providers.azure import alert_state, apim, naming
from llmcloud.providers.azure.cloud_init import (
    PROBE_DOWN_SECONDS,
    ServerLaunch,
    render_custom_data,
)
from llmcloud.providers.azure.clouds import stack_cloud
from llmcloud.providers.azure.gateway import Gateway, GatewayArgs
from llmcloud.providers.azure.gpu_pool import GpuPool, GpuPoolArgs
from llmcloud.providers.azure.identity import Identity, IdentityArgs
from llmcloud.providers.azure.layout import first_usable_ip, load_balancer_id, subnet_layout
from llmcloud.providers.azure.load_balancer import LoadBalancer, LoadBalancerArgs
from llmcloud.providers.azure.metric_ready import WAITING, autoscale_may_read_in_flight
from llmcloud.providers.azure.model_store import ModelStore, ModelStoreArgs
from llmcloud.providers.azure.monitoring import Monitoring, MonitoringArgs
from llmcloud.providers.azure.network import Network, NetworkArgs, gateway_sources
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.prices import gpu_memory_gb, gpus_of, os_disk_gb
from llmcloud.providers.azure.provider import DEFAULT_REGION, DEFAULT_VM_SIZE
from llmcloud.providers.azure.registry import Registry, RegistryArgs
from llmcloud.providers.azure.scaling import repair_grace_period, terminate_notice
from llmcloud.providers.first_up import next_step, registry_only
from llmcloud.providers.scaling import replica_target
from llmcloud.stacks.spec import DeploymentSpec

#: the digest `plan` and `preview` show while no image has been pushed (all zeros: no image
#: can have it, so nothing can run from it by mistake)
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
def stack_tags(spec: DeploymentSpec, stack: str) -> dict[str, str]:
    """Tags on every resource (azure-native has no provider-wide default tags)."""
    return {"llmcloud-stack": stack, "llmcloud-model": spec.model.name or "model", **spec.tags}


class AzureService(pulumi.ComponentResource):
    """One LLM service on Azure: network, model store, registry, identity, load balancer,
    GPU pool, gateway and monitoring, in one resource group."""

    outputs: dict[str, Any]

    def __init__(self, spec: DeploymentSpec, stack: str, options: AzureOptions,
                 opts: pulumi.ResourceOptions | None = None):
        name = naming.base_name(stack)
        super().__init__("llmcloud:azure:Service", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        subscription = authorization.get_client_config(
            opts=pulumi.InvokeOptions(parent=self)).subscription_id
        location = spec.region or DEFAULT_REGION
        cloud = stack_cloud(options.environment)
        vm_size = spec.compute.instance_type or DEFAULT_VM_SIZE
        model = spec.model.name or "model"
        tags = stack_tags(spec, stack)
        # the spec's addresses, and those of LLMCLOUD_AZURE_ALERT_EMAILS (read before the spec
        # had them)
        emails = alerts.merged(spec.alerts.emails, options.alert_emails)
        sku = apim.choose_sku(spec.tags, options.apim_sku)
        gateway_net = apim.gateway_network(sku, spec.gateway.public)
        layout = subnet_layout(spec.network.vpc_cidr)
        group_name = naming.resource_group_name(stack)
        group = resources.ResourceGroup(f"{name}-rg", resource_group_name=group_name,
                                        location=location, tags=tags, opts=child)
        # every child names the group by its output, so each waits for the group to exist
        rg = group.name
        in_group = {"resource_group_name": rg, "location": location, "tags": tags}

        network = Network(f"{name}-network", NetworkArgs(
            **in_group, layout=layout, vnet_cidr=spec.network.vpc_cidr,
            server_port=spec.server.port,
            gateway_sources=gateway_sources(spec.gateway.public, spec.network.allowed_cidrs),
            gateway_delegation=gateway_net.delegation), opts=child)
        store = ModelStore(f"{name}-store", ModelStoreArgs(
            **in_group, account_name=naming.global_name(stack, subscription, "storage_account"),
            subnet_id=network.endpoints_subnet_id, vnet_id=network.vnet.id,
            private_zone=cloud.private_zones["blob"]), opts=child)
        registry = Registry(f"{name}-registry", RegistryArgs(
            **in_group, registry_name=naming.global_name(stack, subscription, "registry"),
            subnet_id=network.endpoints_subnet_id, vnet_id=network.vnet.id,
            private_zone=cloud.private_zones["registry"]), opts=child)
        if registry_only(spec):
            self.outputs = {
                "resource_group": rg, "storage_account": store.account.name,
                "model_store_uri": store.account.name.apply(
                    lambda account: naming.store_uri(account, cloud=cloud)),
                "registry_url": registry.login_server, "model_version": spec.model.version,
                "model_history": list(spec.model.history),
                "next_step": next_step("azure", stack, spec.model.version)}
            self.register_outputs(self.outputs)
            return
        identity = Identity(f"{name}-identity", IdentityArgs(
            **in_group, subscription_id=subscription, stack=stack,
            container_id=store.container.id, registry_id=registry.registry.id), opts=child)
        # the balancer's and the scale set's ids are built from these names before Azure
        # returns them: one name each, used everywhere
        lb_name = naming.fitted(f"{name}-lb", "load_balancer")
        vmss_name = naming.fitted(f"{name}-gpu", "vmss")
        balancer = LoadBalancer(f"{name}-lb", LoadBalancerArgs(
            **in_group, lb_name=lb_name,
            lb_id=load_balancer_id(subscription, group_name, lb_name),
            subnet_id=network.lb_subnet_id,
            private_ip=first_usable_ip(layout.load_balancer), server_port=spec.server.port,
            timeout_seconds=spec.gateway.timeout_seconds), opts=child)
        gateway = Gateway(f"{name}-gateway", GatewayArgs(
            **in_group,
            service_name=naming.global_name(stack, subscription, "apim"), sku=sku,
            virtual_network_type=gateway_net.virtual_network_type,
            subnet_id=network.gateway_subnet_id,
            backend_url=f"http://{balancer.private_ip}:{spec.server.port}",
            publisher_email=options.publisher_email, rate_limit=spec.gateway.rate_limit,
            burst=spec.gateway.burst, quota_per_day=spec.gateway.quota,
            allowed_cidrs=spec.network.allowed_cidrs,
            timeout_seconds=spec.gateway.timeout_seconds,
            max_body_kb=spec.gateway.max_body_kb), opts=child)

        if spec.image:
            image: pulumi.Output[str] = pulumi.Output.from_input(spec.image)
        else:
            image = registry.login_server.apply(
                lambda host: f"{host}/{naming.slug(model)}-server@{PLACEHOLDER_DIGEST}")
        model_uri = store.account.name.apply(
            lambda account: naming.model_uri(account, model, spec.model.version, cloud=cloud))
        custom_data = pulumi.Output.all(image, model_uri, identity.client_id).apply(
            lambda v: render_custom_data(ServerLaunch(
                image=v[0], model_uri=v[1], model_version=spec.model.version,
                identity_client_id=v[2], region=location, cloud=cloud, port=spec.server.port,
                drain_timeout_seconds=spec.server.drain_timeout_seconds,
                max_batch_size=spec.server.max_batch_size, dtype=spec.server.dtype,
                engine_flags=tuple(spec.server.engine_flags()), task=spec.model.task,
                max_body_kb=spec.gateway.max_body_kb,
                publish_in_flight=spec.autoscaling.signal == "in_flight")))
        # Azure refuses a rule on a custom metric no server has posted yet (`metric_ready`)
        autoscale_ready = (spec.autoscaling.signal != "in_flight" or autoscale_may_read_in_flight(
            subscription, group_name, vmss_name))
        pool = GpuPool(f"{name}-gpu", GpuPoolArgs(
            **in_group,
            subscription_id=subscription, stack=stack, vmss_name=vmss_name,
            computer_name_prefix=naming.computer_name_prefix(stack), vm_size=vm_size,
            min_size=spec.compute.min_replicas, max_size=spec.compute.max_replicas,
            subnet_id=network.servers_subnet_id, backend_pool_id=balancer.backend_pool_id,
            probe_id=balancer.probe_id, identity_id=identity.identity.id,
            identity_principal_id=identity.principal_id, custom_data=custom_data,
            ssh_public_key=options.ssh_public_key,
            os_disk_gb=os_disk_gb(spec.compute.disk_gb, vm_size),
            repair_grace_period=repair_grace_period(gpu_memory_gb(vm_size)),
            terminate_notice=terminate_notice(spec.server.drain_timeout_seconds,
                                              PROBE_DOWN_SECONDS),
            scaling_signal=spec.autoscaling.signal, scaling_target=replica_target(
                spec, gpus_of(vm_size, spec.compute.gpus)),
            cooldown_seconds=spec.autoscaling.cooldown_seconds, gateway_id=gateway.service.id,
            spot=spec.compute.spot, autoscale_ready=autoscale_ready,
            notify_emails=emails,
            wait_for=[balancer, identity]), opts=child)
        monitoring = Monitoring(f"{name}-monitoring", MonitoringArgs(
            **in_group, name=name,
            lb_id=balancer.lb.id, vmss_id=pool.vmss.id, apim_id=gateway.service.id,
            apim_name=gateway.service.name, storage_account_id=store.account.id,
            registry_id=registry.registry.id, timeout_seconds=spec.gateway.timeout_seconds,
            subscription_id=subscription, apim_principal_id=gateway.principal_id,
            alert_emails=emails, apim_sku=sku), opts=child)

        self.outputs = {
            "endpoint_url": gateway.endpoint_url,
            "api_subscription_id": gateway.subscription_id,
            "resource_group": rg,
            "storage_account": store.account.name,
            "model_store_uri": store.account.name.apply(
                lambda account: naming.store_uri(account, cloud=cloud)),
            "model_uri": model_uri,
            "registry_url": registry.login_server,
            "scale_set": pool.vmss.name,
            # `llmcloud keys` makes subscriptions here (`api_keys.py`)
            "apim_id": gateway.service.id,
            # promote watches its rolling upgrade here (`upgrade_wait.py`)
            "scale_set_id": pool.vmss.id,
            "apim_sku": sku,
            "model_version": spec.model.version,
            "model_history": list(spec.model.history),
            "image": image,
            alerts.OUTPUT: alerts.recipients_note(emails),
            # promote's bake watches these (`alert_state.py`)
            alert_state.OUTPUT: monitoring.bad_version_alerts,
        }
        if not autoscale_ready:
            self.outputs["autoscaling"] = WAITING
        if not spec.image:
            # `plan` and `preview`: the whole service, with a placeholder digest (a real
            # update declares only the registry and the store: see first_up)
            self.outputs["image_placeholder"] = True
        self.register_outputs(self.outputs)


def build_service(spec: DeploymentSpec, stack: str,
                  options: AzureOptions | None = None) -> dict[str, Any]:
    """Declare the service in the running Pulumi program; return the stack's outputs."""
    return AzureService(spec, stack, options or AzureOptions()).outputs
