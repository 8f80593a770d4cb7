"""The GCP service: every layer's component, wired together from one deployment spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from llmcloud.providers import alerts
from llmcloud.providers.first_up import next_step, registry_only
from llmcloud.providers.gcp import alert_state, naming
from llmcloud.providers.gcp.gateway import Gateway, GatewayArgs
from llmcloud.providers.gcp.gpu_pool import (
    GpuPool,
    GpuPoolArgs,
    initial_delay_seconds,
)
from llmcloud.providers.gcp.identity import Identity, IdentityArgs
from llmcloud.providers.gcp.load_balancer import LoadBalancer, LoadBalancerArgs
from llmcloud.providers.gcp.model_store import ModelStore, ModelStoreArgs
from llmcloud.providers.gcp.monitoring import Monitoring, MonitoringArgs
from llmcloud.providers.gcp.network import Network, NetworkArgs
from llmcloud.providers.gcp.prices import GpuMachine, boot_disk_gb, gpu_memory_gb
from llmcloud.providers.gcp.registry import Registry, RegistryArgs
from llmcloud.providers.gcp.startup import (
    IN_FLIGHT_METRIC,
    ServerLaunch,
    render_shutdown_script,
    render_startup_script,
)
from llmcloud.providers.gcp.zones import GPU_ZONES, gpu_zones
from llmcloud.providers.scaling import replica_target
from llmcloud.stacks.spec import DeploymentSpec

DEFAULT_REGION = "us-central1"
DEFAULT_MACHINE_TYPE = "g2-standard-8"
#: the digest `plan` and `preview` show while no image has been pushed (all zeros: no image
#: can have it, so nothing can run from it by mistake)
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
SELF_SIGNED_WARNING = (
    "gateway.domain is not set: the endpoint serves HTTPS with a self-signed certificate for "
    "its address (output endpoint_certificate), which clients must be told to trust; set "
    "gateway.domain for a Google-managed certificate every client trusts")


def trust_hint(stack: str) -> str:
    """How a client trusts the self-signed endpoint (the `endpoint_trust` output)."""
    save = (f"llmcloud outputs --provider gcp --stack {stack} --json "
            "| jq -r .outputs.endpoint_certificate > endpoint.pem")
    return (f"self-signed: save it with `{save}`, then `curl --cacert endpoint.pem`, "
            "OpenAI(..., http_client=httpx.Client(verify=ssl.create_default_context("
            "cafile='endpoint.pem'))), or SSL_CERT_FILE=endpoint.pem; a renewal (an `up` in "
            "its last 30 days) changes it")


@dataclass(frozen=True)
class GcpOptions:
    """GCP-only knobs (not part of the cloud-neutral spec)."""

    #: a Cloud KMS key encrypting the buckets (CMEK); Google-managed keys when unset
    kms_key: str | None = None
    #: Secure Boot needs NVIDIA kernel modules signed for it, which the Deep Learning VM
    #: images' drivers are not; vTPM and integrity monitoring are always on
    secure_boot: bool = False
    #: let `destroy` delete buckets that still hold models or logs
    force_destroy: bool = False


def accelerator(machine: GpuMachine, gpus: int | None) -> tuple[str, int] | None:
    """The guest accelerators a template declares: N1 machines take `gpus` (at least one);
    accelerator-optimized machines (G2, A2, A3) come with theirs."""
    if not machine.attached:
        return None
    return machine.accelerator, machine.gpus_per_instance(gpus)


class GcpService(pulumi.ComponentResource):
    """One LLM service on GCP: model store, registry, identity, network, gateway, GPU pool,
    load balancer and monitoring."""

    outputs: dict[str, Any]

    def __init__(self, spec: DeploymentSpec, stack: str, machine: GpuMachine,
                 options: GcpOptions | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        name = naming.base_name(stack)
        super().__init__("llmcloud:gcp:Service", name, None, opts)
        options = options or GcpOptions()
        child = pulumi.ResourceOptions(parent=self)
        region = spec.region or DEFAULT_REGION
        machine_type = spec.compute.instance_type or DEFAULT_MACHINE_TYPE
        model = spec.model.name or "model"
        labels = naming.labels(stack, model, spec.tags)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        project = gcp.organizations.get_client_config_output(opts=invoke).project
        up_zones = gcp.compute.get_zones_output(region=region, status="UP", opts=invoke).names
        zones = up_zones.apply(lambda up: gpu_zones(region, machine.accelerator, up))

        store = ModelStore(f"{name}-store", ModelStoreArgs(
            name=name, location=region, kms_key=options.kms_key,
            force_destroy=options.force_destroy), opts=child)
        registry = Registry(f"{name}-registry", RegistryArgs(
            repository_id=naming.repository_id(stack, model), location=region,
            in_service_image=spec.image), opts=child)
        if registry_only(spec):
            self.outputs = {
                "bucket": store.bucket.name,
                "model_store_uri": store.bucket.name.apply(lambda b: f"gs://{b}/models"),
                "registry_url": registry.repository_url, "model_version": spec.model.version,
                "model_history": list(spec.model.history),
                "next_step": next_step("gcp", stack, spec.model.version)}
            self.register_outputs(self.outputs)
            return
        identity = Identity(f"{name}-identity", IdentityArgs(
            account_id=naming.service_account_id(stack), project=project,
            bucket=store.bucket.name, repository=registry.repository.repository_id,
            repository_location=region), opts=child)
        network = Network(f"{name}-network", NetworkArgs(
            name=name, region=region, vpc_cidr=spec.network.vpc_cidr,
            server_port=spec.server.port, server_service_account=identity.email), opts=child)
        gateway = Gateway(f"{name}-gateway", GatewayArgs(
            name=naming.resource_name(stack, "edge"), project=project,
            secret_id=naming.secret_id(stack), server_member=identity.member,
            rate_limit=spec.gateway.rate_limit, burst=spec.gateway.burst,
            allowed_cidrs=spec.network.allowed_cidrs), opts=child)

        if spec.image:
            image: pulumi.Output[str] = pulumi.Output.from_input(spec.image)
        else:
            image = registry.repository_url.apply(lambda url: f"{url}/server@"
                                                  f"{PLACEHOLDER_DIGEST}")
        model_uri = store.bucket.name.apply(
            lambda b: naming.model_uri(b, model, spec.model.version))
        startup = pulumi.Output.all(project, image, model_uri).apply(
            lambda v: render_startup_script(ServerLaunch(
                project=v[0], image=v[1], model_uri=v[2], model_version=spec.model.version,
                keys_secret=naming.secret_id(stack), port=spec.server.port,
                drain_timeout_seconds=spec.server.drain_timeout_seconds,
                max_batch_size=spec.server.max_batch_size,
                max_body_kb=spec.gateway.max_body_kb, dtype=spec.server.dtype,
                engine_flags=tuple(spec.server.engine_flags()), task=spec.model.task,
                publish_in_flight=spec.autoscaling.signal == "in_flight")))
        delay = initial_delay_seconds(gpu_memory_gb(machine_type))
        target = replica_target(spec, machine.gpus_per_instance(spec.compute.gpus))
        pool = GpuPool(f"{name}-gpu", GpuPoolArgs(
            name=naming.resource_name(stack, "gpu"),
            name_prefix=naming.name_prefix(stack, "gpu"), project=project, region=region,
            zones=zones, max_zones=len(GPU_ZONES[machine.accelerator].get(region, ())) or 1,
            machine_type=machine_type, accelerator=accelerator(machine, spec.compute.gpus),
            subnetwork=network.subnet.id, service_account_email=identity.email,
            startup_script=startup,
            shutdown_script=render_shutdown_script(spec.server.drain_timeout_seconds),
            boot_disk_gb=boot_disk_gb(spec.compute.disk_gb, machine_type),
            min_replicas=spec.compute.min_replicas, max_replicas=spec.compute.max_replicas,
            server_port=spec.server.port, initial_delay_seconds=delay,
            drain_timeout_seconds=spec.server.drain_timeout_seconds,
            scaling_signal=spec.autoscaling.signal, scaling_target=target,
            cooldown_seconds=spec.autoscaling.cooldown_seconds, spot=spec.compute.spot,
            secure_boot=options.secure_boot, labels=labels),
            # the servers start only once their grants and the keys secret exist
            opts=pulumi.ResourceOptions(parent=self, depends_on=[identity, gateway, network]))
        balancer = LoadBalancer(f"{name}-lb", LoadBalancerArgs(
            name=naming.resource_name(stack, "lb"), instance_group=pool.group.instance_group,
            security_policy=gateway.policy.self_link, server_port=spec.server.port,
            drain_timeout_seconds=spec.server.drain_timeout_seconds,
            timeout_seconds=spec.gateway.timeout_seconds,
            scaling_signal=spec.autoscaling.signal, scaling_target=target,
            domain=spec.gateway.domain,
            certificate_prefix=naming.name_prefix(stack, "lb-cert"), stack=stack), opts=child)
        monitoring = Monitoring(f"{name}-monitoring", MonitoringArgs(
            name=name, project=project, backend_service=naming.resource_name(stack, "lb"),
            instance_group=naming.resource_name(stack, "gpu"), host=balancer.host,
            validate_ssl=bool(spec.gateway.domain), timeout_seconds=spec.gateway.timeout_seconds,
            in_flight_metric=IN_FLIGHT_METRIC, labels=labels,
            reachable_from_anywhere="0.0.0.0/0" in spec.network.allowed_cidrs,
            alert_emails=spec.alerts.emails), opts=child)
        if not spec.gateway.domain:
            pulumi.log.warn(SELF_SIGNED_WARNING, resource=self)

        self.outputs = {
            "endpoint_url": balancer.endpoint_url,
            "bucket": store.bucket.name,
            "model_store_uri": store.bucket.name.apply(lambda b: f"gs://{b}/models"),
            "registry_url": registry.repository_url,
            "api_keys_secret": gateway.keys_secret.secret_id,
            "instance_group": pool.group.name,
            "dashboard_url": pulumi.Output.all(project, monitoring.dashboard.id).apply(
                lambda v: "https://console.cloud.google.com/monitoring/dashboards/builder/"
                          f"{v[1].rsplit('/', 1)[-1]}?project={v[0]}"),
            "model_version": spec.model.version,
            "model_history": list(spec.model.history),
            "image": image,
            alerts.OUTPUT: alerts.recipients_note(spec.alerts.emails),
            # promote's bake watches these (`alert_state.py`)
            alert_state.OUTPUT: monitoring.bad_version_policies,
        }
        if balancer.certificate_pem is not None:
            self.outputs["endpoint_certificate"] = balancer.certificate_pem
            self.outputs["endpoint_trust"] = trust_hint(stack)
        if not spec.image:
            # `plan` and `preview`: the whole service, with a placeholder digest (a real
            # update declares only the registry and the store: see first_up)
            self.outputs["image_placeholder"] = True
        self.register_outputs(self.outputs)


def build_service(spec: DeploymentSpec, stack: str, machine: GpuMachine,
                  options: GcpOptions | None = None) -> dict[str, Any]:
    """Declare the service in the running Pulumi program; return the stack's outputs."""
    region = spec.region or DEFAULT_REGION
    model = spec.model.name or "model"
    # project: GOOGLE_CLOUD_PROJECT (or GOOGLE_PROJECT, CLOUDSDK_CORE_PROJECT), as the
    # provider reads it; labels reach every labelled resource through the provider
    provider = gcp.Provider(f"{naming.base_name(stack)}-gcp", region=region,
                            default_labels=naming.labels(stack, model, spec.tags))
    service = GcpService(spec, stack, machine, options,
                         opts=pulumi.ResourceOptions(providers=[provider]))
    return service.outputs
