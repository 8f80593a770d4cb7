"""Naming shared by the clouds: slugs, a stack's prefix, names fitted to a length limit
without losing uniqueness, and where models live in a model store."""

from __future__ import annotations

import hashlib
import re

#: what an API key's name may be, on every provider (AWS keeps it in a tag, Azure in a
#: subscription's display name, GCP in a comment of the keys secret) and in the console
KEY_NAME = r"[A-Za-z0-9 ._@-]{1,64}"


def slug(text: str) -> str:
    """Lowercase letters, digits and single dashes (`Dev_Stack.1` -> `dev-stack-1`)."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned or "x"


def fit(name: str, limit: int) -> str:
    """`name` cut to `limit` characters; a cut name ends in a hash of the whole, so two long
    names that share a prefix stay distinct."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


#: what Pulumi appends to the logical name of a resource it names: `-` and 7 random characters
AUTO_SUFFIX = 8


def auto_named(logical_name: str, limit: int) -> str:
    """A logical name Pulumi can name a resource after within `limit` (it appends
    `AUTO_SUFFIX`): unchanged where it fits, so no deployed stack's resource is renamed."""
    return fit(logical_name, limit - AUTO_SUFFIX)


def base_name(stack: str) -> str:
    """The prefix of every resource of a stack (`llm-<stack>`)."""
    return f"llm-{slug(stack)}"


def names_its_own(stack: str) -> bool:
    """Whether `stack`'s resource names are its alone: the prefix `llm-<stack>` keeps the
    name as it is only for lowercase letters, digits and single inner dashes. Other names
    share the prefix with another stack (`a.b`, `a_b`, `A-b` and `a--b` are all `llm-a-b`),
    and two such stacks collide in one account."""
    return slug(stack) == stack


def model_prefix(model_name: str) -> str:
    """The key prefix of every version of a model in the store (`models/<name>/`)."""
    return f"models/{model_name}/"


def model_key_prefix(model_name: str, version: str) -> str:
    """Where one version of a model lives in the store (`models/<name>/<version>/`)."""
    return f"{model_prefix(model_name)}{version}/"
