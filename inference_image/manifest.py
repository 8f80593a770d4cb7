"""The model-store manifest: what `llmcloud model upload` writes beside a model.

``manifest.json`` = ``{"format": 1, "name", "version", "created" (ISO-8601 UTC),
"files": [{"path" (relative, posix), "sha256" (hex), "size" (bytes)}]}``; the manifest
itself is not listed. The runtime verifies a downloaded model against it before loading.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
#: what an upload keeps beside a version's files while it writes them, until the manifest is
#: written (`providers/upload_claim.py`): a folder with it and no manifest is unfinished
UPLOAD_CLAIM_NAME = ".upload-claim.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class ManifestMismatch(ValueError):
    """A folder does not match its manifest: a file is missing, resized or altered."""


def file_sha256(path: Path | str) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks (weights can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(folder: Path, name: str, version: str) -> dict[str, Any]:
    """Describe every file under ``folder`` (except the manifest) with its sha256 and size.

    Linked folders are followed, as linked files are: an adapter folder linked into the
    model was left out before, and a server then took its path for a hub id. Hidden
    folders and files (``.git``, whose LFS objects repeat every weight; ``.cache``) are not
    part of a model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"model folder not found: {folder}")
    files = []
    for path in sorted(model_files(folder)):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST_NAME:
            continue
        files.append({"path": relative, "sha256": file_sha256(path), "size": path.stat().st_size})
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "files": files,
    }


def model_files(folder: Path, broken: list[Path] | None = None) -> list[Path]:
    """The files of a model folder: linked folders followed (each real folder once), hidden
    ones (a leading '.') left out. Links to nothing are no files: ``broken``, when given,
    receives them (an upload refuses them rather than leave a weight file out unsaid)."""
    found, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / n for n in names
                  if not n.startswith(".") and (Path(root) / n).is_file()]
        if broken is not None:
            broken += [Path(root) / n for n in names
                       if not n.startswith(".") and not (Path(root) / n).exists()]
    return found


def check_manifest(manifest: Any) -> None:
    """Raise ``ManifestMismatch`` unless ``manifest`` has the documented shape and format."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestMismatch(
            f"unsupported manifest: expected an object with \"format\": {MANIFEST_FORMAT}"
        )
    files = manifest.get("files")
    if not isinstance(files, list):
        raise ManifestMismatch("manifest has no \"files\" list")
    for entry in files:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
        ):
            raise ManifestMismatch(f"malformed manifest entry: {entry!r}")
        path = entry["path"]
        if path.startswith("/") or ".." in path.split("/"):
            raise ManifestMismatch(f"manifest entry escapes the model folder: {path}")


def verify_folder(folder: Path, manifest: dict[str, Any], *, exactly: bool = False) -> None:
    """Check every file the manifest lists; raise ``ManifestMismatch`` on the first difference.

    The message names the file and both hashes, or says the file is missing. With
    ``exactly``, a file the manifest does not list is a difference too: transformers would
    load it (an old `model.safetensors` beside the listed `pytorch_model.bin`), unchecked.
    """
    check_manifest(manifest)
    folder = Path(folder)
    if exactly:
        listed = {entry["path"] for entry in manifest["files"]} | {MANIFEST_NAME}
        extra = sorted(p.relative_to(folder).as_posix() for p in model_files(folder)
                       if p.relative_to(folder).as_posix() not in listed)
        if extra:
            raise ManifestMismatch(f"{', '.join(extra[:5])}: in {folder} but not in its "
                                   "manifest")
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file():
            raise ManifestMismatch(f"{entry['path']}: missing from {folder}")
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            raise ManifestMismatch(
                f"{entry['path']}: sha256 mismatch, manifest says {entry['sha256']}, "
                f"file has {actual}"
            )
