"""Turning ``--model SRC`` into a verified local folder.

SRC is a local folder, a bucket folder (``s3://``, ``gs://``, ``az://``) written by
`llmcloud model upload`, or a Hugging Face hub id. Bucket models are downloaded once into
the cache folder and checked file by file against the manifest beside them; a local folder
with a manifest is checked too. Any difference refuses to start.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bucket_stores import BucketStore, bucket_key_prefix, open_store
from .manifest import (
    MANIFEST_NAME,
    UPLOAD_CLAIM_NAME,
    ManifestMismatch,
    check_manifest,
    file_sha256,
    verify_folder,
)

log = logging.getLogger("llmcloud.model_source")

BUCKET_SCHEMES = ("s3://", "gs://", "az://")
_LEGACY_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


class ModelSourceError(RuntimeError):
    """The model cannot be fetched or does not match its manifest."""


@dataclass
class ResolvedModel:
    """A local folder ready to load, with what its manifest says (if it has one)."""

    folder: Path
    name: str
    version: str | None


def default_cache_dir() -> Path:
    """``$LLMCLOUD_MODEL_CACHE``, else ``~/.cache/llmcloud/models``."""
    configured = os.environ.get("LLMCLOUD_MODEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "llmcloud" / "models"


def resolve(source: str, *, version: str | None = None, cache_dir: Path | None = None,
            store: BucketStore | None = None) -> ResolvedModel:
    """Fetch (if needed) and verify the model named by ``source``.

    ``version``, when given, must equal the manifest's version. ``store`` overrides the
    bucket client (tests pass an in-process fake).
    """
    cache_dir = cache_dir or default_cache_dir()
    if source.startswith(BUCKET_SCHEMES):
        return _from_bucket(source, version, cache_dir, store)
    local = Path(source).expanduser()
    if local.exists():
        return _from_folder(local, version)
    if source.startswith(("/", ".", "~")) or "://" in source:
        raise ModelSourceError(f"model folder not found: {source}")
    return _from_hub(source, version, cache_dir)


def resolve_adapter(model_folder: Path, source: str, cache_dir: Path | None = None) -> Path:
    """The local folder of a LoRA adapter's ``source``: a folder inside the model's own
    (shipped in the model version: verified by its manifest, rolled out and back with it),
    else a local folder, a bucket folder or a hub id, fetched and verified like a model."""
    inside = model_folder / source
    if not Path(source).is_absolute() and "://" not in source and inside.is_dir():
        return inside
    return resolve(source, cache_dir=cache_dir).folder


def _from_folder(folder: Path, version: str | None) -> ResolvedModel:
    if not folder.is_dir():
        raise ModelSourceError(f"{folder} is not a folder")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        if (folder / UPLOAD_CLAIM_NAME).is_file():
            # `model upload` writes the manifest last (and `--force` deletes it first): its
            # files now are a part of the version, or a mix of two uploads
            raise ModelSourceError(
                f"{folder} is an unfinished upload of a model version: it has an upload's "
                f"claim ({UPLOAD_CLAIM_NAME}) and no {MANIFEST_NAME} yet; let the upload "
                "end, or run `llmcloud model upload` again to finish it")
        log.info("no %s in %s; loading without checksum verification", MANIFEST_NAME, folder)
        return ResolvedModel(folder, folder.name, version)
    manifest = _parse(manifest_path.read_bytes(), str(manifest_path))
    _check_version(manifest, version, str(folder))
    _verify(folder, manifest, str(folder), exactly=True)
    return ResolvedModel(folder, manifest.get("name") or folder.name, manifest.get("version"))


def _from_bucket(url: str, version: str | None, cache_dir: Path,
                 store: BucketStore | None) -> ResolvedModel:
    prefix = url.split("://", 1)[1].strip("/")
    try:
        key_prefix = bucket_key_prefix(url)
        store = store or open_store(url)
    except (ImportError, ValueError, PermissionError) as exc:
        raise ModelSourceError(str(exc)) from exc
    try:
        raw = store.read_bytes(key_prefix + MANIFEST_NAME)
    except FileNotFoundError as exc:
        raise ModelSourceError(
            f"{url}/{MANIFEST_NAME} not found: upload the model with `llmcloud model upload`, "
            "which writes the checksums the server verifies"
        ) from exc
    except PermissionError as exc:
        raise ModelSourceError(f"cannot read {url}: {exc}") from exc
    manifest = _prefer_safetensors(_parse(raw, f"{url}/{MANIFEST_NAME}"))
    _check_version(manifest, version, url)
    folder = cache_dir / url.split("://", 1)[0] / prefix
    if folder.is_dir() and not _writable(cache_dir, folder):
        return _from_read_only_cache(folder, manifest, url, prefix)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelSourceError(f"cannot create the model's cache folder {folder} (the cache "
                               f"is {cache_dir}, set by --cache-dir or LLMCLOUD_MODEL_CACHE): "
                               f"{exc}") from exc
    # One server at a time fills a cache folder: replicas (the local provider's, or servers
    # sharing a cache volume) started together downloaded every file each, and the first
    # to finish deleted the others' part files as leftovers of a killed start.
    with _exclusive(cache_dir, folder):
        _hold_in_use(cache_dir, folder)
        # Older versions go before anything downloads: the servers' disks hold the model
        # twice (this version and the previous one, for a rollback), and every promote on a
        # long-lived disk (the local provider's cache, a server restarted in place) added one.
        _remove_older_versions(cache_dir, folder, manifest)
        # A killed start's part files go first: left until a download succeeded, they took
        # the room it needed on a disk that holds the model once, at every start after.
        _remove_unlisted(folder, manifest)
        for entry in manifest["files"]:
            target = folder / entry["path"]
            if target.is_file() and target.stat().st_size == entry["size"] \
                    and file_sha256(target) == entry["sha256"]:
                continue  # read once a start (a second, whole check doubled start times)
            _download(store, url, key_prefix, folder, entry)
        (folder / MANIFEST_NAME).write_bytes(raw)
    return ResolvedModel(folder, manifest.get("name") or prefix.rsplit("/", 1)[-1],
                         manifest.get("version"))


def _writable(cache_dir: Path, folder: Path) -> bool:
    """Whether this server may fill ``folder`` (and take its lock): the model's folder, and
    the lock folder or the cache that would hold it, writable (a read-only mount says no)."""
    locks = cache_dir / ".locks"
    return os.access(folder, os.W_OK) and os.access(locks if locks.is_dir() else cache_dir,
                                                    os.W_OK)


def _from_read_only_cache(folder: Path, manifest: dict[str, Any], url: str,
                          prefix: str) -> ResolvedModel:
    """A model from a cache this server cannot write (a baked image, a read-only volume):
    used as it is if it holds exactly the manifest's files, each matching; refused with what
    is wrong otherwise, as nothing can be downloaded into it."""
    log.info("the model cache %s is read-only: checking the model it holds", folder)
    try:
        verify_folder(folder, manifest, exactly=True)
    except ManifestMismatch as exc:
        raise ModelSourceError(
            f"the model cache folder {folder} is read-only and does not hold a complete, "
            f"verified copy of {url} ({exc}): make the cache writable so the server can "
            "download it, or fill it with the model beforehand") from exc
    return ResolvedModel(folder, manifest.get("name") or prefix.rsplit("/", 1)[-1],
                         manifest.get("version"))


def _download(store: BucketStore, url: str, key_prefix: str, folder: Path,
              entry: dict[str, Any]) -> None:
    """Download one manifest entry beside its place and rename it there once its sha256
    matches: a crash, a full disk or a corrupt copy never leaves a file under its name."""
    target = folder / entry["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s/%s (%d bytes)", url, entry["path"], entry["size"])
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    os.close(handle)
    try:
        store.download(key_prefix + entry["path"], Path(temp))
        actual = file_sha256(temp)
        if actual != entry["sha256"]:
            raise ModelSourceError(
                f"model at {url} does not match its manifest: {entry['path']}: sha256 "
                f"mismatch, manifest says {entry['sha256']}, file has {actual}")
        os.replace(temp, target)
    except OSError as exc:  # missing, refused, or the cache's disk full or unwritable
        room = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            room = (f" ({shutil.disk_usage(folder).free} bytes free; the file needs "
                    f"{entry['size']})")
        raise ModelSourceError(f"cannot download {url}/{entry['path']} into {folder}: "
                               f"{exc}{room}") from exc
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _lock_path(cache_dir: Path, folder: Path, suffix: str) -> Path:
    """A cache folder's lock file, under ``cache_dir/.locks`` (outside every model folder):
    ``.lock`` for filling it, ``.in-use`` for the servers that loaded it."""
    locks = cache_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(folder.relative_to(cache_dir).as_posix().encode()).hexdigest()
    return locks / f"{name[:32]}{suffix}"


@contextmanager
def _exclusive(cache_dir: Path, folder: Path) -> Iterator[None]:
    """Hold the lock of a cache folder (the kernel releases it when a holder dies)."""
    import fcntl

    with open(_lock_path(cache_dir, folder, ".lock"), "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another server downloading into %s", folder)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


#: the in-use locks this process holds (shared, one per cache folder), until it exits
_IN_USE: dict[Path, Any] = {}

#: the versions of a model a cache keeps: the one loading and the one before it
KEPT_VERSIONS = 2


def _hold_in_use(cache_dir: Path, folder: Path) -> None:
    """Mark ``folder`` as used by this process for as long as it runs (a shared lock the
    kernel drops when the process ends): no other server prunes it meanwhile."""
    import fcntl

    if folder in _IN_USE:
        return
    lock = open(_lock_path(cache_dir, folder, ".in-use"), "a+b")  # noqa: SIM115 - held
    fcntl.flock(lock, fcntl.LOCK_SH)
    _IN_USE[folder] = lock


def _remove_older_versions(cache_dir: Path, folder: Path, manifest: dict[str, Any]) -> None:
    """Delete the cached versions of this model (``folder``'s siblings whose manifest names
    the same model) beyond the newest ``KEPT_VERSIONS`` counting this one, newest by when a
    server last started with each (it rewrites the manifest); never one that a running
    server uses or that one is filling. A version that cannot be removed is left, said."""
    name = manifest.get("name")
    if not name:
        return
    others = []
    for sibling in folder.parent.iterdir():
        sibling_manifest = sibling / MANIFEST_NAME
        if sibling == folder or sibling.name.startswith(".") \
                or not sibling_manifest.is_file():
            continue
        try:
            if json.loads(sibling_manifest.read_bytes()).get("name") != name:
                continue
            others.append((sibling_manifest.stat().st_mtime, sibling))
        except (OSError, ValueError, AttributeError):
            continue  # not a manifest this server wrote: not a version of this model
    others.sort(reverse=True)
    for _, old in others[KEPT_VERSIONS - 1:]:
        _remove_unused(cache_dir, old)


def _remove_unused(cache_dir: Path, old: Path) -> None:
    import fcntl

    try:
        with open(_lock_path(cache_dir, old, ".lock"), "a+b") as filling, \
                open(_lock_path(cache_dir, old, ".in-use"), "a+b") as in_use:
            try:
                fcntl.flock(filling, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(in_use, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("keeping %s: a running server uses it", old)
                return
            log.info("removing %s: an older version of the model than the two kept", old)
            (old / MANIFEST_NAME).unlink()  # first: a part-removed folder is no version
            shutil.rmtree(old)
    except OSError as exc:
        log.warning("could not remove the older model version %s: %s", old, exc)


def hub_offline(environ) -> bool:
    """Whether the Hugging Face hub is offline, read as the hub reads it: HF_HUB_OFFLINE (or
    TRANSFORMERS_OFFLINE) set to 1, ON, YES or TRUE. (Listing a repo's files where it is
    offline failed for a model it has cached.)"""
    setting = environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE")
    return (setting or "").upper() in ("1", "ON", "YES", "TRUE")


def _from_hub(repo_id: str, version: str | None, cache_dir: Path) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError

    offline = hub_offline(os.environ)
    ignore = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.gguf"]
    try:
        if not offline:
            from huggingface_hub import list_repo_files

            files = list_repo_files(repo_id, revision=version)
            if any(f.endswith(".safetensors") for f in files):
                ignore += ["*.bin", "*.pt", "*.pth"]
        folder = snapshot_download(repo_id, revision=version, cache_dir=cache_dir / "hub",
                                   ignore_patterns=ignore)
    except (HfHubHTTPError, OSError, ValueError) as exc:
        why = " (offline mode, HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, is set and it is not " \
            "cached)" if offline else ""
        raise ModelSourceError(f"cannot fetch {repo_id} from the hub{why}: {exc}") from exc
    return ResolvedModel(Path(folder), repo_id.rsplit("/", 1)[-1], version)


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
        check_manifest(manifest)
    except (ValueError, ManifestMismatch) as exc:
        raise ModelSourceError(f"{where}: invalid manifest: {exc}") from exc
    return manifest


def _prefer_safetensors(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without the legacy weight files of folders that have safetensors too
    (folder by folder: an adapter's safetensors must not drop the model's own .bin)."""
    with_safetensors = {e["path"].rpartition("/")[0] for e in manifest["files"]
                        if e["path"].endswith(".safetensors")}
    files = [e for e in manifest["files"] if not (
        e["path"].endswith(_LEGACY_WEIGHTS)
        and e["path"].rpartition("/")[0] in with_safetensors)]
    return {**manifest, "files": files}


def _remove_unlisted(folder: Path, manifest: dict[str, Any]) -> None:
    """Delete what a cache folder holds beyond ``manifest``: files of an earlier upload of
    the version (`--force`), which transformers would load unchecked, and the partial
    downloads a killed start left behind (each up to a weight file's size)."""
    listed = {entry["path"] for entry in manifest["files"]} | {MANIFEST_NAME}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.relative_to(folder).as_posix() not in listed:
                log.info("removing %s: not in the manifest of %s", path, folder)
                path.unlink(missing_ok=True)


def _check_version(manifest: dict[str, Any], version: str | None, where: str) -> None:
    if version and manifest.get("version") and manifest["version"] != version:
        raise ModelSourceError(
            f"{where} holds version {manifest['version']!r}, but --model-version is {version!r}"
        )


def _verify(folder: Path, manifest: dict[str, Any], where: str,
            exactly: bool = False) -> None:
    try:
        verify_folder(folder, manifest, exactly=exactly)
    except ManifestMismatch as exc:
        raise ModelSourceError(f"model at {where} does not match its manifest: {exc}") from exc
