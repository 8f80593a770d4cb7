"""Model stores that can be written: the runtime's read-only bucket stores plus the few
primitives an upload needs (`head`, `upload`, `put_bytes`, `create`), and a local folder
store.

Each object gets its sha256 as metadata when uploaded, so a later upload can skip files that
are already there without downloading them. Every SDK honours its own endpoint setting
(`AWS_ENDPOINT_URL`, `STORAGE_EMULATOR_HOST`, `AZURE_STORAGE_CONNECTION_STRING`), so the same
code talks to the cloud, MinIO, or an emulator; an Azure account named without its host is in
the caller's Azure cloud (`ARM_ENVIRONMENT`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlparse

from llmcloud.inference_image.bucket_stores import (
    AzureStore,
    BucketStore,
    GcsStore,
    S3Store,
    bucket_key_prefix,
)
from llmcloud.stacks.errors import DeploymentError

Progress = Callable[[int], None]
_MULTIPART = 64 * 1024 * 1024
PARTIAL_SUFFIX = ".partial"
_S3_EXISTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
STORE_SCHEMES = ("s3", "gs", "az")


class ObjectInfo(NamedTuple):
    """What a store knows of an object: its size and the sha256 recorded at upload."""

    size: int
    sha256: str | None


class WritableStore(BucketStore, Protocol):
    """A bucket that an upload can write to."""

    def head(self, key: str) -> ObjectInfo | None: ...

    def upload(self, path: Path, key: str, sha256: str, progress: Progress) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if there is no such object: True if this call wrote it, False
        if one was there (or was being written by another writer at the same moment). The
        store decides, in one request: two writers are never both told True."""

    def delete(self, key: str) -> None:
        """Delete ``key``; one that is not there is no error."""

    def prune(self, prefix: str, keep: set[str]) -> None:
        """Delete the objects under ``prefix`` whose keys are not in ``keep``: a version
        overwritten with fewer files keeps none of its old ones."""


class _Pruning:
    """`prune` for the buckets, on their `keys` listing and `delete`."""

    def prune(self, prefix: str, keep: set[str]) -> None:
        if not prefix:  # never a whole bucket: a version always has its own prefix
            return
        for key in self.keys(prefix):
            if key not in keep:
                self.delete(key)


class S3Writer(_Pruning, S3Store):
    """S3: multipart uploads above 64 MiB, parts sent in parallel."""

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=prefix)
        return self._call(prefix, lambda: [item["Key"] for page in pages
                                           for item in page.get("Contents", [])])

    def head(self, key: str) -> ObjectInfo | None:
        try:
            head = self._call(key, lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except FileNotFoundError:
            return None
        return ObjectInfo(head["ContentLength"], head.get("Metadata", {}).get("sha256"))

    def upload(self, path: Path, key: str, sha256: str, progress: Progress) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=_MULTIPART, multipart_chunksize=_MULTIPART,
                                max_concurrency=8)
        self._call(key, lambda: self._client.upload_file(
            str(path), self.bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}},
            Config=config, Callback=progress))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(key, lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        def put() -> bool:
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                # 412: the key exists; 409: another conditional write of it is under way
                if exc.response.get("Error", {}).get("Code") in _S3_EXISTS:
                    return False
                raise
            return True

        return self._call(key, put)

    def delete(self, key: str) -> None:
        self._call(key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key))


class GcsWriter(_Pruning, GcsStore):
    """Google Cloud Storage: resumable uploads in 16 MiB chunks for large files."""

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``."""
        return self._call(prefix, lambda: [blob.name for blob in
                                           self._bucket.list_blobs(prefix=prefix)])

    def head(self, key: str) -> ObjectInfo | None:
        blob = self._call(key, lambda: self._bucket.get_blob(key))
        if blob is None:
            return None
        return ObjectInfo(blob.size or 0, (blob.metadata or {}).get("sha256"))

    def upload(self, path: Path, key: str, sha256: str, progress: Progress) -> None:
        size = path.stat().st_size
        blob = self._bucket.blob(key, chunk_size=16 * 1024 * 1024 if size > _MULTIPART else None)
        blob.metadata = {"sha256": sha256}
        self._call(key, lambda: blob.upload_from_filename(str(path)))
        progress(size)

    def put_bytes(self, key: str, data: bytes) -> None:
        blob = self._bucket.blob(key)
        self._call(key, lambda: blob.upload_from_string(data, content_type="application/json"))

    def create(self, key: str, data: bytes) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        def put() -> bool:
            try:
                # generation 0: "no live version of the object" (GCS request preconditions)
                self._bucket.blob(key).upload_from_string(
                    data, content_type="application/json", if_generation_match=0)
            except PreconditionFailed:
                return False
            return True

        return self._call(key, put)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call(key, lambda: self._bucket.blob(key).delete())


class AzureWriter(_Pruning, AzureStore):
    """Azure Blob Storage: block blobs uploaded with parallel blocks."""

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``."""
        return self._call(prefix, lambda: [blob.name for blob in
                                           self._container.list_blobs(name_starts_with=prefix)])

    def head(self, key: str) -> ObjectInfo | None:
        client = self._container.get_blob_client(key)
        try:
            props = self._call(key, client.get_blob_properties)
        except FileNotFoundError:
            return None
        return ObjectInfo(props.size, (props.metadata or {}).get("sha256"))

    def upload(self, path: Path, key: str, sha256: str, progress: Progress) -> None:
        sent = [0]

        def hook(current: int, total: int | None) -> None:
            progress(current - sent[0])
            sent[0] = current

        def send() -> None:
            with open(path, "rb") as handle:
                self._container.upload_blob(key, handle, overwrite=True, max_concurrency=4,
                                            metadata={"sha256": sha256}, progress_hook=hook)

        self._call(key, send)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(key, lambda: self._container.upload_blob(key, data, overwrite=True))

    def create(self, key: str, data: bytes) -> bool:
        from azure.core.exceptions import ResourceExistsError

        def put() -> bool:
            try:  # overwrite=False: the SDK sends If-None-Match: *
                self._container.upload_blob(key, data, overwrite=False)
            except ResourceExistsError:
                return False
            return True

        return self._call(key, put)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call(key, lambda: self._container.delete_blob(key))


class FolderStore:
    """A folder acting as the bucket (the local provider's store, or a mounted volume)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_of(self, key: str) -> Path:
        """The file that holds ``key`` (inside the store, or PermissionError)."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise PermissionError(f"{key} escapes the store at {self.root}")
        return path

    def read_bytes(self, key: str) -> bytes:
        return self.path_of(key).read_bytes()

    def download(self, key: str, dest: Path) -> None:
        shutil.copyfile(self.path_of(key), dest)

    def head(self, key: str) -> ObjectInfo | None:
        from llmcloud.inference_image.manifest import file_sha256

        path = self.path_of(key)
        if not path.is_file():
            return None
        return ObjectInfo(path.stat().st_size, file_sha256(path))

    def upload(self, path: Path, key: str, sha256: str, progress: Progress) -> None:
        self._write(key, lambda partial: shutil.copyfile(path, partial))
        progress(self.path_of(key).stat().st_size)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda partial: partial.write_bytes(data))

    def create(self, key: str, data: bytes) -> bool:
        created = [True]

        def publish(partial: str, target: Path) -> None:
            # a hard link takes the name only if it is free, with the whole file behind it
            try:
                os.link(partial, target)
            except FileExistsError:
                created[0] = False
            except OSError:  # a file system without hard links: the name, then the bytes
                try:
                    handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                except FileExistsError:
                    created[0] = False
                    return
                with os.fdopen(handle, "wb") as out:
                    out.write(data)

        self._write(key, lambda partial: partial.write_bytes(data), publish)
        return created[0]

    def _write(self, key: str, fill: Callable[[Path], object],
               publish: Callable[[str, Path], None] = os.replace) -> None:
        """Fill a temp file of this writer's own beside the target, then rename it: a
        reader never sees half a file, and two uploads of a version never share a temp
        file (one renamed the other's half-written copy into place). Hidden, and deleted
        when the copy fails: the server and `prune` leave such names alone."""
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # (not mkstemp: its mode 600 would keep a server run as another user out)
        name = str(target.with_name(f".{target.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}"))
        try:
            fill(Path(name))
            publish(name, target)
        finally:
            if os.path.exists(name):
                os.unlink(name)

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[str]:
        """The keys of the files under the folder ``prefix`` names ("" or `a/b/`)."""
        folder = self.path_of(prefix) if prefix else self.root
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*")
                      if p.is_file())

    def remove_empty_folders(self, prefix: str) -> None:
        """Remove the folder ``prefix`` names and the folders in it, where they are empty
        (a bucket has no folders: a deleted version leaves nothing there either)."""
        folder = self.path_of(prefix) if prefix else self.root
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):  # not empty: left as it is
                    path.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()

    def prune(self, prefix: str, keep: set[str]) -> None:
        """Delete the files under ``prefix`` whose keys are not in ``keep`` (a version
        overwritten with fewer files: its folder is what the server loads)."""
        folder = self.path_of(prefix) if prefix else self.root
        for path in [p for p in folder.rglob("*") if p.is_file()]:
            if path.name.startswith(".") and path.name.endswith(PARTIAL_SUFFIX):
                continue  # another upload's file, being written now
            if path.relative_to(self.root).as_posix() not in keep:
                path.unlink()


def open_writable_store(uri: str) -> tuple[WritableStore, str]:
    """The store for `uri` (s3://, gs://, az://, file:// or a folder) and its key prefix."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # C:\models: a drive
        return FolderStore(Path(parsed.path if parsed.scheme == "file" else uri)), ""
    if parsed.scheme not in STORE_SCHEMES or not parsed.netloc:
        raise ValueError(f"{uri} is not a model store: s3://BUCKET, gs://BUCKET, "
                         "az://ACCOUNT/CONTAINER or a folder")
    prefix = bucket_key_prefix(uri)
    if parsed.scheme == "s3":
        return S3Writer(parsed.netloc), prefix
    if parsed.scheme == "gs":
        return GcsWriter(parsed.netloc), prefix
    container = parsed.path.strip("/").partition("/")[0]
    return AzureWriter(azure_account(parsed.netloc, os.environ), container,
                       credential=azure_caller_credential(os.environ)), prefix


def azure_caller_credential(environ: Mapping[str, str]) -> Any:
    """The credential of the ARM_* service principal or managed identity Pulumi signs in
    with (`azure/sign_in.py`), or None for the store's own DefaultAzureCredential, which
    reads only AZURE_* variables."""
    from llmcloud.providers.azure.sign_in import arm_method, caller_credential

    if arm_method(environ) in (None, "default"):
        return None
    return caller_credential(environ)


def azure_account(netloc: str, environ: Mapping[str, str]) -> str:
    """An ``az://`` URL's account part as the caller's Azure cloud reads it: a bare account
    name gets the blob host of the cloud ``ARM_ENVIRONMENT`` (or ``AZURE_ENVIRONMENT``) names,
    as `pulumi up` deploys there; a whole host stays as it is. ValueError for an unknown
    cloud."""
    from llmcloud.providers.azure.clouds import cloud_named, environment_name
    from llmcloud.providers.azure.naming import url_account

    if "." in netloc:
        return netloc
    return url_account(netloc, cloud_named(environment_name(environ)))


def store_call(fn: Callable[[str], Any], key: str, target: str) -> Any:
    """``fn(key)``, with the store's refusals and failures as `DeploymentError`s naming
    ``target`` (the version's URI)."""
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


def read_json(store, key: str) -> Any:
    """The JSON document at ``key``, None where there is none (or it is not JSON)."""
    try:
        data = store.read_bytes(key)
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {}
