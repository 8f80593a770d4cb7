"""The deployment spec: one cloud-neutral description of a service, shared by every provider.

It is read from `Pulumi.<stack>.yaml` (keys under `llmcloud:`), overridden by `LLMCLOUD_*`
environment variables and then by CLI flags (see `stacks.config`). Provider-specific
defaults (region, instance type) are filled in by the provider before validation.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import date
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llmcloud.inference_image.server_options import DEFAULT_MAX_QUEUE

PROVIDERS = ("local", "aws", "azure", "gcp")
TASKS = ("text-generation", "text2text-generation")
MODEL_SCHEMES = ("s3", "gs", "az")

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# also a path part of the SageMaker flavour's `/v1/models/<name>`
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.:/=+@-]{1,127}$")
#: the tag keys llmcloud sets on every resource begin so (AWS `llmcloud:stack`, Azure
#: `llmcloud-stack`, GCP label `llmcloud-stack`, ...), in any case: Azure's are
#: case-insensitive
PRODUCT_TAG_PREFIXES = ("llmcloud:", "llmcloud-")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def changed(self, name: str) -> bool:
        """Whether field `name` holds a value other than its default: one the user chose
        (`llmcloud init` writes every default into the stack file, so being written there
        says nothing). A provider that cannot honour the field refuses it then."""
        default = type(self).model_fields[name].get_default(call_default_factory=True)
        return getattr(self, name) != default


def model_name_from_source(source: str) -> str:
    """A DNS-safe model name derived from a source (`Qwen/Qwen2.5-0.5B` -> `qwen2-5-0-5b`)."""
    last = source.rstrip("/").rsplit("/", 1)[-1] or "model"
    name = re.sub(r"[^a-z0-9]+", "-", last.lower()).strip("-")[:40].strip("-")
    return name or "model"


def _text_list(value: object) -> object:
    """A list given as text (a JSON list, as `pulumi config set --path` stores one, or items
    separated by commas, as an LLMCLOUD_* variable gives them) as a list; anything else as
    it is. Text that is JSON but no list ("123") is one item, refused for what it is rather
    than as "not a valid list"."""
    if not isinstance(value, str):
        return value
    try:
        loaded = json.loads(value)
    except json.JSONDecodeError:
        loaded = None
    if isinstance(loaded, list):
        return loaded
    return [part.strip() for part in value.split(",") if part.strip()]


def _as_text(value: object) -> object:
    """A whole number as its text (a version such as 7), anything else as it is; a date or
    a fraction is refused with the fix: YAML read `version: 2024-06-01` as a date and
    `version: 1.10` as the number 1.1, and the spec said only "should be a valid string"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, date | float):
        kind = "a date" if isinstance(value, date) else "a number"
        raise ValueError(f"YAML reads it as {kind} ({value}): put the version in quotes, "
                         'as you wrote it (version: "...")')
    return value


def _not_blank(value: str | None) -> str | None:
    """Refuse an empty name: `LLMCLOUD_REGION=` (a CI variable that expanded to nothing)
    replaced the stack file's region with "", which each provider then read as "unset",
    and the service went to the provider's default region instead."""
    if value is not None and not value.strip():
        raise ValueError("must not be empty (leave it unset for the default)")
    return value


class CanarySpec(_Section):
    """The canary a `promote --canary` runs on a cloud stack (promote records and removes
    it; never set by hand): `servers` servers on `version` beside the fleet, which keeps
    the version it serves; once `serving`, the load balancer weighs the fleet
    `fleet_weight` (its servers when the canary started) against the canary's `servers`."""

    version: str = Field(description="the version the canary's servers run")
    servers: int = Field(ge=1, le=8, description="the canary's servers (fixed, no autoscaler)")
    # (a load balancer's weights run from 0 to 999: AWS's TargetGroupTuple)
    fleet_weight: int = Field(
        default=1, ge=1, le=999, description="the fleet's servers when the canary started")
    serving: bool = Field(
        default=False, description="whether the load balancer sends the canary requests (once "
                                   "its servers are healthy: none before)")

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return _as_text(value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("must be 1-63 letters, digits, '.', '_' or '-' (e.g. v7)")
        return value


class ModelSpec(_Section):
    """Which model serves, and in which version.

    `source` is a local folder, a Hugging Face hub id (`org/name`), or a model store URI
    (`s3://`, `gs://`, `az://`). `version` names the folder `models/<name>/<version>/` in
    the stack's model store; changing it rolls the replicas.
    """

    source: str = Field(
        default="Qwen/Qwen2.5-0.5B-Instruct",
        description="a local folder, a hub id (org/name), or s3://, gs://, az:// URI",
    )
    name: str | None = Field(
        default=None, description="the model's name in the model store (from the source if unset)"
    )
    version: str = Field(
        default="v1", description="the version in service; changing it rolls the replicas"
    )
    task: Literal["text-generation", "text2text-generation"] | None = Field(
        default=None,
        description="text-generation or text2text-generation (from the model's config if unset)",
    )
    history: list[str] = Field(
        default_factory=list,
        description="versions served before, newest last (kept by promote; rollback uses it)",
    )
    canary: CanarySpec | None = Field(
        default=None,
        description="the canary of a promote --canary that runs (promote records it)",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        # `pulumi config set --path` stores an all-digit value (7, 20240601) as a number:
        # the stack file then holds `version: 7`, which is version "7"
        return _as_text(value)

    @field_validator("history", mode="before")
    @classmethod
    def _history_text(cls, value: object) -> object:
        # `pulumi config set --path` stores a list given on the command line as JSON text
        value = _text_list(value)
        return [_as_text(v) for v in value] if isinstance(value, list) else value

    @field_validator("history")
    @classmethod
    def _history(cls, value: list[str]) -> list[str]:
        for version in value:
            if not _VERSION.match(version):
                raise ValueError(f"'{version}' is not a model version")
        return value[-20:]

    @field_validator("canary", mode="before")
    @classmethod
    def _canary_text(cls, value: object) -> object:
        # `pulumi config set --path` stores the canary as JSON text; promote removes it by
        # recording it empty
        if isinstance(value, str):
            if value.strip() in ("", "null", "~"):
                return None
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if "://" in value:
            scheme, _, rest = value.partition("://")
            if scheme not in MODEL_SCHEMES:
                raise ValueError(
                    f"scheme '{scheme}://' is not supported; use a local folder, a hub id, "
                    "s3://, gs:// or az://"
                )
            if not rest.split("/", 1)[0]:
                raise ValueError(f"'{value}' names no bucket")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                "must be 1-40 lowercase letters, digits or '-', starting and ending with a "
                "letter or digit"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("must be 1-63 letters, digits, '.', '_' or '-' (e.g. v7 or 2024.06.1)")
        return value

    @model_validator(mode="after")
    def _default_name(self) -> ModelSpec:
        if self.name is None:
            object.__setattr__(self, "name", model_name_from_source(self.source))
        return self


class ComputeSpec(_Section):
    """The replicas that run the model server.

    `kind` is `instances` (a GPU instance group) or `sagemaker` (AWS only). `instance_type`
    and `gpus` default to the provider's choice; `disk_gb` sizes the root volume for the
    image and the model cache.
    """

    kind: Literal["instances", "sagemaker"] = Field(
        default="instances", description="instances (a GPU instance group) or sagemaker (aws)"
    )
    instance_type: str | None = Field(
        default=None, description="the machine type of each replica (the provider's default)"
    )
    gpus: int | None = Field(default=None, ge=0, le=16, description="GPUs per replica")
    min_replicas: int = Field(default=1, ge=1, le=1000, description="replicas always running")
    max_replicas: int = Field(
        default=2, ge=1, le=1000, validate_default=True, description="the autoscaler's ceiling"
    )
    spot: bool = Field(
        default=False,
        description="spot capacity for the replicas above min_replicas, which stay "
                    "on-demand (Azure: the whole scale set; not offered by sagemaker or local)")
    disk_gb: int = Field(
        default=200, ge=30, le=16384, description="root volume size (image and model cache)"
    )

    _instance_type = field_validator("instance_type")(_not_blank)

    @field_validator("max_replicas")
    @classmethod
    def _replicas(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("min_replicas")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least min_replicas ({minimum})")
        return value


#: `autoscaling.target`'s default: concurrent requests, the `in_flight` signal's unit
IN_FLIGHT_DEFAULT_TARGET = 8
#: a `requests` target to suggest: two requests a second per copy of the model
REQUESTS_TARGET_EXAMPLE = 120


class AutoscalingSpec(_Section):
    """When to add replicas.

    `signal` is `in_flight` (concurrent requests) or `requests` (requests per minute); the
    autoscaler keeps each replica's signal near `target` for each copy of the model the
    replica runs: one per GPU (see `server.data_parallel_size`), so a 4-GPU replica is
    held at 4 x `target`. The default target (8) is concurrent requests: `requests` needs a
    target of its own.
    """

    signal: Literal["in_flight", "requests"] = Field(
        default="in_flight",
        description="in_flight (concurrent requests) or requests (per minute)",
    )
    target: float = Field(
        default=IN_FLIGHT_DEFAULT_TARGET, gt=0, le=100000,
        description="per copy of the model (one per GPU): requests in flight, or a minute's "
                    f"requests (set it then, e.g. {REQUESTS_TARGET_EXAMPLE})")
    cooldown_seconds: int = Field(
        default=300, ge=0, le=3600, description="wait between scaling actions"
    )


class GatewaySpec(_Section):
    """The API gateway in front of the service: API keys, rate limits, quotas.

    `rate_limit` is requests per second per key with `burst` requests of headroom; `quota`
    is requests per day per key (none when unset). `public: false` keeps the endpoint
    private to the network. `domain` gets a managed certificate where the provider can.
    """

    rate_limit: float = Field(
        default=10, gt=0, le=100000, description="requests per second per API key"
    )
    burst: int = Field(default=20, ge=1, le=100000, description="requests of burst per API key")
    quota: int | None = Field(default=None, ge=1, description="requests per day per API key")
    public: bool = Field(default=True, description="reachable from the Internet (with a key)")
    domain: str | None = Field(default=None, description="a custom domain with a certificate")
    timeout_seconds: int = Field(
        default=300, ge=1, le=3600, description="the longest a request may take"
    )
    max_body_kb: int = Field(
        default=1024, ge=1, le=102400, description="larger request bodies get 413"
    )

    _domain = field_validator("domain")(_not_blank)


class NetworkSpec(_Section):
    """The network: which clients may reach the endpoint, and the private address range."""

    allowed_cidrs: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0"], description="client ranges that may call the API"
    )
    vpc_cidr: str = Field(default="10.80.0.0/16", description="the private network's range")

    @field_validator("allowed_cidrs", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one CIDR (0.0.0.0/0 for everyone)")
        return [str(ipaddress.ip_network(cidr, strict=False)) for cidr in value]

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc(cls, value: str) -> str:
        network = ipaddress.ip_network(value, strict=False)
        if not isinstance(network, ipaddress.IPv4Network) or not network.is_private:
            raise ValueError("must be a private IPv4 range, e.g. 10.80.0.0/16")
        if not 16 <= network.prefixlen <= 22:
            raise ValueError("prefix must be between /16 and /22 to fit the subnets")
        return str(network)


class BudgetSpec(_Section):
    """A spending limit: `plan` and `up` refuse a stack whose maximum hourly cost exceeds it."""

    max_hourly_usd: float | None = Field(
        # (not infinity: `--budget inf` turned the gate off, and `--json` printed Infinity)
        default=None, gt=0, allow_inf_nan=False,
        description="refuse plans whose max hourly cost is higher"
    )


#: an address as every cloud's e-mail notifications accept it: one `@`, a dot in the
#: domain, no spaces or list separators (a stray comma or semicolon joined two addresses)
_EMAIL = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[A-Za-z]{2,}$")


class AlertsSpec(_Section):
    """Who hears the stack's alerts: the e-mail addresses they are sent to.

    Each cloud mails them when an alarm fires (AWS first mails each one a link to confirm
    the subscription); with none, the alerts notify nobody."""

    emails: list[str] = Field(
        default_factory=list,
        description="addresses the alerts are mailed to (AWS: each confirms by the link it "
                    "gets first); none: alerts notify nobody")

    @field_validator("emails", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # LLMCLOUD_ALERTS__EMAILS=a@x.io,b@x.io; `pulumi config set --path` stores JSON text
        return _text_list(value)

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for email in (e.strip() for e in value):
            if not _EMAIL.match(email) or len(email) > 254:
                raise ValueError(f"'{email}' is not an e-mail address (name@example.com)")
            seen.setdefault(email.lower(), email)  # one notification per mailbox
        return list(seen.values())


#: requests a server's engine lets wait for a batch slot before it answers 429 (the
#: server's `--max-queue`, which no provider changes); with `server.max_batch_size` running,
#: the most requests one copy of the model holds, so the most its in-flight gauge reads
SERVER_MAX_QUEUE = DEFAULT_MAX_QUEUE


def in_flight_ceiling(max_batch_size: int) -> int:
    """The most requests one copy of the model holds at once (running plus waiting): the
    in-flight gauge the autoscalers track never reads more, and a request beyond it gets
    429 with `Retry-After`."""
    return max_batch_size + SERVER_MAX_QUEUE


#: server settings that are switches: their flag alone turns them on
_SWITCHES = frozenset({"trust_remote_code"})


class SamplingDefaultsSpec(_Section):
    """Sampling defaults for requests that leave them out, over the model's own (its
    generation config's): the server's `--override-generation-config`."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1, description="-1 or 0: all tokens")
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    max_new_tokens: int | None = Field(
        default=None, ge=1, description="answer length when a request sets no max_tokens")


class ServerSpec(_Section):
    """Settings of the model server on each replica."""

    port: int = Field(default=8080, ge=1024, le=65535, description="the server's port")
    drain_timeout_seconds: int = Field(
        default=300, ge=1, le=3600,
        description="how long in-flight requests may finish when a server is replaced or "
                    "scaled in; below gateway.timeout_seconds, longer requests are cut",
    )
    max_batch_size: int = Field(
        default=16, ge=1, le=1024, description="sequences decoded together"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="weights' precision (auto: bf16 on GPU, fp32 on CPU)"
    )
    pack_weights: bool = Field(
        default=True,
        description="on CPU, weights packed for oneDNN: faster, but one copy per replica "
                    "(false: local replicas share the model file's pages)",
    )
    max_batch_tokens: int | None = Field(
        default=None, ge=1,
        description="KV-cache positions per replica (unset: sized from the memory left "
                    "after loading the model)",
    )
    reserve_new_tokens: int | Literal["all"] | None = Field(
        default=None,
        description="cache room kept per running request when admitting another; 'all' "
                    "reserves each request's max_tokens and never preempts (unset: 256)",
    )
    max_model_len: int | None = Field(
        default=None, ge=1,
        description="the longest prompt plus answer served, below the model's context: "
                    "less KV-cache memory per request (unset: the model's context)",
    )
    max_prefill_tokens: int | None = Field(
        default=None, ge=1,
        description="prompt tokens prefilled per step, and the chunk size of longer prompts "
                    "(unset: 2048 on a GPU, 512 on CPU)",
    )
    prefix_cache_share: float | None = Field(
        default=None, ge=0, le=1,
        description="share of the KV cache that kept prompt beginnings may hold, so prompts "
                    "that start alike prefill only the rest; 0 turns prefix caching off "
                    "(unset: all free room on a GPU; on CPU, room for one request of the "
                    "whole context)",
    )

    scheduling_policy: Literal["fcfs", "priority"] | None = Field(
        default=None,
        description="priority: requests are served by their `priority` field (lower values "
                    "sooner; vLLM's), and running ones of a higher value give way to a "
                    "waiting one that has no room (unset: fcfs, first come first served)",
    )
    reasoning_parser: Literal["auto", "think", "none"] | None = Field(
        default=None,
        description="a reasoning model's <think> part returned as `reasoning`, apart from "
                    "the answer: think always, none never (unset: auto, when the model's "
                    "vocabulary and chat template have the markers)",
    )
    lora_modules: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters (PEFT folders) served beside the model, by name: folders "
                    "inside the model version, e.g. {sql: adapters/sql}, so they are uploaded, "
                    "verified, rolled out and rolled back with it; a request whose `model` is "
                    "the name runs with that adapter (causal models)",
    )
    max_loras: int | None = Field(
        default=None, ge=1,
        description="LoRA adapters a batch may hold at once: a request of one more waits "
                    "until one of them has no request running; each adapter in a batch "
                    "costs every row time (unset: all of them)",
    )
    data_parallel_size: int | None = Field(
        default=None, ge=1,
        description="copies of the model on each server, one per GPU, each with its own "
                    "engine; 1 keeps one copy, e.g. for a model that needs a GPU's memory "
                    "for its cache (unset: one per GPU of the instance)",
    )
    log_format: Literal["text", "json"] | None = Field(
        default=None,
        description="json: the servers log one JSON object a line, each request's counts "
                    "and timings as fields, for CloudWatch Logs Insights and other log "
                    "pipelines (unset: text)",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="load a model whose architecture is Python code in its own folder "
                    "(config.json's auto_map): that code runs on the servers",
    )
    generation_config: Literal["auto", "none"] | None = Field(
        default=None,
        description="none: requests that leave out temperature, top_p, ... get OpenAI's "
                    "defaults, not the model creator's generation_config.json (unset: auto)",
    )
    override_generation_config: SamplingDefaultsSpec | None = Field(
        default=None,
        description="sampling defaults that win over the model's generation config, e.g. "
                    "{temperature: 0.7, top_p: 0.8, top_k: 20, min_p: 0, "
                    "repetition_penalty: 1.05, max_new_tokens: 1024}",
    )

    @field_validator("lora_modules")
    @classmethod
    def _lora_modules(cls, value: dict[str, str]) -> dict[str, str]:
        for name, folder in value.items():
            if not _ADAPTER_NAME.match(name):
                raise ValueError(f"'{name}' is not an adapter name: letters, digits, '.', "
                                 "'_' and '-', at most 64")
            parts = folder.strip("/").split("/")
            if (not folder or folder.startswith(("/", "~")) or "://" in folder
                    or ".." in parts or any(c.isspace() for c in folder)):
                raise ValueError(f"'{folder}' ({name}) must be a folder inside the model "
                                 f"version, e.g. adapters/{name}: a relative path without "
                                 "'..' or spaces")
        return value

    @field_validator("reserve_new_tokens", mode="before")
    @classmethod
    def _reserve(cls, value: object) -> object:
        # One clear error instead of one per member of the union.
        if value is None or value == "all":
            return value
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError("must be a number of at least 1, or 'all'")
        return value

    def engine_settings(self) -> dict[str, str]:
        """The KV-cache, context, prefill, prefix-cache, scheduling, reasoning,
        sampling-default and LoRA-adapter settings given, by name (unset ones are left out:
        the server keeps its defaults for them)."""
        names = ("max_batch_tokens", "reserve_new_tokens", "max_model_len",
                 "max_prefill_tokens", "prefix_cache_share", "scheduling_policy",
                 "reasoning_parser", "generation_config", "log_format", "max_loras",
                 "data_parallel_size")
        settings = {name: str(getattr(self, name)) for name in names
                    if getattr(self, name) is not None}
        override = (self.override_generation_config.model_dump(exclude_none=True)
                    if self.override_generation_config is not None else {})
        if override:
            settings["override_generation_config"] = json.dumps(override, sort_keys=True)
        if self.lora_modules:
            # "./": a folder of the model version, never a hub id (an adapter folder missing
            # from the version was fetched from a hub repository of the same name)
            settings["lora_modules"] = " ".join(
                f"{name}=./{folder.strip('/')}"
                for name, folder in sorted(self.lora_modules.items()))
        if self.trust_remote_code:
            settings["trust_remote_code"] = "1"
        return settings

    def engine_flags(self) -> list[str]:
        """``engine_settings`` as `llmcloud-server` flags (a switch alone, when on)."""
        return [part for name, value in self.engine_settings().items()
                for part in ((f"--{name.replace('_', '-')}",) if name in _SWITCHES
                             else (f"--{name.replace('_', '-')}", value))]


class DeploymentSpec(_Section):
    """One service: a model behind a gateway, on a provider's compute, within a budget."""

    provider: Literal["local", "aws", "azure", "gcp"] = Field(
        default="local", description="where the service runs: local, aws, azure or gcp"
    )
    region: str | None = Field(default=None, description="the cloud region")
    image: str | None = Field(
        default=None,
        description="the model server image, pinned by digest (set by llmcloud image push)",
    )
    model: ModelSpec = Field(default_factory=ModelSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    tags: dict[str, str] = Field(
        default_factory=dict, description="tags/labels added to every cloud resource"
    )

    _region = field_validator("region")(_not_blank)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"@sha256:[0-9a-f]{64}$", value):
            raise ValueError(
                "must be pinned by digest (REPOSITORY@sha256:<64 hex>), never a mutable tag"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag in value.items():
            if not _TAG_KEY.match(key):
                raise ValueError(f"tag key '{key}' must be 1-127 of letters, digits, _.:/=+@-")
            if key.lower().startswith(PRODUCT_TAG_PREFIXES):
                # they would replace the stack's own (llmcloud:stack, llmcloud-model, ...),
                # which keys, lookups and cost reports go by
                raise ValueError(f"tag key '{key}' is llmcloud's own: keys beginning with "
                                 f"{' or '.join(PRODUCT_TAG_PREFIXES)} are kept for the tags "
                                 "llmcloud sets itself")
            if len(str(tag)) > 255:
                raise ValueError(f"tag '{key}' is longer than 255 characters")
        return value

    @model_validator(mode="after")
    def _target_within_capacity(self) -> DeploymentSpec:
        # The autoscalers add a server only when the servers' in-flight gauge reads above
        # the target, and it never reads more than the requests a server holds: at or past
        # that, every request beyond it gets 429 and no server is ever added.
        scaling, batch = self.autoscaling, self.server.max_batch_size
        if scaling.signal != "in_flight" or self.provider == "local":
            return self  # (local has no autoscaler)
        ceiling = in_flight_ceiling(batch)
        if scaling.target >= ceiling:
            raise PydanticCustomError(
                "target_over_capacity",
                "an in_flight target of {shown} requests per copy of the model is never "
                "exceeded: a copy holds at most {ceiling} (server.max_batch_size {batch} "
                "running + {queue} waiting) and answers 429 to more, so no server would ever "
                "be added; set autoscaling.target below {ceiling}, e.g. {batch} (one full "
                "batch), or raise server.max_batch_size",
                {"target": scaling.target, "shown": f"{scaling.target:g}", "ceiling": ceiling,
                 "batch": batch, "queue": SERVER_MAX_QUEUE})
        return self

    @model_validator(mode="after")
    def _requests_target_chosen(self) -> DeploymentSpec:
        # The default target (8) counts concurrent requests; read as requests a minute, it
        # holds each server at one request every 7.5 s, and the group scales out to
        # max_replicas at the first traffic. `init` writes every default into the stack
        # file, so a target "set" to 8 is as likely the in_flight default left in place.
        scaling = self.autoscaling
        if (scaling.signal != "requests" or self.provider == "local"
                or scaling.target != IN_FLIGHT_DEFAULT_TARGET):
            return self  # (local has no autoscaler)
        raise PydanticCustomError(
            "requests_target_unchosen",
            "with autoscaling.signal requests the target is requests a minute per copy of "
            "the model, and {shown} is the in_flight default (concurrent requests): a copy "
            "would be held at {shown} requests a minute and the group would scale out "
            "to compute.max_replicas at the first traffic; set autoscaling.target to the "
            "requests a minute one copy of the model serves, e.g. {example} (2 a second)",
            {"target": scaling.target, "shown": f"{scaling.target:g}",
             "example": REQUESTS_TARGET_EXAMPLE})

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, value: AlertsSpec, info: ValidationInfo) -> AlertsSpec:
        # (not ignored: a stack that seemed to page someone would page nobody)
        if value.emails and info.data.get("provider") == "local":
            raise PydanticCustomError(
                "alerts_not_offered",
                "the local provider has no alerts to mail: unset alerts.emails (the cloud "
                "providers mail their alarms there)", {})
        return value

    @field_validator("compute")
    @classmethod
    def _kind(cls, value: ComputeSpec, info: ValidationInfo) -> ComputeSpec:
        provider = info.data.get("provider")
        if value.kind == "sagemaker" and provider not in (None, "aws"):
            raise PydanticCustomError(
                "kind_not_offered",
                "'sagemaker' is only offered by the aws provider, not by {provider}",
                {"provider": provider},
            )
        return value
