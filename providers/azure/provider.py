"""The Azure provider: a GPU VM scale set behind an internal load balancer and API Management."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import llmcloud.policies.azure  # noqa: F401 - registers the Azure checks for plan
from llmcloud.providers.azure import mocks
from llmcloud.providers.azure.apim import choose_sku, gateway_network
from llmcloud.providers.azure.cloud_init import PROBE_DOWN_SECONDS
from llmcloud.providers.azure.clouds import AzureCloud, callers_cloud, stack_cloud
from llmcloud.providers.azure.options import AzureOptions
from llmcloud.providers.azure.prices import (
    GPU_SIZES,
    LOAD_BALANCER_HOURLY,
    LOG_ALERT_5_MINUTE_MONTHLY,
    LOG_ANALYTICS_PER_GB,
    METRIC_ALERT_MONTHLY,
    NAT_GATEWAY_HOURLY,
    PRIVATE_DNS_ZONE_MONTHLY,
    PRIVATE_ENDPOINT_HOURLY,
    PUBLIC_IP_HOURLY,
    REGISTRY_PREMIUM_DAILY,
    apim_hourly,
    gpus_of,
    hourly,
    os_disk_gb,
    premium_ssd_tier,
    price_table,
)
from llmcloud.providers.azure.scaling import (
    MAX_IDLE_MINUTES,
    longest_drain,
    repair_grace_period,
)
from llmcloud.providers.base import StackContext
from llmcloud.providers.cloud import CloudProvider
from llmcloud.providers.credentials import check_azure
from llmcloud.providers.scaling import check_copies, check_gpus
from llmcloud.stacks.cost import CostLine, PriceSheet
from llmcloud.stacks.errors import ConfigError, LlmcloudError, NotSupportedError
from llmcloud.stacks.spec import DeploymentSpec

DEFAULT_REGION = "eastus"
_LOCATION_NAME = re.compile(r"[a-z][a-z0-9]{2,40}")
#: one A100 80 GB on the datacenter driver the Ubuntu HPC image carries (docs/azure.md: the size)
DEFAULT_VM_SIZE = "Standard_NC24ads_A100_v4"
#: metric alerts the stack declares (see monitoring.py)
ALERT_COUNT = 4
#: log search alerts the stack declares (requests-failing: failing_requests.py)
LOG_ALERT_COUNT = 1
#: the A10 sizes (NVads A10 v5, NCads A10 v4) run partitioned GPUs that take only NVIDIA's
#: GRID driver; the Ubuntu HPC image carries the datacenter (CUDA) driver, which they refuse
GRID_ONLY_SIZE = re.compile(r"Standard_N[CV]\d+ad[a-z]*_A10_v[45]", re.IGNORECASE)

class AzureProvider(CloudProvider):
    """Deploys the service on Azure with pulumi-azure-native."""

    name = "azure"
    extra = "azure"
    unsupported = {
        "promote_canary": "promote --canary is not built for Azure yet "
                          "(docs/proposals/canary.md)"}
    sdk_modules = ("pulumi_azure_native", "azure.identity")
    display_name = "Azure"
    registry_label = "container registry"
    mock_answers = mocks
    default_region = DEFAULT_REGION
    credentials_command = "az login"
    #: Azure-only knobs of the stack; from the LLMCLOUD_AZURE_* variables when unset
    options: AzureOptions | None = None
    #: the shortest bake that can see an alert fire. The slowest is requests-failing, a log
    #: search alert (`failing_requests.py`): it runs every 5 minutes over the last 5 minutes
    #: of the gateway's logs, which reach Log Analytics typically 20 s to 3 minutes late
    #: (Microsoft, "Log data ingestion time in Azure Monitor"), and its alert is raised about
    #: a minute after the run: 300 + 300 + 180 + 60 s, rounded up. (backend-slow averages a
    #: metric over 5 minutes, evaluated every minute, on metrics a few minutes late.)
    BAKE_MINIMUM_SECONDS = 900

    def defaults(self) -> dict[str, Any]:
        return {
            "region": DEFAULT_REGION,
            "compute": {"instance_type": DEFAULT_VM_SIZE, "gpus": 1},
        }

    def check_credentials(self, environ: Mapping[str, str]) -> None:
        check_azure(environ)

    def wait_for_rollout(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                         timeout: float) -> bool:
        """The scale set's rolling upgrade, watched to its end (`upgrade_wait.py`), for
        ``timeout`` or, when longer, the time the scale set gives a new server to boot."""
        from llmcloud.providers.azure.arm import Arm
        from llmcloud.providers.azure.prices import gpu_memory_gb
        from llmcloud.providers.azure.upgrade_wait import boot_allowance_s, wait_for_upgrade

        scale_set = outputs.get("scale_set_id")
        if not scale_set:  # a first `up` (registry and store only) has no servers to roll
            return False
        self.check_credentials(ctx.environ)
        arm = Arm(ctx.environ)
        # the grace period the stack gives the scale set's repairs (service.py)
        grace = repair_grace_period(gpu_memory_gb(ctx.spec.compute.instance_type
                                                  or DEFAULT_VM_SIZE))
        return wait_for_upgrade(lambda address: arm.request("GET", address),
                                arm.endpoint + str(scale_set), since,
                                timeout=max(timeout, boot_allowance_s(grace)),
                                post=lambda address: arm.request("POST", address))

    def status(self, ctx: StackContext) -> dict[str, Any]:
        """The stack's status, with its scale set's servers and what went wrong lately (a
        failed provisioning, a faulted rolling upgrade: `group_status.py`), and its
        bad-version alert rules with a fired alert (`alerts`)."""
        result = super().status(ctx)
        scale_set = result["outputs"].get("scale_set_id")
        if scale_set:
            result["servers"] = self._servers(ctx, str(scale_set))
            result["alerts"] = self._alerts(ctx, result["outputs"])
        return result

    def _alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """`firing_alerts`' read for `status` (`status_alerts.py`), with a short timeout."""
        from llmcloud.providers.azure import alert_state
        from llmcloud.providers.status_alerts import status_alerts

        def read(rules: Any) -> dict[str, str]:
            self.check_credentials(ctx.environ)
            arm = self.status_reader(ctx.environ)
            # (as `_servers`: the console asks for status every 10 s)
            return alert_state.fired_alerts(
                lambda address: arm.request("GET", address, timeout=8), rules)

        return status_alerts(self.name, ctx.stack, outputs.get(alert_state.OUTPUT),
                             alert_state.OUTPUT, "alert rules", read)

    def _servers(self, ctx: StackContext, scale_set: str) -> dict[str, Any]:
        from llmcloud.providers.azure.group_status import describe

        try:
            self.check_credentials(ctx.environ)
            arm = self.status_reader(ctx.environ)
            # (the console asks for status every 10 s: a read that hangs must not hold it)
            return describe(lambda address: arm.request("GET", address, timeout=8), scale_set)
        except LlmcloudError as exc:  # credentials missing or refused, a read refused
            reason = exc.message + (f" ({exc.context})" if exc.context else "")
        except Exception as exc:  # noqa: BLE001 - status shows what it can read
            reason = f"Resource Manager did not answer ({type(exc).__name__})"
        return {"unread": f"the scale set could not be read: {reason}"}

    def firing_alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, str]:
        """The stack's metric alerts that mean a bad version (a slow backend, 5xx: see
        `monitoring.BAD_VERSION_ALERTS`) fired now, from Alerts Management (`alert_state.py`):
        rule name -> what it means. ConfigError for a stack deployed before its `alert_rules`
        output; DeploymentError when Resource Manager refuses the read."""
        from llmcloud.providers.azure import alert_state

        rules = self.bake_output(ctx, outputs, alert_state.OUTPUT, "alert rules")
        self.check_credentials(ctx.environ)
        arm = self.status_reader(ctx.environ)
        # (a bake polls every 30 s: a read that hangs must not hold it)
        return alert_state.fired_alerts(
            lambda address: arm.request("GET", address, timeout=15), rules)

    def requests_served(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                        until: datetime) -> int | None:
        """The requests API Management answered (any status) between ``since`` and
        ``until``, from Azure Monitor's `Requests` metric of the stack's service (the
        `apim_id` output; `request_count.py`): a lower bound, as platform metrics arrive a
        few minutes late. None when it cannot be read (credentials, no `apim_id`,
        `Microsoft.Insights/metrics/read` refused, no answer)."""
        from llmcloud.providers.azure import request_count

        service = outputs.get(request_count.OUTPUT)
        if not service:
            return None
        try:
            self.check_credentials(ctx.environ)
            arm = self.status_reader(ctx.environ)
        except Exception:  # noqa: BLE001 - the bake words a count it could not read
            return None
        return request_count.requests_served(
            lambda address: arm.request("GET", address, timeout=15), str(service), since,
            until)

    @staticmethod
    def status_reader(environ: Mapping[str, str]) -> Any:
        """The Resource Manager session `status` reads the scale set with (`arm.Arm`;
        tests replace it)."""
        from llmcloud.providers.azure.arm import Arm

        return Arm(environ)

    def read_gpu_quota(self, ctx: StackContext) -> str | None:
        """The subscription's GPU vCPU quotas (`gpu_quota`) against the minimum servers:
        the scale set is created last, after API Management's 30 to 45 minutes, so a quota
        that cannot hold them is refused before anything changes."""
        from llmcloud.providers.azure import gpu_quota

        spec = ctx.spec
        subscription = gpu_quota.subscription_of(ctx.environ)
        if not subscription:
            return ("note: the GPU quota check was skipped: the subscription is not known "
                    "(set ARM_SUBSCRIPTION_ID, or az account set --subscription ID)")
        arm = self.quota_reader(ctx.environ)
        return gpu_quota.check(lambda address: arm.request("GET", address, timeout=15),
                               subscription,
                               spec.region or DEFAULT_REGION, ctx.stack,
                               spec.compute.instance_type or DEFAULT_VM_SIZE,
                               spec.compute.min_replicas, spec.compute.max_replicas,
                               spot=spec.compute.spot)

    @staticmethod
    def quota_reader(environ: Mapping[str, str]) -> Any:
        """The Resource Manager session the quota read uses (`arm.Arm`; tests replace it)."""
        from llmcloud.providers.azure.arm import Arm

        return Arm(environ)

    def destroy(self, ctx: StackContext) -> dict[str, Any]:
        """Pulumi's destroy, then the purge of the API Management service Azure keeps
        soft-deleted, whose name the stack's next `up` needs (`gateway_purge.py`)."""
        from llmcloud.providers.azure.gateway_purge import purge_deleted_gateway

        engine = self._engine(ctx, "destroy")
        apim_id = engine.outputs().get("apim_id")
        result = engine.destroy()
        if not apim_id:
            return result
        location = ctx.spec.region or DEFAULT_REGION
        try:
            from llmcloud.providers.azure.arm import Arm

            arm = Arm(ctx.environ)
            purged = purge_deleted_gateway(arm.request, str(apim_id), location)
        except Exception as exc:  # the stack is destroyed: a failed purge is a note
            from llmcloud.providers.azure.gateway_purge import deleted_service_address

            name, _ = deleted_service_address(str(apim_id), location)
            purged = {"note": f"the purge of the deleted API Management service '{name}' "
                              f"failed ({type(exc).__name__}: {exc}); purge it before this "
                              f"stack's next `up`: az apim deletedservice purge "
                              f"--service-name {name} --location {location}"}
        return {**result, **purged}

    def keys_create(self, ctx: StackContext, name: str, admin: bool = False) -> dict[str, Any]:
        """A subscription to the stack's API Management product (`api_keys.py`); its key
        is shown once."""
        from llmcloud.providers.azure import api_keys

        self._refuse_admin_keys(ctx, name, admin)
        arm, service = self._key_service(ctx)
        return api_keys.create(arm, service, ctx.stack, name)

    def keys_list(self, ctx: StackContext) -> list[dict[str, Any]]:
        from llmcloud.providers.azure import api_keys

        return api_keys.list_keys(*self._key_service(ctx))

    def keys_revoke(self, ctx: StackContext, key_id: str) -> dict[str, Any]:
        from llmcloud.providers.azure import api_keys

        arm, service = self._key_service(ctx)
        return api_keys.revoke(arm, service, ctx.stack, key_id)

    def _key_service(self, ctx: StackContext):
        from llmcloud.providers.azure.arm import Arm

        self.check_credentials(ctx.environ)
        service = self._required_output(ctx, self._engine(ctx, "keys").outputs(), "apim_id",
                                        "API Management service")
        return Arm(ctx.environ), service

    def _options(self) -> AzureOptions:
        return self.options or AzureOptions.from_environ(os.environ)

    def cloud(self) -> AzureCloud:
        """The Azure cloud the stack deploys to (`clouds.py`), as pulumi-azure-native picks
        it; ConfigError for one llmcloud does not know."""
        environment = self._options().environment
        try:
            return stack_cloud(environment)
        except ValueError as exc:
            raise ConfigError(str(exc), context=f"ARM_ENVIRONMENT is {environment}",
                              hint="set ARM_ENVIRONMENT to public, usgovernment or china") \
                from None

    def gateway_sku(self, spec: DeploymentSpec) -> str:
        """The API Management tier `spec` gets, checked against its network mode."""
        requested = self._options().apim_sku
        try:
            sku = choose_sku(spec.tags, requested)
            gateway_network(sku, spec.gateway.public)
        except ValueError as exc:
            raise ConfigError(str(exc), context=f"LLMCLOUD_AZURE_APIM_SKU is {requested}"
                              if requested else None,
                              hint="set LLMCLOUD_AZURE_APIM_SKU to Developer, Premium, "
                                   "PremiumV2 or StandardV2") from None
        return sku

    def declare_service(self, spec: DeploymentSpec, stack: str) -> Mapping[str, Any]:
        from llmcloud.providers.azure.service import build_service

        return build_service(spec, stack, self._options())

    def check_spec(self, spec: DeploymentSpec) -> None:
        region = spec.region or DEFAULT_REGION
        if not _LOCATION_NAME.fullmatch(region):  # a typo fails here, not at `up`
            raise ConfigError(f"region {region!r} is not an Azure location name",
                              context="Azure locations are named like eastus, westeurope or "
                                      "swedencentral (lowercase, no spaces: "
                                      "az account list-locations -o table)",
                              hint=f"set region: {DEFAULT_REGION}, or the one you meant")
        self.gateway_sku(spec)
        self._check_cloud(spec, self.cloud())
        _check_tag_names(spec.tags)
        # the spec's own ceiling (3600 s) is below this today; the check keeps a wider
        # spec from outlasting the rule, which `idle_timeout_minutes` would cap silently
        longest = MAX_IDLE_MINUTES * 60
        if spec.gateway.timeout_seconds > longest:
            raise ConfigError(
                f"gateway.timeout_seconds {spec.gateway.timeout_seconds} is over what Azure's "
                "load balancer lets a request idle",
                context=f"Azure's load-balancing rules keep an idle TCP flow "
                        f"{MAX_IDLE_MINUTES} minutes at most: a response not streamed that "
                        "takes longer would be cut there while API Management still waited",
                hint=f"set gateway.timeout_seconds to at most {longest}, or stream the "
                     "response (a stream is never idle)")
        if spec.compute.kind != "instances":
            raise ConfigError("compute.kind 'sagemaker' is offered by aws only",
                              hint="set compute.kind: instances")
        # a setting the spec allows that this stack does not build yet: refuse, never ignore
        if spec.gateway.domain:
            raise NotSupportedError(
                "gateway.domain is not offered by the azure provider yet",
                context="API Management's custom domains need a certificate in Key Vault",
                hint="unset gateway.domain; the endpoint is https://<service>.azure-api.net")
        size = spec.compute.instance_type or DEFAULT_VM_SIZE
        if GRID_ONLY_SIZE.fullmatch(size):
            raise ConfigError(
                f"compute.instance_type {size} needs NVIDIA's GRID driver",
                context="the servers run the Ubuntu HPC image, whose datacenter driver does "
                        "not drive the A10 sizes' partitioned GPUs: the server would find no "
                        "GPU",
                hint=f"set compute.instance_type to an NC size such as {DEFAULT_VM_SIZE} or "
                     "Standard_NC4as_T4_v3")
        check_gpus(spec, gpus_of(size), size, {s: v[0] for s, v in GPU_SIZES.items()},
                   "Azure")
        check_copies(spec, gpus_of(size, spec.compute.gpus), size)
        longest = longest_drain(PROBE_DOWN_SECONDS)
        if spec.server.drain_timeout_seconds > longest:
            raise ConfigError(
                f"server.drain_timeout_seconds {spec.server.drain_timeout_seconds} is longer "
                "than a VM being deleted can wait on Azure",
                context="a scale set's terminate notice lasts at most 15 minutes; the drain "
                        "was cut at its end",
                hint=f"set server.drain_timeout_seconds to at most {longest}")



    def plan_warnings(self, spec: DeploymentSpec) -> list[str]:
        """What `plan` warns of and `up` leaves to Azure: a region name that is no Azure
        location known here (`locations.py`), which Azure refuses at once."""
        from llmcloud.providers.azure.locations import unknown_location_warning

        warning = unknown_location_warning(spec.region or DEFAULT_REGION)
        return [warning] if warning else []

    @staticmethod
    def _check_cloud(spec: DeploymentSpec, cloud: AzureCloud) -> None:
        if spec.autoscaling.signal == "in_flight" and cloud.metrics_audience is None:
            raise ConfigError(
                f"autoscaling.signal in_flight is not offered in {cloud.title}",
                context="each server posts its in-flight gauge as an Azure Monitor custom "
                        "metric, and Azure's documentation gives no custom-metrics token "
                        "audience for this cloud",
                hint="set autoscaling.signal: requests, with autoscaling.target in requests "
                     "a minute per copy of the model (e.g. 120)")

    # -- plan: mocked Azure answers and prices -------------------------------------------


    def prices(self, spec: DeploymentSpec) -> PriceSheet:
        """The hourly price lines of `spec`'s service (see `prices.py` for the table)."""
        region = spec.region or DEFAULT_REGION
        table = price_table(region)
        size = spec.compute.instance_type or DEFAULT_VM_SIZE
        if size not in table.gpu_hourly:
            raise ConfigError(f"no price is known for VM size {size}",
                              context=f"priced sizes: {', '.join(sorted(table.gpu_hourly))}",
                              hint="pick a priced compute.instance_type, or add it to "
                                   "providers/azure/prices.py")
        low, high = spec.compute.min_replicas, spec.compute.max_replicas
        tier, tier_gb, disk_monthly = premium_ssd_tier(os_disk_gb(spec.compute.disk_gb, size))
        sku = self.gateway_sku(spec)
        lines = [
            CostLine(f"GPU servers ({size}, {'spot' if spec.compute.spot else 'pay-as-you-go'})",
                     "instance-hour", table.gpu_hourly[size], low, high,
                     note="spot is billed at the market price, at most this"
                     if spec.compute.spot else None),
            CostLine(f"OS disks (Premium SSD {tier}, {tier_gb} GB)", "disk-hour",
                     hourly(disk_monthly), low, high),
            CostLine(f"API Management ({sku}, 1 unit)", "unit-hour", apim_hourly(sku), 1, 1),
            CostLine("load balancer (Standard, up to 5 rules)", "hour", LOAD_BALANCER_HOURLY,
                     1, 1),
            CostLine("NAT gateway and its public IP", "hour",
                     round(NAT_GATEWAY_HOURLY + PUBLIC_IP_HOURLY, 6), 1, 1),
            CostLine("container registry (Premium)", "hour",
                     round(REGISTRY_PREMIUM_DAILY / 24, 6), 1, 1),
            CostLine("private endpoints (blob, registry)", "endpoint-hour",
                     PRIVATE_ENDPOINT_HOURLY, 2, 2),
            CostLine("private DNS zones", "zone-hour", hourly(PRIVATE_DNS_ZONE_MONTHLY), 2, 2),
            CostLine("metric alerts", "alert-hour", hourly(METRIC_ALERT_MONTHLY), ALERT_COUNT,
                     ALERT_COUNT),
            CostLine("log search alerts (every 5 minutes)", "alert-hour",
                     hourly(LOG_ALERT_5_MINUTE_MONTHLY), LOG_ALERT_COUNT, LOG_ALERT_COUNT),
            CostLine("Log Analytics ingestion", "GB", LOG_ANALYTICS_PER_GB, 0, 0, hourly=False,
                     note="billed per GB ingested; not in the hourly total"),
        ]
        notes = []
        if table.estimated:
            notes.append(f"{region} is priced as {DEFAULT_REGION}; check the region's prices")
        if spec.compute.spot:
            notes.append("the whole scale set runs on spot capacity and may be evicted")
        return PriceSheet(lines, table.price_date, table.source, notes=notes)

    def api_key_headers(self, key: str) -> dict[str, str]:
        """API Management reads subscription keys from `api-key`, not a bearer token."""
        return {"api-key": key}

    def registry_login(self, ctx: StackContext, registry: str) -> tuple[str, str]:
        """ACR's way: exchange an Entra ID token for a registry refresh token, used with the
        all-zero user name. (The registry answers only inside the virtual network.)"""
        from llmcloud.providers.azure.arm import Arm

        self.check_credentials(ctx.environ)
        host = registry.split("/", 1)[0]
        # a token for the registry's own audience: the stack's registry refuses ARM-audience
        # tokens (registry.py)
        scope = callers_cloud(ctx.environ).registry_scope
        return ACR_TOKEN_USER, exchange_acr_token(
            host, Arm(ctx.environ).token(scope, service="the container registry"))

    def prune_images(self, ctx: StackContext, image: str,
                     login: tuple[str | None, str | None]) -> dict[str, Any]:
        """Delete the pushed repository's tagged images older than 30 days, but the newest
        10, the image the stack serves (its `image` output), the stack file's, those its
        last 100 updates named, whatever their result (`pulumi stack history`: rollbacks,
        and a failed or running update's, which may be on servers already) and `image`
        itself (`image_prune.py`). ACR keeps tagged images for ever otherwise. Raises, having
        deleted nothing, when any of that cannot be read or names no digest."""
        import httpx

        from llmcloud.providers.azure import image_prune

        engine = self._engine(ctx, "outputs")  # reads only: no credentials asked
        outputs = engine.outputs()
        if outputs.get("scale_set") and not outputs.get("image"):
            raise image_prune.PruneError(
                f"stack '{ctx.stack}' does not name the image it serves in its outputs",
                context="it was deployed before llmcloud exported `image`: the prune could "
                        "delete the image its servers pull",
                hint=f"llmcloud update --provider {self.name} --stack {ctx.stack} (it adds "
                     "the output), or push with --no-prune")
        keep = image_prune.digests_of([image, ctx.spec.image, outputs.get("image"),
                                       *engine.images_tried()])
        host, repository = image.split("@", 1)[0].split("/", 1)
        user, token = login
        if user != ACR_TOKEN_USER or not token:  # a user's own login: the identity's token
            user, token = self.registry_login(ctx, host)
        with httpx.Client(timeout=30) as client:
            return image_prune.prune_repository(client, host, repository, token, keep)


#: characters Azure refuses in a tag's name, and the prefixes it keeps for its own tags
TAG_NAME_REFUSED = "<>%&\\?/"
TAG_PREFIXES_KEPT = ("microsoft", "azure", "windows")


def _check_tag_names(tags: Mapping[str, str]) -> None:
    """Refuse a tag name Azure refuses on every resource (the spec allows `/`, which AWS
    takes): the `up` failed half-way, on the first resource it tagged."""
    for name in tags:
        if any(c in TAG_NAME_REFUSED for c in name) or name.lower().startswith(
                TAG_PREFIXES_KEPT):
            raise ConfigError(
                f"tag '{name}' is not a tag name Azure takes",
                context="Azure tag names may not hold < > % & \\ ? / nor begin with "
                        "microsoft, azure or windows",
                hint="rename the tag in llmcloud:tags (e.g. team-app for team/app)")


#: the user name ACR expects with a refresh token from its token exchange
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"


def exchange_acr_token(host: str, aad_token: str, *, post=None) -> str:
    """ACR's `/oauth2/exchange`: an Entra ID access token in, a registry refresh token out."""
    import httpx

    from llmcloud.stacks.errors import CredentialsError

    post = post or httpx.post
    response = post(f"https://{host}/oauth2/exchange", timeout=30, data={
        "grant_type": "access_token", "service": host, "access_token": aad_token})
    if response.status_code != 200:
        raise CredentialsError(
            f"the registry {host} refused the Azure token (HTTP {response.status_code})",
            context="the identity needs AcrPush on the registry, and this machine must reach "
            "its private endpoint",
            hint="az acr login --name " + host.split(".", 1)[0],
        )
    return response.json()["refresh_token"]
