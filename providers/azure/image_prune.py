"""Bound the stack's container registry: after `image push`, delete the repository's old
tagged images, as GCP's cleanup policies and AWS's lifecycle policy do on their own.

ACR's retention policy deletes only untagged manifests (the stack's keeps them 14 days);
`acr purge` runs as an ACR task, which cannot reach a registry that lets no trusted service
bypass its network rules without a dedicated agent pool in the network (in preview), and
could not tell the image in service. `image push` runs inside the network, with the
registry's own tokens, and knows the stack: so it prunes, through the registry's REST API
(Azure/azure-rest-api-specs, data-plane `containerregistry.json`, 2021-07-01):
`GET /acr/v1/{repository}/_manifests` lists each manifest with its tags, times and
`changeableAttributes`, a page at a time (`n`, and the next page's address in the `Link`
header, as Azure's SDKs follow it); `DELETE /v2/{repository}/manifests/{digest}` deletes a
manifest and the tags on it (202; 404 when gone already), not the manifests an index lists
(`references`). The access token comes from the refresh token at `/oauth2/token` with the
scope `repository:{repository}:metadata_read,delete`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from llmcloud.stacks.errors import DeploymentError

#: the newest tagged images kept whatever their age (rollbacks), as GCP's `keep-recent`
KEEP_RECENT = 10
#: a tagged image older than this goes, unless a keep rule holds it (GCP's `delete-old`)
DELETE_AFTER_DAYS = 30
#: manifests asked for a page (ACR's SDKs and `acr purge` ask 100)
PAGE_SIZE = 100
#: pages followed at most: a registry whose links go round never ends the listing
MAX_PAGES = 1000
#: a pinned reference's digest, any algorithm (OCI: `algorithm:encoded`; sha256, sha512)
_PINNED = re.compile(r"@([a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})$")


class PruneError(DeploymentError):
    """The repository could not be read in full, or what to keep could not be told: nothing
    was deleted."""


@dataclass(frozen=True)
class Manifest:
    """One manifest of the repository as the registry lists it."""

    digest: str
    tags: tuple[str, ...]
    #: its push or last change, whichever is later (ACR orders by the last change)
    pushed: datetime
    #: false when locked (`az acr repository update --delete-enabled false`): never deleted
    deletable: bool
    #: an index's manifests (ACR's `references`): deleting the index leaves them untagged,
    #: for the retention policy to delete, so an index that lists a kept one stays
    references: tuple[str, ...] = ()


def digests_of(images: Iterable[str | None]) -> set[str]:
    """The digests the image references pin (`host/repo@sha256:...`), in ACR's lower case.
    PruneError for a reference that pins none (a tag, another form): what it names cannot
    be told apart from the images to delete."""
    found: set[str] = set()
    for image in images:
        if not image:
            continue
        pinned = _PINNED.search(str(image).strip())
        if pinned is None:
            raise PruneError(f"the stack names an image by no digest ({image})",
                             context="the prune keeps images by digest and could not tell "
                                     "this one from those it deletes")
        found.add(pinned.group(1).lower())
    return found


def images_to_delete(manifests: Collection[Manifest], keep: Collection[str], now: datetime,
                     keep_recent: int = KEEP_RECENT,
                     older_than_days: int = DELETE_AFTER_DAYS) -> list[Manifest]:
    """The tagged manifests older than `older_than_days` that no keep rule holds: the
    digests in `keep` (the image in service, the images the stack deployed, the one just
    pushed), the newest `keep_recent` tagged ones, the locked ones, and an index that lists
    any of those. Untagged manifests are the retention policy's."""
    tagged = [m for m in manifests if m.tags]
    newest = sorted(tagged, key=lambda m: m.pushed, reverse=True)[:keep_recent]
    held = {d.lower() for d in keep} | {m.digest for m in newest}
    held |= {m.digest for m in manifests if held.intersection(m.references)}
    cutoff = now - timedelta(days=older_than_days)
    return sorted((m for m in tagged
                   if m.digest not in held and m.deletable and m.pushed < cutoff),
                  key=lambda m: m.pushed)


def prune_repository(client: Any, host: str, repository: str, refresh_token: str,
                     keep: Collection[str], now: datetime | None = None,
                     keep_recent: int = KEEP_RECENT,
                     older_than_days: int = DELETE_AFTER_DAYS) -> dict[str, Any]:
    """Delete `repository`'s old tagged images (`images_to_delete`) through `client` (an
    `httpx.Client`). Returns what was deleted (`host/repo@digest`), how many tagged images
    were kept, and a warning for each delete refused. PruneError, before any delete, when
    the token or any page of the listing cannot be had."""
    token = _access_token(client, host, repository, refresh_token)
    manifests = list_manifests(client, host, repository, token)
    doomed = images_to_delete(manifests, keep, now or datetime.now(UTC), keep_recent,
                              older_than_days)
    deleted: list[str] = []
    warnings: list[str] = []
    for manifest in doomed:
        status = _delete(client, host, repository, token, manifest.digest)
        if status in (202, 404):  # 404: gone already, by another push's prune or by hand
            deleted.append(f"{host}/{repository}@{manifest.digest}")
        elif status in (401, 403):
            warnings.append(
                f"the registry refused to delete {repository}@{manifest.digest} "
                f"(HTTP {status}); deleting its images needs AcrDelete on the registry "
                "(AcrPush does not delete); nothing more was deleted")
            break
        elif status == 429:  # the next deletes would be throttled too: the next push goes on
            warnings.append(f"the registry throttled deleting {repository}@{manifest.digest} "
                            "(HTTP 429); nothing more was deleted, the next push prunes on")
            break
        else:
            answer = f"HTTP {status}" if status else "no answer"
            warnings.append(f"deleting {repository}@{manifest.digest} failed ({answer})")
    tagged = sum(1 for m in manifests if m.tags)
    return {"repository": f"{host}/{repository}", "deleted": deleted,
            "kept": tagged - len(deleted), "warnings": warnings}


def list_manifests(client: Any, host: str, repository: str, token: str) -> list[Manifest]:
    """Every manifest of `repository`, page after page. PruneError when a page is refused or
    unreadable, or the listing does not end: a part of the list could delete an image a
    later page shows is among the newest."""
    base = f"https://{host}"
    address: str | None = f"{base}/acr/v1/{repository}/_manifests?n={PAGE_SIZE}"
    found: list[Manifest] = []
    seen: set[str] = set()
    while address:
        if address in seen or len(seen) >= MAX_PAGES:
            raise PruneError(f"the listing of {repository} does not end")
        seen.add(address)
        response = client.get(address, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise PruneError(f"listing {repository} failed (HTTP {response.status_code})")
        try:
            found += [_manifest(item) for item in response.json().get("manifests") or ()]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PruneError(f"the listing of {repository} is not ACR's "
                             f"({type(exc).__name__})") from None
        address = _next_page(base, response.headers.get("Link"))
    return found


def _next_page(base: str, link: str | None) -> str | None:
    """The address in a `Link: </acr/v1/...?last=...&n=100>; rel="next"` header, resolved
    against the registry; PruneError for one on another host or not on HTTPS (the token
    goes with it)."""
    if not link or "<" not in link or ">" not in link:
        return None
    address = urljoin(base + "/", link[link.index("<") + 1:link.index(">")])
    there, here = urlsplit(address), urlsplit(base)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
        raise PruneError(f"the registry's next page is on another host ({address})")
    return address


def _manifest(item: dict[str, Any]) -> Manifest:
    times = [_time(item[key]) for key in ("createdTime", "lastUpdateTime") if item.get(key)]
    if not times:
        raise KeyError("createdTime")
    attributes = item.get("changeableAttributes") or {}
    return Manifest(digest=str(item["digest"]).lower(), tags=tuple(item.get("tags") or ()),
                    pushed=max(times), deletable=attributes.get("deleteEnabled") is not False,
                    references=tuple(str(r["digest"]).lower()
                                     for r in item.get("references") or ()))


def _time(text: str) -> datetime:
    # ACR writes seven fractional digits (2018-09-06T06:17:20.9983915Z); Python reads six
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _access_token(client: Any, host: str, repository: str, refresh_token: str) -> str:
    response = client.post(f"https://{host}/oauth2/token", data={
        "grant_type": "refresh_token", "service": host, "refresh_token": refresh_token,
        "scope": f"repository:{repository}:metadata_read,delete"})
    if response.status_code != 200:
        raise PruneError(f"the registry refused a token for {repository} "
                         f"(HTTP {response.status_code})")
    try:
        return str(response.json()["access_token"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PruneError(f"the registry's token answer holds no access_token "
                         f"({type(exc).__name__})") from None


def _delete(client: Any, host: str, repository: str, token: str, digest: str) -> int:
    """The registry's answer to deleting `digest`; 0 for none (a timeout, a reset)."""
    try:
        response = client.delete(f"https://{host}/v2/{repository}/manifests/{digest}",
                                 headers={"Authorization": f"Bearer {token}"})
    except Exception:  # noqa: BLE001 - one delete lost is a warning, the next may pass
        return 0
    return response.status_code
