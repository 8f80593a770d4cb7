"""The local bucket: `models/<name>/<version>/` folders with the clouds' `manifest.json`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmcloud.inference_image.manifest import (
    MANIFEST_NAME,
    ManifestMismatch,
    build_manifest,
    verify_folder,
)
from llmcloud.stacks.errors import ConfigError, DeploymentError


class ModelStore:
    """A folder acting as the stack's model bucket; versions are immutable unless forced."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / name / version

    def has(self, name: str, version: str) -> bool:
        return (self.version_dir(name, version) / MANIFEST_NAME).is_file()

    def versions(self, name: str) -> list[str]:
        """The versions of `name` in the store, oldest upload first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if (p / MANIFEST_NAME).is_file()]
        return [p.name for p in sorted(found, key=lambda p: (p / MANIFEST_NAME).stat().st_mtime)]

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        return json.loads((self.version_dir(name, version) / MANIFEST_NAME).read_text())

    def upload(
        self, folder: Path, *, name: str, version: str, force: bool = False
    ) -> dict[str, Any]:
        """Copy `folder` into the store with its manifest; refuse to change a version unless
        `force`. Uploading identical content again is a no-op."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(
                f"model folder not found: {folder}",
                hint="pass a folder holding config.json and the weights",
            )
        target = self.version_dir(name, version)
        manifest = build_manifest(folder, name, version)
        if self.has(name, version):
            if _same_files(self.manifest(name, version), manifest) and not force:
                return self._result(target, name, version, manifest, uploaded=False)
            if not force:
                raise ConfigError(
                    f"model {name} version {version} already exists with other content",
                    context=f"versions are immutable: {target}",
                    hint=f"upload a new version (--version {_next(version)}) or pass --force",
                )
        self.root.joinpath(name).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root / name, prefix=f".{version}-"))
        try:
            for entry in manifest["files"]:
                destination = staging / entry["path"]
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / entry["path"], destination)
            try:
                verify_folder(staging, manifest)
            except ManifestMismatch as exc:
                raise DeploymentError(
                    f"the copy of {folder} does not match its checksums",
                    context=str(exc),
                    hint="the source changed while copying; upload again",
                ) from exc
            (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
            if target.exists():
                old = target.with_name(f".{version}-old")
                os.replace(target, old)
                shutil.rmtree(old)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return self._result(target, name, version, manifest, uploaded=True)

    @staticmethod
    def _result(target: Path, name: str, version: str, manifest: dict, uploaded: bool) -> dict:
        return {
            "uri": str(target),
            "name": name,
            "version": version,
            "files": len(manifest["files"]),
            "bytes": sum(entry["size"] for entry in manifest["files"]),
            "uploaded": uploaded,
        }


def _same_files(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(m: dict[str, Any]) -> list:
        return sorted((e["path"], e["sha256"]) for e in m["files"])

    return key(a) == key(b)


def _next(version: str) -> str:
    head = version.rstrip("0123456789")
    tail = version[len(head):]
    return f"{head}{int(tail) + 1}" if tail else f"{version}-2"
