"""The AWS provider: a GPU Auto Scaling group behind an internal ALB and API Gateway, or
(`compute.kind: sagemaker`) a SageMaker endpoint behind the same gateway."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from llmcloud.providers.aws import mocks, naming, regions
from llmcloud.providers.aws.endpoint_config import CONTAINER_PORT, sagemaker_instance_type
from llmcloud.providers.aws.prices import (
    ALB_HOURLY,
    ALB_LCU_HOURLY,
    API_GATEWAY_REST_PER_MILLION,
    CLOUDWATCH_ALARM_MONTH,
    GP3_GB_MONTH,
    GPU_INSTANCES,
    HOURS_PER_MONTH,
    INTERFACE_ENDPOINT_HOURLY,
    KMS_KEY_MONTH,
    ML_INSTANCES,
    NAT_GATEWAY_HOURLY,
    price_table,
    root_volume_gb,
)
from llmcloud.providers.bake import BAKE_POLL_SECONDS, MIN_REQUESTS_GRACE_SECONDS
from llmcloud.providers.base import StackContext
from llmcloud.providers.cloud import CloudProvider
from llmcloud.providers.credentials import check_aws
from llmcloud.providers.scaling import check_copies, check_gpus
from llmcloud.stacks.cost import CostLine, PriceSheet
from llmcloud.stacks.errors import (
    BusyError,
    ConfigError,
    DeploymentError,
    LlmcloudError,
    NotSupportedError,
)
from llmcloud.stacks.spec import DeploymentSpec

#: alarms each flavour declares (instances: 5xx, latency, unhealthy and no healthy hosts)
ALARMS = {"instances": 4, "sagemaker": 2}

DEFAULT_REGION = "us-east-1"
DEFAULT_INSTANCE_TYPE = "g6.xlarge"
#: the quickest of the instance group's alarms fires after 3 breaching one-minute periods
#: (the 5xx rate, the p99 latency); the load balancer's metrics come about a minute late
AWS_BAKE_MINIMUM_SECONDS = 240
API_GATEWAY_MAX_BODY_KB = 10 * 1024
_REGION_NAME = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}")

class AwsProvider(CloudProvider):
    """Deploys the service on AWS with pulumi-aws."""

    name = "aws"
    extra = "aws"
    #: `promote --canary` runs on compute.kind: instances (`check_canary` refuses SageMaker)
    unsupported: dict[str, str] = {}
    sdk_modules = ("pulumi_aws", "boto3")
    display_name = "AWS"
    registry_label = "ECR repository"
    mock_answers = mocks
    default_region = DEFAULT_REGION
    credentials_command = "aws configure"
    #: AWS-only knobs of the stack (see `providers/aws/service.py`)
    options: Any = None
    BAKE_MINIMUM_SECONDS = AWS_BAKE_MINIMUM_SECONDS

    def defaults(self) -> dict[str, Any]:
        return {
            "region": DEFAULT_REGION,
            "compute": {"instance_type": DEFAULT_INSTANCE_TYPE, "gpus": 1},
        }

    def check_credentials(self, environ: Mapping[str, str]) -> None:
        check_aws(environ)

    def declare_service(self, spec: DeploymentSpec, stack: str) -> Mapping[str, Any]:
        from llmcloud.providers.aws.service import AwsOptions, build_service

        return build_service(spec, stack, self.options or AwsOptions())

    def check_spec(self, spec: DeploymentSpec) -> None:
        region = spec.region or DEFAULT_REGION
        if not _REGION_NAME.fullmatch(region):  # a typo fails here, not at `up`
            raise ConfigError(f"region {region!r} is not an AWS region name",
                              context="AWS regions are named like us-east-1, eu-west-2 or "
                                      "ap-southeast-1",
                              hint=f"set region: {DEFAULT_REGION}, or the one you meant")
        if not regions.is_region(region):  # `up` would fail at its first AWS call
            near = regions.closest(region)
            raise ConfigError(f"region {region!r} is not an AWS region",
                              context=f"AWS has no region of that name (its regions as of "
                                      f"{regions.REGIONS_DATE}: providers/aws/regions.py, "
                                      f"then the installed botocore's)",
                              hint=f"set region to the one you meant: "
                                   f"{', '.join(near or [DEFAULT_REGION])}? (a region AWS "
                                   f"opened since: pip install -U botocore, which knows it)")
        _check_tags(spec.tags)
        # settings the spec allows that this stack does not build yet: refuse, never ignore
        if spec.compute.kind == "sagemaker":
            instance_type = sagemaker_instance_type(spec.compute.instance_type,
                                                    DEFAULT_INSTANCE_TYPE)
            table: dict = ML_INSTANCES
            if self.options is not None and self.options.private_endpoints:
                raise NotSupportedError(
                    "AwsOptions.private_endpoints has no VPC to serve with compute.kind: "
                    "sagemaker",
                    context="the SageMaker flavour declares no VPC: the model container is "
                            "network-isolated and API Gateway calls SageMaker's public API",
                    hint="drop private_endpoints, or use compute.kind: instances")
            if spec.compute.spot:
                raise ConfigError(
                    "compute.spot is not available with compute.kind: sagemaker",
                    context="SageMaker real-time endpoints run on on-demand instances only",
                    hint="set compute.spot: false, or compute.kind: instances")
            _refuse_what_sagemaker_fixes(spec)
            if spec.model.canary is not None:
                raise ConfigError(
                    "llmcloud:model.canary is not available with compute.kind: sagemaker",
                    context="it records a promote --canary's canary group, which only "
                            "compute.kind: instances declares",
                    hint="remove model.canary from the stack file")
        else:
            instance_type = spec.compute.instance_type or DEFAULT_INSTANCE_TYPE
            table = GPU_INSTANCES
            limit = naming.STREAM_TIMEOUT_MAX_MS // 1000
            if spec.gateway.timeout_seconds > limit:
                raise ConfigError(
                    f"gateway.timeout_seconds {spec.gateway.timeout_seconds} is over API "
                    f"Gateway's limit",
                    context=f"a REST API streams a response for {limit} s at most: longer "
                            "generations were cut there",
                    hint=f"set gateway.timeout_seconds to at most {limit}")
            if instance_type.startswith("ml."):
                raise ConfigError(
                    f"compute.instance_type {instance_type!r} is a SageMaker instance type",
                    context="compute.kind: instances runs on EC2 instance types",
                    hint=f"set compute.kind: sagemaker, or compute.instance_type to an EC2 "
                         f"type such as {DEFAULT_INSTANCE_TYPE}")
        gpus = table.get(instance_type, (None,))[0]
        check_gpus(spec, gpus, instance_type, {t: v[0] for t, v in table.items()}, "AWS")
        check_copies(spec, spec.compute.gpus if gpus is None else gpus, instance_type)
        if spec.gateway.max_body_kb > API_GATEWAY_MAX_BODY_KB:
            raise ConfigError(
                f"gateway.max_body_kb {spec.gateway.max_body_kb} is over API Gateway's limit",
                context=f"API Gateway accepts request bodies of at most "
                        f"{API_GATEWAY_MAX_BODY_KB} KB",
                hint=f"set gateway.max_body_kb to at most {API_GATEWAY_MAX_BODY_KB}")
        if not spec.gateway.public:
            raise NotSupportedError(
                "gateway.public: false is not offered by the aws provider yet",
                context="a private REST API needs an execute-api VPC endpoint in the stack",
                hint="set gateway.public: true and limit callers with network.allowed_cidrs")
        if spec.gateway.domain:
            raise NotSupportedError(
                "gateway.domain is not offered by the aws provider yet",
                context="a custom domain needs an ACM certificate validated in your DNS zone",
                hint="unset gateway.domain; the endpoint is the stack's execute-api URL")


    def check_image(self, ctx: StackContext, image: str | None) -> None:
        """The image the update deploys checked to be in the stack's repository and tagged
        as in service (`keep_image_in_service`)."""
        from llmcloud.providers.image_check import with_image

        self.keep_image_in_service(with_image(ctx, image))

    def keep_image_in_service(self, ctx: StackContext) -> None:
        """Tag the spec's image, when it lies in the stack's own repository, with its
        serving tag, which the repository's lifecycle policy never expires (`serving_tag.py`,
        `registry.py`); both kinds of servers pull it from there. An image ECR says the
        repository does not hold is refused (`DeploymentError`, nothing deployed: see
        `providers/image_check.py`). A tag that cannot be put, or an image that cannot be
        read, is a note, never a refusal: the image is then kept as before, among the
        newest."""
        from llmcloud.providers import image_check
        from llmcloud.providers.aws import serving_tag

        image = serving_tag.ecr_image(ctx.spec.image)
        own = naming.repository_name(ctx.stack, ctx.spec.model.name or "model")
        region = ctx.spec.region or DEFAULT_REGION  # the stack's repository lies in its region
        if image is None or image.repository != own or image.region != region:
            return
        try:
            note = serving_tag.tag_in_service(type(self).registry_client(image.region), image)
        except image_check.NotInRegistry as missing:
            raise image_check.refusal(ctx.spec.image or "", self.registry_label,
                                      missing.answer, self.name, ctx.stack) from None
        if note:
            print(note, file=sys.stderr)

    def after_up(self, ctx: StackContext, outputs: Mapping[str, Any]) -> None:
        """API Gateway's execution-log group given the stack's retention and key
        (`keep_execution_logs`)."""
        self.keep_execution_logs(ctx, outputs)

    def keep_execution_logs(self, ctx: StackContext, outputs: Mapping[str, Any]) -> None:
        """Make API Gateway's execution-log group, which the program cannot declare, what the
        `execution_log_group` output says: created with the stack's KMS key, retention and
        tags when missing, else given the key and retention it lacks (`execution_logs.py`).
        A step AWS refuses is a warning, never a failure: the deployment succeeded."""
        from llmcloud.providers.aws import execution_logs
        from llmcloud.providers.aws.service import stack_tags

        group = execution_logs.wanted(outputs)
        if group is None:  # a first `up` (registry and store only) has no API yet
            return
        client = type(self).logs_client(ctx.spec.region or DEFAULT_REGION)
        warning = execution_logs.keep(client, group, stack_tags(ctx.spec, ctx.stack))
        if warning:
            print(warning, file=sys.stderr)

    @staticmethod
    def logs_client(region: str) -> Any:
        """boto3's CloudWatch Logs client for the steps around the program (tests replace it
        with a stubbed one): few retries and short timeouts, so a step that cannot be done
        never holds `up` or `destroy` long."""
        import boto3
        from botocore.config import Config

        return boto3.client("logs", region_name=region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))

    @staticmethod
    def registry_client(region: str) -> Any:
        """boto3's ECR client (tests replace it with a stubbed one): few retries and short
        timeouts, so a tag that cannot be put never holds `up` long."""
        import boto3
        from botocore.config import Config

        return boto3.client("ecr", region_name=region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))

    def read_gpu_quota(self, ctx: StackContext) -> str | None:
        """The account's On-Demand GPU vCPU quota (`gpu_quota`) against the minimum
        servers; SageMaker endpoints draw on SageMaker's own quotas, not read here."""
        spec = ctx.spec
        if spec.compute.kind != "instances":
            return None
        from llmcloud.providers.aws import gpu_quota

        region = spec.region or DEFAULT_REGION
        return gpu_quota.check(type(self).quota_client(region),
                               spec.compute.instance_type or DEFAULT_INSTANCE_TYPE,
                               spec.compute.min_replicas, spec.compute.max_replicas, region)

    @staticmethod
    def quota_client(region: str) -> Any:
        """boto3's Service Quotas client (tests replace it with a stubbed one): few retries
        and short timeouts, so a quota read that cannot answer never holds `up` long."""
        import boto3
        from botocore.config import Config

        return boto3.client("service-quotas", region_name=region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))

    # -- plan: mocked AWS answers and prices --------------------------------------------


    def prices(self, spec: DeploymentSpec) -> PriceSheet:
        """The hourly price lines of `spec`'s service (see `prices.py` for the table): every
        billable resource the stack declares, per use (requests, GB) outside the total."""
        from llmcloud.providers.aws import prices as p
        from llmcloud.providers.aws.service import AwsOptions

        options = self.options or AwsOptions()
        region = spec.region or DEFAULT_REGION
        table = price_table(region)
        if spec.compute.kind == "sagemaker":
            lines = self._sagemaker_lines(spec, table)
        else:
            lines = self._instance_lines(spec, table, options.zones)
        lines += [
            CostLine("KMS keys", "key-hour", round(KMS_KEY_MONTH / HOURS_PER_MONTH, 6), 3, 3),
            CostLine("CloudWatch alarms", "alarm-hour",
                     round(CLOUDWATCH_ALARM_MONTH / HOURS_PER_MONTH, 6),
                     ALARMS[spec.compute.kind], ALARMS[spec.compute.kind]),
            CostLine("CloudWatch dashboard", "dashboard-hour",
                     p.monthly_to_hourly(p.CLOUDWATCH_DASHBOARD_MONTH), 1, 1,
                     note="free if the account has no more than three dashboards"),
        ]
        if options.waf:
            lines.append(CostLine(f"AWS WAF web ACL and {p.WAF_RULES} rules", "acl-hour",
                                  p.monthly_to_hourly(p.WAF_WEB_ACL_MONTH
                                                      + p.WAF_RULES * p.WAF_RULE_MONTH), 1, 1))
        zones = options.zones
        if options.private_endpoints and spec.compute.kind == "instances":
            lines.append(CostLine("interface endpoints (4 services per zone)", "endpoint-hour",
                                  INTERFACE_ENDPOINT_HOURLY, 4 * zones, 4 * zones))
        lines.append(CostLine("API Gateway REST requests", "1M requests",
                              API_GATEWAY_REST_PER_MILLION, 0, 0, hourly=False,
                              note="billed per request; not in the hourly total"))
        if options.waf:
            lines.append(CostLine("AWS WAF requests", "1M requests", p.WAF_PER_MILLION, 0, 0,
                                  hourly=False, note="billed per request; not in the hourly "
                                                     "total"))
        if spec.compute.kind == "instances":
            lines.append(CostLine("NAT gateway data processed", "GB", p.NAT_DATA_PER_GB, 0, 0,
                                  hourly=False, note="billed per GB (model pulls from S3 take "
                                                     "the VPC's gateway endpoint, not NAT)"))
        lines.append(CostLine("CloudWatch Logs ingestion", "GB", p.CLOUDWATCH_LOGS_PER_GB, 0, 0,
                              hourly=False, note="billed per GB ingested (server and access "
                                                 "logs); not in the hourly total"))
        notes = []
        if table.estimated:
            notes.append(f"{region} is priced as us-east-1; "
                         "check the region's prices")
        return PriceSheet(lines, table.price_date, table.source, notes=notes)

    @staticmethod
    def _instance_lines(spec: DeploymentSpec, table, zones: int) -> list[CostLine]:
        from llmcloud.providers.aws.prices import PUBLIC_IPV4_HOURLY
        from llmcloud.providers.aws.service import alternative_types

        instance_type = spec.compute.instance_type or DEFAULT_INSTANCE_TYPE
        if instance_type not in table.gpu_hourly:
            raise _unpriced(instance_type, table.gpu_hourly)
        low, high = spec.compute.min_replicas, spec.compute.max_replicas
        disk = root_volume_gb(spec.compute.disk_gb, instance_type)
        servers = [CostLine(f"GPU servers ({instance_type}, on-demand)", "instance-hour",
                            table.gpu_hourly[instance_type], low,
                            low if spec.compute.spot else high)]
        if spec.compute.spot and high > low:
            # the group launches spot capacity of any of these types, each billed at most at
            # its own on-demand price: the dearest bounds the hour
            types = [instance_type, *alternative_types(instance_type)]
            dearest = max(types, key=lambda t: table.gpu_hourly.get(t, 0.0))
            servers.append(CostLine(
                f"spot servers above the minimum ({', '.join(types)})", "instance-hour",
                table.gpu_hourly[dearest], 0, high - low,
                note=f"billed at the spot price, at most the on-demand price of the type it "
                     f"runs on; counted at the dearest ({dearest})"))
        canary = spec.model.canary
        if canary is not None:  # (a promote --canary runs: its servers are on-demand)
            servers.append(CostLine(
                f"canary servers ({instance_type}, on-demand)", "instance-hour",
                table.gpu_hourly[instance_type], canary.servers, canary.servers,
                note=f"while promote --canary of {canary.version} runs"))
            low, high = low + canary.servers, high + canary.servers
        return [
            *servers,
            CostLine(f"root volumes (gp3, {disk} GB)", "volume-hour",
                     round(disk * GP3_GB_MONTH / HOURS_PER_MONTH, 6), low, high),
            CostLine("application load balancer (1 LCU)", "hour", ALB_HOURLY + ALB_LCU_HOURLY,
                     1, 1),
            CostLine("NAT gateways (one per zone)", "gateway-hour", NAT_GATEWAY_HOURLY,
                     zones, zones),
            CostLine("public IPv4 addresses (the NAT gateways' Elastic IPs)", "address-hour",
                     PUBLIC_IPV4_HOURLY, zones, zones),
        ]

    @staticmethod
    def _sagemaker_lines(spec: DeploymentSpec, table) -> list[CostLine]:
        instance_type = sagemaker_instance_type(spec.compute.instance_type,
                                                DEFAULT_INSTANCE_TYPE)
        if instance_type not in table.ml_hourly:
            raise _unpriced(instance_type, table.ml_hourly)
        return [CostLine(
            f"SageMaker endpoint instances ({instance_type}, real-time inference)",
            "instance-hour", table.ml_hourly[instance_type], spec.compute.min_replicas,
            spec.compute.max_replicas,
            note="a blue/green update runs the old and the new fleet side by side while the "
                 "new one bakes (about 10 minutes)")]

    def wait_for_rollout(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                         timeout: float) -> bool:
        """The server group's instance refresh, watched to its end (`refresh_wait.py`). A
        SageMaker endpoint's update already waits, and rolls back on its alarms, by itself:
        SageMaker is then asked which version the endpoint serves."""
        import boto3

        from llmcloud.providers.aws.refresh_wait import check_endpoint_version, wait_for_refresh

        region = ctx.spec.region or DEFAULT_REGION
        if ctx.spec.compute.kind == "sagemaker":
            endpoint = outputs.get("sagemaker_endpoint")
            if not endpoint:  # a first `up` (registry and store only) has no endpoint
                return False
            self.check_credentials(ctx.environ)
            with _aws_errors("describing the SageMaker endpoint",
                             "check that your AWS credentials may describe the stack's "
                             "SageMaker endpoint, its configuration and its model"):
                check_endpoint_version(boto3.client("sagemaker", region_name=region),
                                       str(endpoint), str(outputs.get("model_version")),
                                       timeout=timeout)
            return True
        self.check_credentials(ctx.environ)
        client = boto3.client("autoscaling", region_name=region)
        return wait_for_refresh(client, naming.asg_name(ctx.stack), since,
                                timeout=timeout) is not None

    def check_bake(self, ctx: StackContext, seconds: int) -> None:
        """Refuse a bake on a SageMaker stack (SageMaker bakes it) and one too short."""
        from llmcloud.providers.aws.endpoint_config import BAKE_SECONDS

        if seconds and ctx.spec.compute.kind == "sagemaker":
            raise ConfigError(
                "--bake is not available with compute.kind: sagemaker",
                context=f"SageMaker's deployment guardrails bake every update already: the "
                        f"new fleet takes the traffic while the old one is kept for "
                        f"{BAKE_SECONDS} s, and if one of the endpoint's rollback alarms "
                        "fires SageMaker sends the traffic back to the old fleet before "
                        "promote returns",
                hint="promote without --bake")
        super().check_bake(ctx, seconds)

    def firing_alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, str]:
        """The stack's CloudWatch alarms a bad version fires (`monitoring.py`: 5xx rate, p99
        latency, no healthy server; named by the `alert_names` output) in state ALARM:
        name -> description."""
        from llmcloud.providers.aws import alarm_state

        names = self.bake_output(ctx, outputs, alarm_state.OUTPUT, "alarms")
        self.check_credentials(ctx.environ)
        client = type(self).alarm_client(ctx.spec.region or DEFAULT_REGION)
        with _aws_errors("reading the stack's CloudWatch alarms",
                         hint="check that your AWS credentials may cloudwatch:DescribeAlarms"):
            return alarm_state.firing(client, [str(n) for n in names])

    def requests_served(self, ctx: StackContext, outputs: Mapping[str, Any], since: datetime,
                        until: datetime) -> int | None:
        """How many requests the stack's load balancer answered between ``since`` and
        ``until``: the sum of its CloudWatch `RequestCount`, the requests the 5xx-rate
        alarm judges, as CloudWatch holds it now (minutes late: a lower bound;
        `request_count.py`). None when it cannot tell: a SageMaker stack (no load
        balancer), no `alert_names` output, no cloudwatch:DescribeAlarms or
        cloudwatch:GetMetricData, a read that failed."""
        from llmcloud.providers.aws import alarm_state, request_count

        names = outputs.get(alarm_state.OUTPUT)
        if not names or outputs.get("sagemaker_endpoint"):
            return None
        try:
            self.check_credentials(ctx.environ)
            client = type(self).alarm_client(ctx.spec.region or DEFAULT_REGION)
            return request_count.requests_served(client, [str(n) for n in names], since,
                                                 until)
        except Exception:  # noqa: BLE001 - unknown, never a failure: the bake passed
            return None

    # -- promote --canary (compute.kind: instances; `providers/cloud_canary.py`) -----------

    #: how the bake of a canary reads: every 30 s, and the count of its requests for up to
    #: 300 s more when --min-requests is short (the ALB's metrics come a minute or two late)
    canary_bake = {"grace": MIN_REQUESTS_GRACE_SECONDS, "interval": BAKE_POLL_SECONDS}

    def check_canary(self, ctx: StackContext) -> None:
        """Refuse a canary on a SageMaker stack (exit 4): its endpoint has no group of
        servers to add one to."""
        super().check_canary(ctx)
        if ctx.spec.compute.kind == "sagemaker":
            raise NotSupportedError(
                "promote --canary is not offered with compute.kind: sagemaker",
                context="SageMaker's deployment guardrails bake every update on the "
                        "endpoint already (its own canary traffic routing is not built: "
                        "docs/proposals/canary.md, section 4.2)",
                hint="promote without --canary or --bake")

    def canary_fleet_weight(self, ctx: StackContext, outputs: Mapping[str, Any]) -> int:
        """The fleet's servers now (its group's desired capacity, 1 to 999): the fleet's
        weight against the canary's N in the listener, so that each server gets a share."""
        self.check_credentials(ctx.environ)
        client = type(self).canary_client("autoscaling", ctx.spec.region or DEFAULT_REGION)
        with _aws_errors("reading the server group's size",
                         hint="check that your AWS credentials may "
                              "autoscaling:DescribeAutoScalingGroups"):
            found = client.describe_auto_scaling_groups(
                AutoScalingGroupNames=[naming.asg_name(ctx.stack)]).get("AutoScalingGroups")
        desired = (found or [{}])[0].get("DesiredCapacity") or ctx.spec.compute.min_replicas
        return max(1, min(999, int(desired)))

    def wait_for_canary(self, ctx: StackContext, outputs: Mapping[str, Any],
                        timeout: float) -> None:
        """The canary's servers in service and healthy in its target group
        (`canary_wait.py`); `DeploymentError` when not in time."""
        from llmcloud.providers.aws.canary_wait import wait_for_canary

        canary = self._canary_output(ctx, outputs)
        region = ctx.spec.region or DEFAULT_REGION
        with _aws_errors("watching the canary's servers",
                         hint="check that your AWS credentials may describe Auto Scaling "
                              "groups and target health"):
            wait_for_canary(type(self).canary_client("autoscaling", region),
                            type(self).canary_client("elbv2", region), str(canary["group"]),
                            str(canary["target_group"]), int(canary["servers"]),
                            timeout=timeout)

    def read_canary_verdict(self, ctx: StackContext, outputs: Mapping[str, Any],
                            since: datetime) -> tuple[dict[str, str], int | None]:
        """The canary's verdicts that fire and its request count, from its own target
        group's CloudWatch metrics since ``since`` (`canary_verdict.py`)."""
        from llmcloud.providers.aws import canary_verdict
        from llmcloud.providers.aws.monitoring import latency_threshold_seconds

        canary = self._canary_output(ctx, outputs)
        client = type(self).alarm_client(ctx.spec.region or DEFAULT_REGION)
        with _aws_errors("reading the canary's CloudWatch metrics",
                         hint="check that your AWS credentials may cloudwatch:GetMetricData"):
            return canary_verdict.read(
                client, str(canary["load_balancer"]), str(canary["target_group_suffix"]),
                since, datetime.now(timezone.utc),
                latency_threshold_seconds(ctx.spec.gateway.timeout_seconds))

    def _canary_output(self, ctx: StackContext, outputs: Mapping[str, Any]) -> Mapping[str, Any]:
        canary = outputs.get("model_canary")
        if not isinstance(canary, Mapping):
            raise DeploymentError(
                f"stack '{ctx.stack}' runs no canary after its update",
                context="its outputs name no model_canary: the update did not declare it",
                hint=f"llmcloud up --stack {ctx.stack}, then promote again")
        return canary

    @staticmethod
    def canary_client(service: str, region: str) -> Any:
        """boto3's client of ``service`` (autoscaling, elbv2) for a canary's watch (tests
        replace it with a stubbed one): few retries and short timeouts, as it polls."""
        import boto3
        from botocore.config import Config

        return boto3.client(service, region_name=region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))

    @staticmethod
    def alarm_client(region: str) -> Any:
        """boto3's CloudWatch client (tests replace it with a stubbed one): few retries and
        short timeouts, as a bake asks every 30 s and retries a read that fails."""
        import boto3
        from botocore.config import Config

        return boto3.client("cloudwatch", region_name=region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))

    def status(self, ctx: StackContext) -> dict[str, Any]:
        """The stack's status, with its servers (the Auto Scaling group, or the SageMaker
        endpoint) and their recent failures: a group that cannot launch its servers (a
        quota, no capacity, a bad image) says so only there (`group_status.py`); and the
        group's alarms in state ALARM (`alerts`)."""
        result = super().status(ctx)
        outputs = result["outputs"]
        if outputs.get("sagemaker_endpoint"):
            result["servers"] = self._servers(ctx, "sagemaker",
                                              str(outputs["sagemaker_endpoint"]))
        elif outputs.get("endpoint_url"):  # the instances kind's group has no output
            result["servers"] = self._servers(ctx, "autoscaling", naming.asg_name(ctx.stack))
            # (a SageMaker stack's alarms are its guardrail's, which watches them itself)
            result["alerts"] = self._alerts(ctx, outputs)
        return result

    def _alerts(self, ctx: StackContext, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """`firing_alerts`' read for `status` (`status_alerts.py`), with its short timeouts."""
        from llmcloud.providers.aws import alarm_state
        from llmcloud.providers.status_alerts import status_alerts

        def read(names: Any) -> dict[str, str]:
            self.check_credentials(ctx.environ)
            client = type(self).status_client("cloudwatch", ctx.spec.region or DEFAULT_REGION)
            with _aws_errors("reading them"):
                return alarm_state.firing(client, [str(n) for n in names])

        return status_alerts(self.name, ctx.stack, outputs.get(alarm_state.OUTPUT),
                             alarm_state.OUTPUT, "CloudWatch alarms", read)

    def _servers(self, ctx: StackContext, service: str, name: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        from llmcloud.providers.aws import group_status

        what = ("the SageMaker endpoint" if service == "sagemaker"
                else "the Auto Scaling group")
        try:
            self.check_credentials(ctx.environ)
            client = type(self).status_client(service, ctx.spec.region or DEFAULT_REGION)
            if service == "sagemaker":
                return group_status.describe_endpoint(client, name)
            return group_status.describe_group(client, name, datetime.now(timezone.utc))
        except ClientError as exc:  # credentials refused, a permission missing, throttled
            error = exc.response.get("Error", {})
            reason = f"AWS refused it: {error.get('Code', 'error')}: {error.get('Message', '')}"
        except BotoCoreError as exc:  # no answer in time, no credentials
            reason = f"AWS could not be reached: {exc}"
        except Exception as exc:  # noqa: BLE001 - status shows what it can read
            reason = (exc.message + (f" ({exc.context})" if exc.context else "")
                      if isinstance(exc, LlmcloudError) else type(exc).__name__)
        return {"unread": f"{what} could not be read: {reason.rstrip(': ')}"}

    @staticmethod
    def status_client(service: str, region: str) -> Any:
        """boto3's client of ``service`` for `status` (tests replace it with a stubbed
        one): one try and short timeouts, as the console asks every 10 s."""
        import boto3
        from botocore.config import Config

        # (botocore's `max_attempts` counts the retries after the first try: 1 made two)
        return boto3.client(service, region_name=region, config=Config(
            connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1}))

    def endpoint_reports_version(self, ctx: StackContext) -> bool:
        """Whether the endpoint's `GET /v1/models` is the servers' answer, with the version
        they serve: the SageMaker flavour's is API Gateway's own (`sagemaker_routes.py`),
        with no version (`wait_for_rollout` asks SageMaker instead)."""
        return ctx.spec.compute.kind != "sagemaker"

    def keys_create(self, ctx: StackContext, name: str, admin: bool = False) -> dict[str, Any]:
        """An API Gateway key in the stack's usage plan (`api_keys.py`), shown once."""
        from llmcloud.providers.aws import api_keys

        self._refuse_admin_keys(ctx, name, admin)
        client, plan, _ = self._key_plan(ctx)
        with _aws_errors("creating the API key"):
            return api_keys.create(client, plan, ctx.stack, name)

    def keys_list(self, ctx: StackContext) -> list[dict[str, Any]]:
        from llmcloud.providers.aws import api_keys

        client, plan, own = self._key_plan(ctx)
        with _aws_errors("listing the API keys"):
            return api_keys.list_keys(client, plan, own)

    def keys_revoke(self, ctx: StackContext, key_id: str) -> dict[str, Any]:
        from llmcloud.providers.aws import api_keys

        client, plan, own = self._key_plan(ctx)
        with _aws_errors("revoking the API key"):
            return api_keys.revoke(client, plan, ctx.stack, key_id, own)

    def destroy(self, ctx: StackContext) -> dict[str, Any]:
        """Pulumi's destroy, after deleting the keys `llmcloud keys create` made: they are
        not in the stack's state, and API Gateway would keep them after their plan; then
        API Gateway's execution-log group, which is not in the state either
        (`delete_execution_logs`)."""
        from llmcloud.providers.aws import api_keys

        engine = self._engine(ctx, "destroy")
        outputs = engine.outputs()
        deleted: list[str] = []
        if outputs.get("usage_plan_id"):
            own = outputs.get("api_key_id")
            with _aws_errors("deleting the keys made by `llmcloud keys create`",
                             hint="check your AWS credentials' API Gateway permissions "
                                  "(apigateway:GET and DELETE on /apikeys and /usageplans)"):
                deleted = api_keys.delete_issued(_api_gateway(ctx),
                                                 str(outputs["usage_plan_id"]),
                                                 str(own) if own else None)
        try:
            result = engine.destroy()
        except BusyError as busy:
            if not deleted:
                raise
            # not "busy, nothing changed" (75): the stack serves on without those keys
            raise DeploymentError(
                f"destroy of stack '{ctx.stack}' stopped half-way: {busy.message}",
                context=f"the keys made by `llmcloud keys create` were deleted before Pulumi "
                        f"refused the destroy ({', '.join(deleted)}); the stack still serves, "
                        "with its own key only",
                hint=f"{busy.hint}; then llmcloud destroy --stack {ctx.stack} --yes again",
            ) from None
        if deleted:
            result = {**result, "api_keys_deleted": deleted}
        group = self.delete_execution_logs(ctx, outputs)
        return {**result, "execution_log_group_deleted": group} if group else result

    def delete_execution_logs(self, ctx: StackContext, outputs: Mapping[str, Any]) -> str | None:
        """Delete API Gateway's execution-log group once the stack is destroyed, as Pulumi
        deletes the stack's other log groups; returns its name when it was deleted. A
        refusal is a warning with the command that deletes it: the stack is gone."""
        from llmcloud.providers.aws import execution_logs

        name = execution_logs.deployed_name(outputs)
        if name is None:
            return None
        client = type(self).logs_client(ctx.spec.region or DEFAULT_REGION)
        deleted, warning = execution_logs.delete(client, name)
        if warning:
            print(warning, file=sys.stderr)
        return name if deleted else None

    def _key_plan(self, ctx: StackContext) -> tuple[Any, str, str | None]:
        """API Gateway's client, the stack's usage plan and the stack's own key."""
        self.check_credentials(ctx.environ)
        outputs = self._engine(ctx, "keys").outputs()
        plan = self._required_output(ctx, outputs, "usage_plan_id", "API Gateway usage plan")
        own = outputs.get("api_key_id")
        return _api_gateway(ctx), plan, str(own) if own else None

    def registry_login(self, ctx: StackContext, registry: str) -> tuple[str, str]:
        """ECR's way: a 12-hour token from `GetAuthorizationToken`, user `AWS`."""
        import base64

        import boto3

        self.check_credentials(ctx.environ)
        client = boto3.client("ecr", region_name=ctx.spec.region)
        data = client.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return user, password


def _refuse_what_sagemaker_fixes(spec: DeploymentSpec) -> None:
    """Refuse the settings of servers and network that SageMaker, not the stack, decides
    for `compute.kind: sagemaker`: they were silently ignored."""
    if spec.server.changed("port"):
        raise ConfigError(
            f"server.port {spec.server.port} is not available with compute.kind: sagemaker",
            context=f"SageMaker sends requests to the model container on port "
                    f"{CONTAINER_PORT}, always",
            hint="remove server.port from the stack file, or use compute.kind: instances")
    if spec.compute.changed("disk_gb"):
        raise ConfigError(
            f"compute.disk_gb {spec.compute.disk_gb} is not available with compute.kind: "
            "sagemaker",
            context="SageMaker gives each endpoint instance its storage (the NVMe instance "
                    "storage of ml.g4dn, g5, g6, g6e and p4d, of a fixed size); the "
                    "endpoint configuration sets no volume size",
            hint="remove compute.disk_gb from the stack file, or use compute.kind: instances")
    if spec.network.changed("vpc_cidr"):
        raise ConfigError(
            "network.vpc_cidr is not available with compute.kind: sagemaker",
            context="the SageMaker flavour declares no VPC: the model container runs "
                    "network-isolated and API Gateway calls SageMaker's public API",
            hint="remove network.vpc_cidr from the stack file, or use compute.kind: instances")


def _unpriced(instance_type: str, priced: Mapping[str, float]) -> ConfigError:
    return ConfigError(f"no price is known for instance type {instance_type}",
                       context=f"priced types: {', '.join(sorted(priced))}",
                       hint="pick a priced compute.instance_type, or add it to "
                            "providers/aws/prices.py")


def _api_gateway(ctx: StackContext) -> Any:
    """boto3's API Gateway client in the stack's region."""
    import boto3

    return boto3.client("apigateway", region_name=ctx.spec.region or DEFAULT_REGION)


@contextlib.contextmanager
def _aws_errors(doing: str, hint: str = "check your AWS credentials' API Gateway permissions"):
    """AWS's refusals (permissions, limits) as a `DeploymentError` naming AWS's code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeploymentError(f"AWS refused {doing}: {error.get('Code', 'error')}",
                              context=error.get("Message") or str(exc), hint=hint) from None
    except BotoCoreError as exc:
        raise DeploymentError(f"AWS could not be reached while {doing}",
                              context=str(exc)) from None


def _check_tags(tags: Mapping[str, str]) -> None:
    """Refuse a tag AWS refuses on every resource: a key or value beginning with `aws:`, in
    any case (AWS keeps the prefix for its own tags). `up` failed half-way, on the first
    resource it tagged."""
    for key, value in tags.items():
        for what, text in (("key", key), ("value", str(value))):
            if text.lower().startswith("aws:"):
                raise ConfigError(
                    f"tag '{key}' has a {what} beginning with 'aws:', which AWS refuses",
                    context="AWS keeps the aws: prefix (in any case) for the tags it sets "
                            "itself",
                    hint="rename the tag in llmcloud:tags (e.g. team for aws:team)")
