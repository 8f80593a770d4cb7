"""Names and labels of the GCP resources: short, deterministic, within each API's limits."""

from __future__ import annotations

import re

from llmcloud.providers.naming import (  # noqa: F401 - re-exported
    base_name,
    fit,
    model_key_prefix,
    model_prefix,
    slug,
)

#: GCP length limits of the names llmcloud sets explicitly
LIMITS = {"resource": 63, "service_account": 30, "repository": 63, "secret": 255,
          "label": 63, "prefix": 37, "log_metric": 100}


#: what the components append to the name they are given (the server group's autohealing
#: check `<name>-autoheal`, the balancer's `<name>-redirect`), kept within 63 too
SUFFIX_ROOM = {"gpu": len("-autoheal"), "lb": len("-redirect")}


def resource_name(stack: str, part: str) -> str:
    """An explicit Compute Engine name (RFC 1035: 63 characters, starts with a letter),
    with room for the suffixes its component appends (`SUFFIX_ROOM`)."""
    return fit(f"{base_name(stack)}-{slug(part)}",
               LIMITS["resource"] - SUFFIX_ROOM.get(part, 0))


def compute_name(name: str, suffix: str = "") -> str:
    """`<name><suffix>` as a Compute Engine name (at most 63 characters)."""
    return fit(f"{name}{suffix}", LIMITS["resource"])


def name_prefix(stack: str, part: str) -> str:
    """A `name_prefix` for resources replaced before they are deleted (instance templates):
    GCP appends a 26-character suffix, so the prefix stays within 37."""
    return fit(f"{base_name(stack)}-{slug(part)}-", LIMITS["prefix"] - 1).rstrip("-") + "-"


def service_account_id(stack: str) -> str:
    """The servers' service account id: 6-30 characters, a letter first, no trailing dash."""
    return fit(f"llm-{slug(stack)}-server", LIMITS["service_account"])


def repository_id(stack: str, model_name: str) -> str:
    """The Artifact Registry repository of the stack's inference image."""
    return fit(f"{base_name(stack)}-{slug(model_name)}", LIMITS["repository"])


def secret_id(stack: str) -> str:
    """The Secret Manager secret that holds the stack's API key hashes."""
    return fit(f"{base_name(stack)}-api-keys", LIMITS["secret"])


def model_uri(bucket: str, model_name: str, version: str) -> str:
    """The URI the server loads (`gs://<bucket>/models/<name>/<version>`)."""
    return f"gs://{bucket}/{model_key_prefix(model_name, version).rstrip('/')}"


def registry_host(region: str) -> str:
    """The Artifact Registry Docker host of a region (`us-central1-docker.pkg.dev`)."""
    return f"{region}-docker.pkg.dev"


def label_value(text: str) -> str:
    """A GCP label key or value: lowercase letters, digits, `_` and `-`, at most 63."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")
    return fit(cleaned, LIMITS["label"])


def labels(stack: str, model_name: str, tags: dict[str, str]) -> dict[str, str]:
    """The labels on every labelled resource: the stack, the model and the spec's tags, each
    made a valid label (GCP allows no `:` or upper case); a tag key must start with a letter."""
    result = {"llmcloud-stack": label_value(stack), "llmcloud-model": label_value(model_name)}
    for key, value in tags.items():
        result[label_key(key)] = label_value(value) if value else ""
    return result


def label_key(tag: str) -> str:
    """The label key a spec tag becomes (it must start with a letter)."""
    key = label_value(tag)
    return key if key[:1].isalpha() else f"tag_{key}"[: LIMITS["label"]]
