"""Upload a model folder to a model store as `<store>/<name>/<version>/` with its manifest.

The manifest (sha256 and size per file) is written last, and only where there is none (a
conditional write): a version without one is an unfinished upload, and uploading it again
resumes — files already there with the same hash are skipped. A version with a manifest is
never changed unless `force`: uploading the same content again succeeds and changes
nothing, other content is refused. While an upload writes a version's files, a claim beside
them (`.upload-claim.json`, created conditionally too) names the content it writes: an upload
of other content stops before it writes a file, so no manifest is ever written over a mix of
two uploads' files.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmcloud.providers.model_stores import read_json, store_call
from llmcloud.providers.upload_claim import Claim, content_id
from llmcloud.stacks.errors import (
    ConfigError,
    CredentialsError,
    DeploymentError,
    MissingToolError,
    install_hint,
)

MANIFEST = "manifest.json"


def version_uri(store_uri: str, name: str, version: str) -> str:
    """Where a version lives: `<store>/<name>/<version>`; a bare bucket gets `models/`."""
    return f"{model_uri(store_uri, name)}/{version}"


def model_uri(store_uri: str, name: str) -> str:
    """Where the versions of model `name` live: `<store>/<name>` (`models/` in a bare
    bucket), the folder `version_uri` puts each version in."""
    parsed = urlparse(store_uri)
    base = store_uri.rstrip("/")
    if parsed.scheme in ("s3", "gs") and not parsed.path.strip("/"):
        base += "/models"
    if parsed.scheme == "az" and "/" not in parsed.path.strip("/"):
        base += "/models"
    return f"{base}/{name}"


def check_model_folder(folder: Path) -> None:
    """Refuse a folder the server could not load (no config.json, or no weights
    transformers reads at its top level): every server would fail at its start."""
    from llmcloud.inference_image.model_files import unloadable_reason

    reason = unloadable_reason(folder)
    if reason is not None:
        raise ConfigError(
            reason,
            context="the servers load a model folder with transformers' from_pretrained",
            hint="save the model with model.save_pretrained(FOLDER) and its tokenizer "
                 "beside it (a .gguf or .pt file alone is not such a folder)",
        )


def upload_model(
    folder: Path,
    store_uri: str,
    *,
    name: str,
    version: str,
    force: bool = False,
    workers: int = 4,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Upload `folder`; return what was done. `on_progress(file, bytes_done, bytes_total)`."""
    from llmcloud.inference_image import manifest as manifests
    from llmcloud.providers.model_stores import FolderStore, open_writable_store

    folder = Path(folder)
    check_model_folder(folder)
    # Each file as it was before its hash was taken: one that changes afterwards would be
    # sent under the hash of its old content, and every server would refuse the version.
    # (not a manifest.json of its own, which the manifest leaves out: a version folder as a
    # store or a server's cache keeps it was refused as "other content" when uploaded again)
    broken: list[Path] = []
    before = {p.relative_to(folder).as_posix(): _fingerprint(p)
              for p in manifests.model_files(folder, broken)
              if p.relative_to(folder).as_posix() != MANIFEST}
    if broken:
        raise ConfigError(
            f"{broken[0]} is a link to {os.readlink(broken[0])}, which does not exist"
            if broken[0].is_symlink() else f"{broken[0]} disappeared while it was read",
            context="a broken link would leave the file out of the model version",
            hint="copy the model folder with the files themselves (cp -L), or fix the link",
        )
    target = version_uri(store_uri, name, version)
    try:
        store, prefix = open_writable_store(target)
    except ValueError as exc:  # not a store URI (ftp://, s3:// with no bucket, ...)
        raise ConfigError(str(exc), hint="--to s3://BUCKET, gs://BUCKET, "
                          "az://ACCOUNT/CONTAINER or a folder") from None
    except ImportError as exc:
        raise MissingToolError(str(exc), hint=install_hint("aws,gcp,azure")) from None
    except PermissionError as exc:  # no credentials for the store's SDK (it was a "bug")
        raise CredentialsError(str(exc), hint="sign in for the store's cloud (aws configure, "
                               "gcloud auth application-default login, az login)") from None
    version_of = f"version {version} of {name}"
    existing = store_call(lambda k: read_json(store, k), prefix + MANIFEST, target)
    if existing is not None and not force and not _same_listing(existing, before):
        raise _exists(version_of, target)  # (before any file is hashed)
    try:
        manifest = manifests.build_manifest(folder, name, version)
    except OSError as exc:  # a file the user cannot read (it was "a bug in llmcloud")
        raise ConfigError(f"cannot read {exc.filename or folder}: {exc.strerror or exc}",
                          hint="check the model folder's files and their permissions") from None
    total = sum(entry["size"] for entry in manifest["files"])
    result = {"uri": target, "name": name, "version": version, "files": len(manifest["files"]),
              "uploaded": 0, "skipped": len(manifest["files"]), "bytes": total,
              "overwritten": existing is not None, "unchanged": False}
    claim = Claim(store, prefix, target, version_of, manifest)
    if force:
        claim.take()
        if existing is not None:
            # Overwriting: the old manifest goes first, so no server loads a mix of the two
            # uploads meanwhile (it finds no manifest and says so), and an interrupted
            # overwrite is run again like any interrupted upload.
            store_call(store.delete, prefix + MANIFEST, target)
    else:
        if existing is None:
            claim.join()
            # a version finished between the first look and the claim: its upload let go
            # of the claim only once its manifest was written
            existing = store_call(lambda k: read_json(store, k), prefix + MANIFEST, target)
        if existing is not None:
            claim.release_if_mine()
            if not _same_files(existing, manifest):
                raise _exists(version_of, target)
            return {**result, "overwritten": False, "unchanged": True}
    done = [0]

    def advance(path: str, count: int) -> None:
        done[0] += count
        if on_progress is not None:
            on_progress(path, done[0], total)

    def send(entry: dict[str, Any]) -> bool:
        key = prefix + entry["path"]
        # (not when overwriting: a file's sha256 metadata says what was meant to be sent,
        # and a file changed during an earlier upload would never be sent again)
        info = None if force else store_call(store.head, key, target)
        if info is not None and info.size == entry["size"] and info.sha256 == entry["sha256"]:
            advance(entry["path"], entry["size"])
            return False
        local = folder / entry["path"]

        def upload(k: str) -> None:
            try:
                store.upload(local, k, entry["sha256"], lambda n: advance(entry["path"], n))
            except OSError as exc:  # the model's file, not the store (it was "does not exist")
                if exc.filename is None or str(exc.filename) != str(local):
                    raise
                raise DeploymentError(f"cannot read {local}: {exc.strerror or exc}",
                                      hint="check the model folder, then run the upload "
                                      "again") from None

        store_call(upload, key, target)
        now = _fingerprint(local)
        if now != before.get(entry["path"]) and (
                now is None or manifests.file_sha256(local) != entry["sha256"]):
            # what was sent is not what the manifest says; its sha256 metadata would let a
            # later upload skip it (unless it is the file itself: a folder uploaded onto
            # itself)
            if not (isinstance(store, FolderStore) and store.path_of(key) == local.resolve()):
                store_call(store.delete, key, target)
            claim.release_if_mine()  # the next run, with the file as it is now, claims anew
            raise DeploymentError(
                f"{local} changed while it was being uploaded",
                context="its sha256 in the manifest is of its content before; no manifest "
                        "was written",
                hint="run the upload again once nothing writes to the model folder",
            )
        return True

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        sent = list(pool.map(send, manifest["files"]))
    # No file of an earlier upload stays: a folder is loaded as it is, and a bucket's old
    # objects would only cost storage (servers fetch what the manifest lists)
    store_call(lambda p: store.prune(p, {prefix + e["path"] for e in manifest["files"]}
                                | {claim.key}), prefix, target)
    data = json.dumps(manifest, indent=2).encode()
    if force:
        store_call(lambda k: store.put_bytes(k, data), prefix + MANIFEST, target)
    elif not store_call(lambda k: store.create(k, data), prefix + MANIFEST, target):
        # another upload of the same content (the only one the claim lets run beside this
        # one) wrote it first: the version is as this upload would have left it
        written = store_call(lambda k: read_json(store, k), prefix + MANIFEST, target)
        if written is None or not _same_files(written, manifest):
            raise _exists(version_of, target)
    # from here the manifest keeps the version (an upload that claims it next finds it):
    # a claim left behind by a failure here is harmless
    with contextlib.suppress(DeploymentError):
        claim.release()
    return {**result, "uploaded": sum(sent), "skipped": len(sent) - sum(sent)}


def _listing(manifest: Any) -> list[tuple[str, Any]]:
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return sorted((str(e.get("path")), e.get("size")) for e in files or []
                  if isinstance(e, dict))


def _same_listing(manifest: Any, before: dict[str, tuple[int, int, int] | None]) -> bool:
    """Whether ``manifest`` lists the files of the folder with their sizes."""
    return _listing(manifest) == sorted((path, f[0] if f else None)
                                        for path, f in before.items())


def _same_files(a: Any, b: dict[str, Any]) -> bool:
    return content_id(a) == content_id(b)


def _exists(version_of: str, target: str) -> DeploymentError:
    return DeploymentError(
        f"{version_of} exists already at {target}",
        context="with other content; model versions are immutable: stacks may be serving "
                "this one",
        hint="upload it as a new version, or overwrite it with --force",
    )


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    """What tells that a file changed: its size, modification time and inode."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino
