"""The GCP provider: a regional managed instance group behind a global Application LB."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import llmcloud.policies.gcp  # noqa: F401 - registers the GCP checks that plan runs
from llmcloud.providers.base import StackContext
from llmcloud.providers.cloud import CloudProvider
from llmcloud.providers.credentials import check_gcp
from llmcloud.providers.gcp import mocks
from llmcloud.providers.gcp.prices import (
    ARMOR_PER_MILLION,
    ARMOR_POLICY_MONTH,
    ARMOR_RULE_MONTH,
    FORWARDING_RULE_HOURLY,
    GPU_MACHINES,
    LB_DATA_PER_GB,
    NAT_DATA_PER_GB,
    NAT_VM_HOURLY,
    PD_BALANCED_GB_MONTH,
    SECRET_VERSION_MONTH,
    GpuMachine,
    boot_disk_gb,
    gpu_machine,
    monthly_to_hourly,
    nat_billed_vms,
    price_table,
)
from llmcloud.providers.gcp.zones import GPU_ZONES
from llmcloud.providers.scaling import check_copies, check_gpus
from llmcloud.stacks.cost import CostLine, PriceSheet
from llmcloud.stacks.errors import (
    ConfigError,
    CredentialsError,
    DeploymentError,
    LlmcloudError,
)
from llmcloud.stacks.spec import DeploymentSpec

DEFAULT_REGION = "us-central1"
DEFAULT_MACHINE_TYPE = "g2-standard-8"
#: environment variables the Google provider takes the project from, in its order
PROJECT_VARIABLES = ("GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
                     "CLOUDSDK_CORE_PROJECT")

class GcpProvider(CloudProvider):
    """Deploys the service on Google Cloud with pulumi-gcp."""

    name = "gcp"
    extra = "gcp"
    unsupported = {
        "promote_canary": "promote --canary is not built for GCP yet "
                          "(docs/proposals/canary.md)"}
    # plan needs pulumi-gcp and pulumi-tls (the self-signed certificate without a domain);
    # model upload, keys and promote's watch load the Google clients they use when they run
    sdk_modules = ("pulumi_gcp", "pulumi_tls")
    display_name = "GCP"
    registry_label = "Artifact Registry"
    mock_answers = mocks
    default_region = DEFAULT_REGION
    credentials_command = "gcloud auth application-default login"
    #: GCP-only knobs of the stack (see `providers/gcp/service.py`)
    options: Any = None
    #: the shortest bake that can see an alert open: the 5xx, latency and uptime policies
    #: hold their condition 300 s, evaluated every 60 s, on load balancer metrics Google
    #: makes visible up to 210 s after each minute (`monitoring.py`)
    BAKE_MINIMUM_SECONDS = 600

    def defaults(self) -> dict[str, Any]:
        return {
            "region": DEFAULT_REGION,
            "compute": {"instance_type": DEFAULT_MACHINE_TYPE, "gpus": 1},
        }

    def check_credentials(self, environ: Mapping[str, str]) -> None:
        """Application default credentials, and a project for the resources to live in."""
        check_gcp(environ)
        if not any(environ.get(name) for name in PROJECT_VARIABLES):
            raise CredentialsError(
                "no Google Cloud project is set",
                context=f"the stack's resources need a project; set one of "
                        f"{', '.join(PROJECT_VARIABLES)}",
                hint="export GOOGLE_CLOUD_PROJECT=$(gcloud config get-value project)")

    def declare_service(self, spec: DeploymentSpec, stack: str) -> Mapping[str, Any]:
        from llmcloud.providers.gcp.service import GcpOptions, build_service

        return build_service(spec, stack, self._machine(spec), self.options or GcpOptions())

    def check_spec(self, spec: DeploymentSpec) -> None:
        self._machine(spec)
        _check_label_names(spec)

    def _machine(self, spec: DeploymentSpec) -> GpuMachine:
        """The spec's machine type, refusing what this stack cannot serve honestly."""
        if spec.compute.kind != "instances":
            raise ConfigError("compute.kind 'sagemaker' is not offered by the gcp provider",
                              hint="set compute.kind: instances")
        if spec.gateway.quota is not None:
            raise ConfigError(
                "gateway.quota is not offered by the gcp provider",
                context="Cloud Armor limits rates over at most an hour, not requests per day",
                hint="remove gateway.quota from the stack file (gateway.rate_limit applies)")
        if not spec.gateway.public:
            raise ConfigError(
                "gateway.public: false is not offered by the gcp provider",
                context="the stack's load balancer is a global external one",
                hint="set network.allowed_cidrs to the ranges that may call the endpoint")
        machine_type = spec.compute.instance_type or DEFAULT_MACHINE_TYPE
        machine = gpu_machine(machine_type)
        if machine is None:
            raise ConfigError(f"machine type {machine_type} is not a GPU machine llmcloud "
                              "knows", context="known types: " + ", ".join(
                                  sorted(price_table(DEFAULT_REGION).gpu_hourly)),
                              hint="set compute.instance_type: g2-standard-8 (one L4)")
        region = spec.region or DEFAULT_REGION
        if not GPU_ZONES.get(machine.accelerator, {}).get(region):
            offered = sorted(GPU_ZONES.get(machine.accelerator, {}))
            raise ConfigError(f"no zone of {region} offers {machine.accelerator} "
                              f"({machine_type})", context="regions that do: "
                              + ", ".join(offered),
                              hint=f"set region: {offered[0] if offered else DEFAULT_REGION}")
        if not machine.attached:  # N1 machines take the GPUs asked for
            check_gpus(spec, machine.gpus, machine_type,
                       {t: m.gpus for t, m in GPU_MACHINES.items() if not m.attached}, "GCP")
        check_copies(spec, machine.gpus_per_instance(spec.compute.gpus), machine_type)
        return machine

    def check_image(self, ctx: StackContext, image: str | None) -> None:
        """The image the update deploys checked to be in the stack's repository
        (`check_image_in_registry`)."""
        from llmcloud.providers.image_check import with_image

        self.check_image_in_registry(with_image(ctx, image))

    def check_image_in_registry(self, ctx: StackContext) -> None:
        """Refuse (`DeploymentError`, nothing deployed: see `providers/image_check.py`) an
        image of the stack's own Artifact Registry repository that the repository does not
        hold (`gcp/image_check.py`); the servers would fail to pull it. An image elsewhere
        is not checked; one that cannot be read is a note, never a refusal."""
        from llmcloud.providers import image_check
        from llmcloud.providers.gcp import image_check as gcp_image
        from llmcloud.providers.gcp.naming import repository_id

        image = gcp_image.registry_image(
            ctx.spec.image, ctx.spec.region or DEFAULT_REGION,
            repository_id(ctx.stack, ctx.spec.model.name or "model"))
        if image is None:
            return
        try:
            session, _ = self._google(ctx)
            note = gcp_image.check(session, image, ctx.environ.get(gcp_image.ENDPOINT_OVERRIDE))
        except image_check.NotInRegistry as missing:
            raise image_check.refusal(ctx.spec.image or "", self.registry_label,
                                      missing.answer, self.name, ctx.stack) from None
        except Exception as exc:  # noqa: BLE001 - credentials, not the image: never a refusal
            note = (f"note: the image was not checked to be in the stack's Artifact Registry "
                    f"repository ({type(exc).__name__})")
        if note:
            print(note, file=sys.stderr)

    def read_gpu_quota(self, ctx: StackContext) -> str | None:
        """The project's GPU quotas (`gpu_quota`) against the minimum servers: the stack
        does not wait for its servers (see `watch_servers_made`), so a quota that cannot
        hold them is refused before the update."""
        from llmcloud.providers.gcp import gpu_quota
        from llmcloud.providers.gcp.group_wait import ENDPOINT_OVERRIDE
        from llmcloud.providers.gcp.naming import resource_name

        spec = ctx.spec
        machine = self._machine(spec)
        low = spec.compute.min_replicas
        # with spot, the servers above the minimum draw on the PREEMPTIBLE_ quotas
        high = low if spec.compute.spot else spec.compute.max_replicas
        session, project = self._google(ctx)
        return gpu_quota.check(session, project, spec.region or DEFAULT_REGION,
                               machine.accelerator,
                               machine.gpus_per_instance(spec.compute.gpus), low, high,
                               ctx.environ.get(ENDPOINT_OVERRIDE),
                               own_group=resource_name(ctx.stack, "gpu"),
                               own_on_demand=low if spec.compute.spot else None)

    def up(self, ctx: StackContext) -> dict[str, Any]:
        return self._and_servers_made(ctx, super().up)

    def update(self, ctx: StackContext) -> dict[str, Any]:
        return self._and_servers_made(ctx, super().update)

    def _and_servers_made(self, ctx: StackContext,
                          converge: Callable[[StackContext], dict[str, Any]]) -> dict[str, Any]:
        # (a minute early: the cloud's clock and this machine's may differ a little)
        since = datetime.now(timezone.utc) - timedelta(seconds=60)
        result = converge(ctx)
        self.watch_servers_made(ctx, result["outputs"], since)
        return result

    def watch_servers_made(self, ctx: StackContext, outputs: Mapping[str, Any],
                           since: datetime) -> None:
        """After an update that left an instance group with a minimum (`outputs`, since
        ``since``): watch it make its servers (`group_creation.py`), and fail the way
        AWS's and Azure's `up` fail when it cannot make any. A group that cannot be read
        is a note, never a failure: the update itself succeeded."""
        from llmcloud.providers.gcp.group_creation import watch_creation

        group = outputs.get("instance_group")
        if not group:  # a first `up` (registry and store only) makes no servers
            return
        try:
            session, url = self._group(ctx, str(group))
            note = watch_creation(session, url, since, minimum=ctx.spec.compute.min_replicas,
                                  stack=ctx.stack, tell=_tell)
        except DeploymentError:
            raise
        except Exception as exc:  # noqa: BLE001 - credentials or the API, not the update
            note = (f"note: the creation of the servers was not watched "
                    f"({type(exc).__name__}); llmcloud status --provider gcp --stack "
                    f"{ctx.stack} shows it")
        if note:
            print(note, file=sys.stderr)

    def status(self, ctx: StackContext) -> dict[str, Any]:
        """The stack's status, with its instance group's servers and recent errors making
        them (a zone out of stock, a quota: the group retries without a word elsewhere),
        and its bad-version alert policies with an open alert (`alerts`)."""
        result = super().status(ctx)
        group = result["outputs"].get("instance_group")
        if group:
            result["servers"] = self._servers(ctx, str(group))
            result["alerts"] = self._alerts(ctx, result["outputs"])
        return result

    def _alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """`firing_alerts`' read for `status` (`status_alerts.py`), with a short timeout."""
        from llmcloud.providers.gcp import alert_state
        from llmcloud.providers.status_alerts import status_alerts

        def read(policies: Any) -> dict[str, str]:
            session, project = self._google(ctx)
            return alert_state.open_alerts(session, project, policies,
                                           ctx.environ.get(alert_state.ENDPOINT_OVERRIDE),
                                           timeout=alert_state.STATUS_TIMEOUT_S)

        return status_alerts(self.name, ctx.stack, outputs.get(alert_state.OUTPUT),
                             alert_state.OUTPUT, "alert policies", read)

    def _servers(self, ctx: StackContext, group: str) -> dict[str, Any]:
        from llmcloud.providers.gcp.group_creation import describe

        try:
            session, url = self._group(ctx, group)
            return describe(session, url, datetime.now(timezone.utc))
        except Exception as exc:  # noqa: BLE001 - status shows what it can read
            reason = exc.message if isinstance(exc, LlmcloudError) else type(exc).__name__
            return {"unread": f"the instance group could not be read: {reason}"}

    # -- plan: mocked GCP answers and prices --------------------------------------------


    def prices(self, spec: DeploymentSpec) -> PriceSheet:
        """The hourly price lines of `spec`'s service (see `prices.py` for the table): every
        billable resource the stack declares, per use (requests, GB) outside the total."""
        from llmcloud.providers.gcp import prices as p
        from llmcloud.providers.gcp.edge import security_rules

        machine = self._machine(spec)
        region = spec.region or DEFAULT_REGION
        table = price_table(region)
        machine_type = spec.compute.instance_type or DEFAULT_MACHINE_TYPE
        low, high = spec.compute.min_replicas, spec.compute.max_replicas
        disk = boot_disk_gb(spec.compute.disk_gb, machine_type)
        rules = len(security_rules(spec.network.allowed_cidrs, spec.gateway.rate_limit,
                                   spec.gateway.burst))
        rules_lines = 2 if spec.gateway.domain else 1
        gpus = machine.gpus_per_instance(spec.compute.gpus)
        server = (f"{machine_type} with {gpus} {machine.accelerator}" if machine.attached
                  else machine_type)
        lines = [
            CostLine(f"GPU servers ({server}, on-demand)", "instance-hour",
                     machine.instance_hourly(spec.compute.gpus), low, high,
                     note="Spot servers above the minimum are billed at most this"
                     if spec.compute.spot else None),
            CostLine(f"boot disks (pd-balanced, {disk} GB)", "disk-hour",
                     round(disk * PD_BALANCED_GB_MONTH / 730, 6), low, high),
            CostLine("load balancer forwarding rules", "rule-hour", FORWARDING_RULE_HOURLY,
                     rules_lines, rules_lines),
            CostLine("Cloud NAT (per server using it)", "vm-hour", NAT_VM_HOURLY,
                     nat_billed_vms(low), nat_billed_vms(high)),
            CostLine("Cloud NAT external IP (allocated by the gateway)", "address-hour",
                     p.NAT_IP_HOURLY, 1, 1),
            CostLine(f"Cloud Armor policy and {rules} rules", "policy-hour",
                     monthly_to_hourly(ARMOR_POLICY_MONTH + rules * ARMOR_RULE_MONTH), 1, 1),
            CostLine("Secret Manager (API key hashes)", "version-hour",
                     monthly_to_hourly(SECRET_VERSION_MONTH), 1, 1),
            CostLine("alerting policy conditions", "condition-hour",
                     monthly_to_hourly(p.ALERT_CONDITION_MONTH), p.ALERT_CONDITIONS,
                     p.ALERT_CONDITIONS),
            CostLine("Cloud Armor requests", "1M requests", ARMOR_PER_MILLION, 0, 0,
                     hourly=False, note="billed per request; not in the hourly total"),
            CostLine("load balancer data processed", "GB", LB_DATA_PER_GB, 0, 0,
                     hourly=False, note="billed per GB; not in the hourly total"),
            CostLine("Cloud NAT data processed", "GB", NAT_DATA_PER_GB, 0, 0,
                     hourly=False, note="billed per GB (image and model pulls go through "
                                        "Private Google Access, not NAT)"),
            CostLine("Cloud Logging storage", "GB", p.LOGGING_PER_GB, 0, 0, hourly=False,
                     note="billed per GB beyond the project's free 50 GB a month"),
        ]
        notes = []
        if table.estimated:
            notes.append(f"{region} is priced as us-central1; check the region's prices")
        return PriceSheet(lines, table.price_date, table.source, notes=notes)

    def wait_for_rollout(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                         timeout: float) -> bool:
        """The regional instance group's update, watched to its end (`group_wait.py`)."""
        from llmcloud.providers.gcp.group_wait import wait_for_group

        group = outputs.get("instance_group")
        if not group:  # a first `up` (registry and store only) has no servers to roll
            return False
        session, url = self._group(ctx, str(group))
        return wait_for_group(session, url, since, timeout=timeout)

    def firing_alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, str]:
        """The stack's alert policies that mean a bad version (5xx ratio, latency, the
        endpoint down: see `Monitoring.bad_version_policies`) with an open alert now, from
        Cloud Monitoring's Alerts API (`alert_state.py`): policy name -> what it means.
        ConfigError for a stack deployed before its `alert_policies` output;
        DeploymentError when the API refuses."""
        from llmcloud.providers.gcp import alert_state

        policies = self.bake_output(ctx, outputs, alert_state.OUTPUT, "alert policies")
        session, project = self._google(ctx)
        return alert_state.open_alerts(session, project, policies,
                                       ctx.environ.get(alert_state.ENDPOINT_OVERRIDE))

    def requests_served(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                        until: datetime) -> int | None:
        """The requests the load balancer answered (any status) between ``since`` and
        ``until``, from Cloud Monitoring's `loadbalancing.googleapis.com/https/request_count`
        for the stack's backend service (`request_count.py`): a lower bound, as Google makes
        each minute visible up to 210 s after it. None when it cannot be read (credentials,
        `monitoring.timeSeries.list` refused, no answer)."""
        from llmcloud.providers.gcp import naming, request_count
        from llmcloud.providers.gcp.alert_state import ENDPOINT_OVERRIDE

        try:
            session, project = self._google(ctx)
        except Exception:  # noqa: BLE001 - the bake words a count it could not read
            return None
        # the backend service's name (`service.py`) is the stack's, not an output
        return request_count.requests_served(
            session, project, naming.resource_name(ctx.stack, "lb"), since, until,
            ctx.environ.get(ENDPOINT_OVERRIDE))

    def _group(self, ctx: StackContext, group: str) -> tuple[Any, str]:
        """An authorized session and the Compute Engine address of the stack's instance
        group `group` (the `instance_group` output)."""
        from llmcloud.providers.gcp.group_wait import ENDPOINT_OVERRIDE, group_url

        session, project = self._google(ctx)
        return session, group_url(project, ctx.spec.region or DEFAULT_REGION, group,
                                  ctx.environ.get(ENDPOINT_OVERRIDE))

    def keys_create(self, ctx: StackContext, name: str, admin: bool = False) -> dict[str, Any]:
        """A key whose hash joins the stack's keys secret (`api_keys.py`), shown once."""
        from llmcloud.providers.gcp import api_keys

        self._refuse_admin_keys(ctx, name, admin)
        return api_keys.create(self._keys_secret(ctx), ctx.stack, name)

    def keys_list(self, ctx: StackContext) -> list[dict[str, Any]]:
        from llmcloud.providers.gcp import api_keys

        return api_keys.list_keys(self._keys_secret(ctx))

    def keys_revoke(self, ctx: StackContext, key_id: str) -> dict[str, Any]:
        from llmcloud.providers.gcp import api_keys

        return api_keys.revoke(self._keys_secret(ctx), ctx.stack, key_id)

    def _keys_secret(self, ctx: StackContext):
        from llmcloud.providers.gcp.api_keys import ENDPOINT_OVERRIDE, KeysSecret

        secret = self._required_output(ctx, self._engine(ctx, "keys").outputs(),
                                       "api_keys_secret", "API keys secret")
        session, project = self._google(ctx)
        return KeysSecret(session, project, secret, ctx.environ.get(ENDPOINT_OVERRIDE))

    def _google(self, ctx: StackContext) -> tuple[Any, str]:
        """An authorized session (application default credentials) and the project."""
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        self.check_credentials(ctx.environ)
        credentials, found = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"])
        project = next((ctx.environ[name] for name in PROJECT_VARIABLES
                        if ctx.environ.get(name)), found)
        return AuthorizedSession(credentials), project

    def registry_login(self, ctx: StackContext, registry: str) -> tuple[str, str]:
        """Artifact Registry's way: an OAuth access token as user `oauth2accesstoken`."""
        import google.auth
        import google.auth.transport.requests

        self.check_credentials(ctx.environ)
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(google.auth.transport.requests.Request())
        return "oauth2accesstoken", credentials.token


def _tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: the labels every resource of a stack carries already
OWN_LABELS = ("llmcloud-stack", "llmcloud-model")


def _check_label_names(spec: DeploymentSpec) -> None:
    """Refuse tags that become the same label key (GCP keys are lowercase, without `:`,
    `/`, ...: `Team` and `team`, `app:tier` and `app_tier`), or one of llmcloud's own: one
    of the two was dropped without a word."""
    from llmcloud.providers.gcp.naming import label_key

    seen = {key: "llmcloud's own label" for key in OWN_LABELS}
    for name, value in spec.tags.items():
        _check_label_length(name, str(value))
        key = label_key(name)
        if key in seen:
            raise ConfigError(
                f"tag '{name}' would be the GCP label '{key}', as {seen[key]} is",
                context="GCP label keys are lowercase letters, digits, '_' and '-' (the "
                        "rest becomes '_'): one of the two labels would be lost",
                hint="rename the tag in llmcloud:tags so that no two differ only in case or "
                     "punctuation")
        seen[key] = f"tag '{name}'"


def _check_label_length(name: str, value: str) -> None:
    """Refuse a tag whose name or value is longer than a GCP label takes: it was cut to 63
    characters (and a hash) without a word, so the label no longer said what the tag did."""
    from llmcloud.providers.gcp.naming import LIMITS

    limit = LIMITS["label"]
    for what, text in (("name", name), ("value", value)):
        if len(text) > limit:
            raise ConfigError(
                f"tag '{name[:40]}{'...' if len(name) > 40 else ''}' has a {what} of "
                f"{len(text)} characters, longer than a GCP label takes",
                context=f"GCP label keys and values are at most {limit} characters "
                        "(lowercase letters, digits, '_' and '-')",
                hint=f"shorten the tag's {what} in llmcloud:tags to {limit} characters "
                     "or fewer")
