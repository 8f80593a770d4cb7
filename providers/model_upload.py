"""Upload a model folder to a model store as `<store>/<name>/<version>/` with its manifest.

The manifest (sha256 and size per file) is written last: a version without one is an
unfinished upload, and uploading it again resumes — files already there with the same hash
are skipped. A version with a manifest is never overwritten unless `force`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmcloud.stacks.errors import (
    ConfigError,
    CredentialsError,
    DeploymentError,
    MissingToolError,
)

MANIFEST = "manifest.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def version_uri(store_uri: str, name: str, version: str) -> str:
    """Where a version lives: `<store>/<name>/<version>`; a bare bucket gets `models/`."""
    parsed = urlparse(store_uri)
    base = store_uri.rstrip("/")
    if parsed.scheme in ("s3", "gs") and not parsed.path.strip("/"):
        base += "/models"
    if parsed.scheme == "az" and "/" not in parsed.path.strip("/"):
        base += "/models"
    return f"{base}/{name}/{version}"


def check_model_folder(folder: Path) -> None:
    """Refuse a folder that is not a saved model (no config, no weights)."""
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"{folder} is not a model folder: it has no config.json",
            hint="save the model with model.save_pretrained(FOLDER) and its tokenizer beside it",
        )
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.rglob("*") if p.is_file()):
        raise ConfigError(
            f"{folder} holds no weights (.safetensors or .bin)",
            hint="save the model with model.save_pretrained(FOLDER)",
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
    broken: list[Path] = []
    before = {p.relative_to(folder).as_posix(): _fingerprint(p)
              for p in manifests.model_files(folder, broken)}
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
        raise MissingToolError(str(exc), hint='pip install "llmcloud[aws,gcp,azure]"') from None
    except PermissionError as exc:  # no credentials for the store's SDK (it was a "bug")
        raise CredentialsError(str(exc), hint="sign in for the store's cloud (aws configure, "
                               "gcloud auth application-default login, az login)") from None
    existing = _call(store.head, prefix + MANIFEST, target)
    if existing is not None and not force:
        raise DeploymentError(
            f"version {version} of {name} exists already at {target}",
            context="model versions are immutable: stacks may be serving this one",
            hint="upload it as a new version, or overwrite it with --force",
        )
    try:
        manifest = manifests.build_manifest(folder, name, version)
    except OSError as exc:  # a file the user cannot read (it was "a bug in llmcloud")
        raise ConfigError(f"cannot read {exc.filename or folder}: {exc.strerror or exc}",
                          hint="check the model folder's files and their permissions") from None
    if existing is not None:
        # Overwriting: the old manifest goes first, so no server loads a mix of the two
        # uploads meanwhile (it finds no manifest and says so), and an interrupted
        # overwrite is run again like any interrupted upload.
        _call(store.delete, prefix + MANIFEST, target)
    total = sum(entry["size"] for entry in manifest["files"])
    done = [0]

    def advance(path: str, count: int) -> None:
        done[0] += count
        if on_progress is not None:
            on_progress(path, done[0], total)

    def send(entry: dict[str, Any]) -> bool:
        key = prefix + entry["path"]
        # (not when overwriting: a file's sha256 metadata says what was meant to be sent,
        # and a file changed during an earlier upload would never be sent again)
        info = None if force else _call(store.head, key, target)
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

        _call(upload, key, target)
        now = _fingerprint(local)
        if now != before.get(entry["path"]) and (
                now is None or manifests.file_sha256(local) != entry["sha256"]):
            # what was sent is not what the manifest says; its sha256 metadata would let a
            # later upload skip it (unless it is the file itself: a folder uploaded onto
            # itself)
            if not (isinstance(store, FolderStore) and store.path_of(key) == local.resolve()):
                _call(store.delete, key, target)
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
    _call(lambda p: store.prune(p, {prefix + e["path"] for e in manifest["files"]}), prefix,
          target)
    _call(lambda k: store.put_bytes(k, json.dumps(manifest, indent=2).encode()),
          prefix + MANIFEST, target)
    return {
        "uri": target,
        "name": name,
        "version": version,
        "files": len(sent),
        "uploaded": sum(sent),
        "skipped": len(sent) - sum(sent),
        "bytes": total,
        "overwritten": existing is not None,
    }


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    """What tells that a file changed: its size, modification time and inode."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _call(fn: Callable[[str], Any], key: str, target: str) -> Any:
    try:
        return fn(key)
    except PermissionError as exc:
        raise DeploymentError(
            f"the model store refused access to {target}",
            context=str(exc),
            hint="check the credentials for the store (aws configure, gcloud auth "
            "application-default login, az login)",
        ) from None
    except FileNotFoundError as exc:
        raise DeploymentError(
            f"the model store {target} does not exist",
            context=str(exc),
            hint="create the stack first (llmcloud up), or check the --to URI",
        ) from None
    except (DeploymentError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the SDKs' own network and service errors, at their boundary
        raise DeploymentError(
            f"the model store {target} could not be reached",
            context=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            hint="check that this machine can reach the store (network rules, private "
            "endpoints) and its credentials",
        ) from None
