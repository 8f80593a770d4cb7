"""The claim an upload puts on a model version while it writes the version's files.

A hidden object beside the files (`.upload-claim.json`), created only where there is none,
names the content the upload writes: an upload of other content stops before it writes a
file over this one's, and one of the same content (a second run, or a resumed one) goes
ahead. The manifest, written last and conditionally too, then keeps the version.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from llmcloud.inference_image.manifest import UPLOAD_CLAIM_NAME
from llmcloud.providers.model_stores import read_json, store_call
from llmcloud.stacks.errors import DeploymentError

#: the claim of an upload in progress (hidden: manifests leave such files out; a server
#: refuses a folder that has one and no manifest: the runtime's name for it)
CLAIM = UPLOAD_CLAIM_NAME


class Claim:
    """The mark an upload leaves on a version it is writing (a hidden object beside the
    files, created only where there is none): the content it is writing, so that an upload
    of other content stops before it writes a file over this one's, and one of the same
    content (a second run, or a resumed one) goes ahead."""

    def __init__(self, store, prefix: str, target: str, version_of: str,
                 manifest: dict[str, Any]):
        self.store, self.target, self.version_of = store, target, version_of
        self.key = prefix + CLAIM
        self.content = content_id(manifest)
        self.document = {"content": self.content, "upload": uuid.uuid4().hex,
                         "started": manifest["created"]}
        self.mine = False

    def join(self) -> None:
        """Claim the version, or share the claim of an upload of the same content;
        `DeploymentError` if an upload of other content holds it."""
        data = json.dumps(self.document).encode()
        for _ in range(5):
            # read first: a store that ignored the condition would let both uploads write
            held = store_call(lambda k: read_json(self.store, k), self.key, self.target)
            if held is None:
                if store_call(lambda k: self.store.create(k, data), self.key, self.target):
                    self.mine = True
                    return
                continue  # claimed meanwhile: read whose it is
            if held.get("content") == self.content:
                return
            raise DeploymentError(
                f"another upload of {self.version_of} with other content is unfinished "
                f"at {self.target}",
                context="it runs now, or was interrupted; two uploads of one version "
                        "would mix their files",
                hint="upload yours as a new version; or, when no other upload runs, "
                     "replace the unfinished one with --force")
        raise DeploymentError(f"could not claim {self.version_of} at {self.target}",
                              context="other uploads claimed and let go of it meanwhile",
                              hint="run the upload again")

    def take(self) -> None:
        """Claim the version whoever holds it (`--force`)."""
        store_call(lambda k: self.store.put_bytes(k, json.dumps(self.document).encode()),
              self.key, self.target)
        self.mine = True

    def release(self) -> None:
        store_call(self.store.delete, self.key, self.target)
        self.mine = False

    def release_if_mine(self) -> None:
        if self.mine:
            self.release()


def content_id(manifest: Any) -> str:
    """What a version holds: its files' paths, sizes and hashes (not when it was made)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    listing = sorted((str(e.get("path")), e.get("size"), e.get("sha256"))
                     for e in files or [] if isinstance(e, dict))
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
