"""`llmcloud keys` on GCP: key hashes in the stack's Secret Manager secret.

The servers check keys themselves (`--api-keys-file`): each fetches the latest version of
the stack's keys secret every minute (`startup.py`), renames it into place, and the server
reads the file again when it changes. So the secret is that file: one `sha256:<hex>` line
per key, each after a comment naming the key (`# llmcloud-key <id> <created> <prefix>
<name>`), which the server skips. `keys create` adds a version with one more hash and
prints the key once; `keys revoke` adds a version without it. Secret Manager has no
compare-and-set on versions, so each change reads the latest version back after adding
its own and tries again (up to three times) when another change got in between. Once its
change is in place, it destroys the versions before its own: Secret Manager bills every
version that is not destroyed (disabled ones too), and an old version still holds the
hashes of revoked keys. The latest version, the one the servers fetch, is never one of them.
A change that would leave a line the servers refuse (a hash pasted short by hand) is not
written: the servers would keep the keys they read before, this change and every later one
unseen, and a new server would not start.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from llmcloud.providers.api_answers import raise_for
from llmcloud.stacks.errors import ConfigError, DeploymentError

SECRET_MANAGER = "https://secretmanager.googleapis.com/v1/"
#: gcloud's own override of the Secret Manager endpoint (e.g. Private Service Connect)
ENDPOINT_OVERRIDE = "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER"
MARK = "# llmcloud-key"
ATTEMPTS = 3


class KeysSecret:
    """The latest version of a secret, read and added to through Secret Manager's API."""

    def __init__(self, session: Any, project: str, secret: str, base: str | None = None):
        self.session = session
        self.address = f"{(base or SECRET_MANAGER).rstrip('/')}/projects/{project}/secrets/" \
                       f"{secret}"

    def read(self) -> str:
        """The latest version's text; empty when there is none yet."""
        response = self.session.get(f"{self.address}/versions/latest:access", timeout=30)
        if response.status_code == 404:
            return ""
        _raise_for(response, "reading the keys secret")
        # the servers skip a BOM (a version added from a Windows editor's file); so does this,
        # or the first line's key would be dropped from the next version
        return base64.b64decode(response.json()["payload"]["data"]).decode("utf-8-sig")

    def write(self, text: str) -> int | None:
        """Add a version holding ``text``: the servers take it within a minute or so.
        Returns the new version's number."""
        import google_crc32c

        data = text.encode("utf-8")
        body = {"payload": {"data": base64.b64encode(data).decode("ascii"),
                            "dataCrc32c": str(google_crc32c.value(data))}}
        response = self.session.post(f"{self.address}:addVersion", json=body, timeout=30)
        _raise_for(response, "adding a version to the keys secret")
        return _version_number(response.json().get("name"))

    def destroy_before(self, version: int) -> int:
        """Destroy every version numbered below ``version`` that is not destroyed yet;
        returns how many were."""
        destroyed, token = 0, None
        while True:
            params = {"pageSize": 100, **({"pageToken": token} if token else {})}
            response = self.session.get(f"{self.address}/versions", params=params, timeout=30)
            _raise_for(response, "listing the keys secret's versions")
            page = response.json()
            for found in page.get("versions", []):
                number = _version_number(found.get("name"))
                if number is None or number >= version or found.get("state") == "DESTROYED":
                    continue
                answer = self.session.post(f"{self.address}/versions/{number}:destroy",
                                           json={}, timeout=30)
                _raise_for(answer, f"destroying version {number} of the keys secret")
                destroyed += 1
            token = page.get("nextPageToken")
            if not token:
                return destroyed


def create(secret: KeysSecret, stack: str, name: str) -> dict[str, Any]:
    """Add a key; its record, with the key itself (shown once)."""
    from llmcloud.providers.local.keys import new_key

    key, record = new_key(name)
    entry = {**_public(record), "hash": record["hash"]}
    _change(secret, stack, lambda entries: [*entries, entry],
            lambda entries: any(e["hash"] == entry["hash"] for e in entries))
    return {**_public(record), "key": key}


def list_keys(secret: KeysSecret) -> list[dict[str, Any]]:
    """The keys (ids, names, prefixes, created; never a key or a hash)."""
    return [_public(entry) for entry in parse(secret.read())]


def revoke(secret: KeysSecret, stack: str, key_id: str) -> dict[str, Any]:
    """Remove a key's hash; the servers refuse it once they have the new version."""
    entries = parse(secret.read())
    found = [e for e in entries if e["id"] == key_id]
    if not found:
        raise ConfigError(f"stack '{stack}' has no API key {key_id}",
                          hint=f"llmcloud keys list --provider gcp --stack {stack}")
    if len(entries) == 1:
        # a secret without a hash is never taken by the servers (they would keep this key)
        raise ConfigError(
            f"{key_id} is the stack's last API key",
            context="the servers take a keys secret only while it holds a key",
            hint=f"llmcloud keys create --provider gcp --stack {stack}, then revoke this one")
    _change(secret, stack, lambda now: [e for e in now if e["id"] != key_id],
            lambda now: all(e["id"] != key_id for e in now))
    return {**_public(found[0]), "revoked": True}


def parse(text: str) -> list[dict[str, Any]]:
    """The keys of a secret's text: each hash line, with what the comment before it says
    (a hash added by hand, without one, gets an id from the hash)."""
    entries, note = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(MARK + " "):
            note = line[len(MARK) + 1:].split(" ", 3)
            if len(note) == 3:  # an empty name: the line's last space was stripped with it
                note.append("")
        elif line.lower().startswith("sha256:"):
            entries.append(_entry(line, note))
            note = None
        elif line:
            note = None
    return entries


def render(entries: list[dict[str, Any]], stack: str) -> str:
    """A secret's text (and the servers' keys file) for ``entries``."""
    lines = [f"# llmcloud API keys of stack {stack}: one sha256 line per key "
             "(llmcloud-server --api-keys-file); change them with `llmcloud keys`"]
    for entry in entries:
        if not entry["id"].startswith("sha256-"):
            lines.append(f"{MARK} {entry['id']} {entry['created'] or 0} "
                         f"{entry['prefix'] or '-'} {quote(entry['name'] or '', safe='')}")
        lines.append(entry["hash"])
    return "\n".join(lines) + "\n"


def _change(secret: KeysSecret, stack: str,
            change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
            done: Callable[[list[dict[str, Any]]], bool]) -> None:
    for _ in range(ATTEMPTS):
        entries = change(parse(secret.read()))
        _refuse_unreadable(entries, stack)
        added = secret.write(render(entries, stack))
        if done(parse(secret.read())):
            _destroy_older(secret, added)
            return
    raise DeploymentError("the keys secret kept changing under this change",
                          context=f"{ATTEMPTS} tries: other key changes got in between",
                          hint="run the command again")


def _refuse_unreadable(entries: list[dict[str, Any]], stack: str) -> None:
    """ConfigError when the servers would refuse a keys file of ``entries``: they keep the
    keys they read before (so neither this change nor any later one would reach them), and a
    new server does not start."""
    from llmcloud.inference_image.api_keys import is_key_hash, read_key_hashes

    bad = [entry["id"] for entry in entries if not is_key_hash(entry["hash"])]
    context = "the servers refuse a keys file with a line that is not 'sha256:<64 hex " \
              "digits>': they keep the keys they read before, and a new server does not start"
    if bad:
        raise ConfigError(f"the keys secret of stack '{stack}' holds lines the servers cannot "
                          f"read: {', '.join(bad)}", context=context,
                          hint=f"llmcloud keys revoke {bad[0]} --provider gcp --stack {stack}")
    try:
        read_key_hashes(render(entries, stack), "the keys secret")
    except ValueError as error:
        raise ConfigError(f"the keys secret of stack '{stack}' would not be read by the "
                          "servers", context=f"{error}; {context}",
                          hint=f"llmcloud keys list --provider gcp --stack {stack}") from None


def _destroy_older(secret: KeysSecret, added: int | None) -> None:
    # the change is in place either way: a refusal here must not hide a new key, which is
    # shown only once, so it is a warning
    if added is None:
        return
    try:
        secret.destroy_before(added)
    except DeploymentError as error:
        logging.getLogger(__name__).warning(
            "llmcloud: the keys changed, but older versions of the keys secret were not "
            "destroyed and are still billed (%s: %s); grant "
            "roles/secretmanager.secretVersionManager on the secret, or run `gcloud secrets "
            "versions destroy`", error.message, error.context)


def _version_number(name: Any) -> int | None:
    """The number at the end of a version's name (`projects/*/secrets/*/versions/7`)."""
    last = str(name or "").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else None


def _entry(line: str, note: list[str] | None) -> dict[str, Any]:
    if note is not None and len(note) == 4:
        key_id, created, prefix, name = note
        return {"id": key_id, "name": unquote(name),
                "prefix": None if prefix == "-" else prefix,
                "created": int(created) if created.isdigit() else None, "hash": line}
    return {"id": "sha256-" + line[len("sha256:"):][:12].lower(), "name": "", "prefix": None,
            "created": None, "hash": line}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "name": record["name"], "prefix": record["prefix"],
            "created": record["created"], "admin": False}


def _raise_for(response: Any, doing: str) -> None:
    raise_for(response, "Secret Manager", doing,
              hint="check that your credentials may read, add and destroy versions of the "
                   "stack's keys secret (roles/secretmanager.secretVersionManager and "
                   "secretAccessor)")
