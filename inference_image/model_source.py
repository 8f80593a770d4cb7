"""Turning ``--model SRC`` into a verified local folder.

SRC is a local folder, a bucket folder (``s3://``, ``gs://``, ``az://``) written by
`llmcloud model upload`, or a Hugging Face hub id. Bucket models are downloaded once into
the cache folder and checked file by file against the manifest beside them; a local folder
with a manifest is checked too. Any difference refuses to start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bucket_stores import BucketStore, bucket_key_prefix, open_store
from .manifest import MANIFEST_NAME, ManifestMismatch, check_manifest, file_sha256, verify_folder

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
    folder.mkdir(parents=True, exist_ok=True)
    for entry in manifest["files"]:
        target = folder / entry["path"]
        if target.is_file() and target.stat().st_size == entry["size"] \
                and file_sha256(target) == entry["sha256"]:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s/%s (%d bytes)", url, entry["path"], entry["size"])
        # Download beside the target and rename, so a crash never leaves a half file that
        # a later start would have to re-verify and a concurrent reader could load.
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        os.close(handle)
        try:
            store.download(key_prefix + entry["path"], Path(temp))
            os.replace(temp, target)
        except (FileNotFoundError, PermissionError) as exc:
            raise ModelSourceError(f"cannot download {url}/{entry['path']}: {exc}") from exc
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    _verify(folder, manifest, url)
    _remove_unlisted(folder, manifest)
    (folder / MANIFEST_NAME).write_bytes(raw)
    return ResolvedModel(folder, manifest.get("name") or prefix.rsplit("/", 1)[-1],
                         manifest.get("version"))


def _from_hub(repo_id: str, version: str | None, cache_dir: Path) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError

    ignore = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.gguf"]
    try:
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
            from huggingface_hub import list_repo_files

            files = list_repo_files(repo_id, revision=version)
            if any(f.endswith(".safetensors") for f in files):
                ignore += ["*.bin", "*.pt", "*.pth"]
        folder = snapshot_download(repo_id, revision=version, cache_dir=cache_dir / "hub",
                                   ignore_patterns=ignore)
    except (HfHubHTTPError, OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE is set and it is not cached)" \
            if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelSourceError(f"cannot fetch {repo_id} from the hub{offline}: {exc}") from exc
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
