"""The local bucket: `models/<name>/<version>/` folders with the clouds' `manifest.json`.

Uploads go through the shared `providers.model_upload` (the same code and manifest as the
clouds' buckets); this module adds what the local provider needs on top: listing versions and
importing `--model FOLDER` on `up`, where uploading identical content again is a no-op.

A version is complete once its manifest is written (last, whole: a hard link to a finished
file) and reads as one; a folder without it, or with one that is not a manifest (a file
system without hard links where the writer died between the name and the bytes), is an
unfinished upload: not listed, not promoted, not kept as a stored version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcloud.inference_image.manifest import MANIFEST_NAME, build_manifest
from llmcloud.providers.model_stores import PARTIAL_SUFFIX
from llmcloud.stacks.errors import ConfigError


class ModelStore:
    """A folder acting as the stack's model bucket; versions are immutable unless forced."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / name / version

    def has(self, name: str, version: str) -> bool:
        """Whether `version` of `name` is in the store, whole (its manifest written)."""
        return _complete(self.version_dir(name, version))

    def holds_any(self) -> bool:
        """Whether any version of any model is in the store (whole: its manifest written)."""
        return any(_complete(p.parent) for p in self.root.glob(f"*/*/{MANIFEST_NAME}"))

    def versions(self, name: str) -> list[str]:
        """The versions of `name` in the store, oldest upload first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if _complete(p)]
        return [p.name for p in sorted(found, key=lambda p: (p / MANIFEST_NAME).stat().st_mtime)]

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        return json.loads((self.version_dir(name, version) / MANIFEST_NAME).read_text())

    def import_folder(self, folder: Path, *, name: str, version: str) -> dict[str, Any]:
        """Make `folder` version `version` of `name`: upload it, or accept an identical copy
        already there; a different copy is refused (versions are immutable)."""
        from llmcloud.providers.model_upload import upload_model

        if self.has(name, version):
            if _same_files(self.manifest(name, version), build_manifest(folder, name, version)):
                return {"uri": str(self.version_dir(name, version)), "uploaded": 0}
            raise ConfigError(
                f"model {name} version {version} in the stack's store differs from {folder}",
                context=f"versions are immutable: {self.version_dir(name, version)}",
                hint=f"serve it as a new version: llmcloud up --model-version {_next(version)}",
            )
        self.drop_unfinished(name, version)
        return upload_model(folder, str(self.root), name=name, version=version)

    def drop_unfinished(self, name: str, version: str) -> None:
        """Delete what an interrupted upload left in the version's folder: its half-copied
        files (hidden `.FILE.<id>.partial`, which no later upload reuses or prunes), and a
        manifest that does not read as one (the upload refused it as another upload's
        version, so the same folder could never finish it). Only while the stack is held
        (`StateFile.operation`): then no other upload writes them."""
        folder = self.version_dir(name, version)
        if not folder.is_dir():
            return
        for path in folder.rglob(f".*{PARTIAL_SUFFIX}"):
            path.unlink(missing_ok=True)
        if (folder / MANIFEST_NAME).exists() and not _complete(folder):
            (folder / MANIFEST_NAME).unlink(missing_ok=True)


def _complete(version_dir: Path) -> bool:
    """Whether the folder holds a manifest that reads as one (a list of files)."""
    try:
        manifest = json.loads((version_dir / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("files"), list)


def _same_files(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(m: dict[str, Any]) -> list:
        return sorted((e["path"], e["sha256"]) for e in m["files"])

    return key(a) == key(b)


def _next(version: str) -> str:
    head = version.rstrip("0123456789")
    tail = version[len(head):]
    return f"{head}{int(tail) + 1}" if tail else f"{version}-2"
