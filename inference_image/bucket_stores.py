"""Read-only access to model files in S3, Google Cloud Storage and Azure Blob Storage.

Each store needs two primitives, ``read_bytes`` and ``download``; SDKs are imported only
when their scheme is used, and their errors become ``FileNotFoundError``/``PermissionError``
here so callers see one family.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class BucketStore(Protocol):
    """A bucket, addressed by object key."""

    def read_bytes(self, key: str) -> bytes: ...

    def download(self, key: str, dest: Path) -> None: ...


def _missing_sdk(package: str) -> ImportError:
    from llmcloud.stacks.errors import install_hint

    return ImportError(f"{package} is needed for this model source; install it with "
                       f"{install_hint('runtime')}")


def aws_region(environ: Mapping[str, str]) -> str | None:
    """The region the AWS SDKs' shared settings name: ``AWS_REGION``, else
    ``AWS_DEFAULT_REGION``; None leaves it to boto3 (the profile's). boto3 reads only
    ``AWS_DEFAULT_REGION``: the AWS boot script's ``AWS_REGION`` was ignored, and a server in
    any region signed for us-east-1 at its global endpoint (s3.amazonaws.com)."""
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None


_S3_MISSING = ("404", "NoSuchKey", "NoSuchBucket")
#: refusals: of the caller (403) and of its credentials (wrong, or expired)
_S3_REFUSED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
               "ExpiredToken", "TokenRefreshRequired")


class S3Store:
    """S3 or an S3-compatible endpoint (``AWS_ENDPOINT_URL``, e.g. MinIO, LocalStack)."""

    def __init__(self, bucket: str):
        try:
            import boto3
        except ImportError as exc:
            raise _missing_sdk("boto3") from exc
        self.bucket = bucket
        self._client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                                    region_name=aws_region(os.environ))

    def _call(self, key, fn, *args):
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError, NoCredentialsError

        try:
            return fn(*args)
        except NoCredentialsError as exc:
            raise PermissionError(f"s3://{self.bucket}/{key}: no AWS credentials") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _S3_MISSING:
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from exc
            if code in _S3_REFUSED:
                raise PermissionError(f"s3://{self.bucket}/{key}: {code}") from exc
            raise
        except S3UploadFailedError as exc:
            # upload_file wraps the service's error in its message only
            message = str(exc)
            if any(f"({code})" in message for code in _S3_MISSING):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}: {message}") from exc
            if any(f"({code})" in message for code in _S3_REFUSED):
                raise PermissionError(f"s3://{self.bucket}/{key}: {message}") from exc
            raise

    def read_bytes(self, key: str) -> bytes:
        response = self._call(key, lambda: self._client.get_object(Bucket=self.bucket, Key=key))
        return response["Body"].read()

    def download(self, key: str, dest: Path) -> None:
        self._call(key, self._client.download_file, self.bucket, key, str(dest))


class GcsStore:
    """Google Cloud Storage; the SDK itself honours ``STORAGE_EMULATOR_HOST``."""

    def __init__(self, bucket: str):
        try:
            from google.cloud import storage
        except ImportError as exc:
            raise _missing_sdk("google-cloud-storage") from exc
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(credentials=AnonymousCredentials(), project="emulator")
        else:
            from google.auth.exceptions import DefaultCredentialsError

            try:
                # project=None: reading needs none, and user credentials (gcloud's
                # application-default login) name none where gcloud is not installed
                client = storage.Client(project=None)
            except DefaultCredentialsError as exc:
                raise PermissionError(f"gs://{bucket}: no Google Cloud credentials "
                                      "(gcloud auth application-default login)") from exc
        self.bucket_name = bucket
        self._bucket = client.bucket(bucket)

    def _call(self, key, fn):
        from google.api_core import exceptions
        from google.auth.exceptions import RefreshError

        try:
            return fn()
        except exceptions.NotFound as exc:
            raise FileNotFoundError(f"gs://{self.bucket_name}/{key}") from exc
        except exceptions.Forbidden as exc:
            raise PermissionError(f"gs://{self.bucket_name}/{key}: access denied") from exc
        except (exceptions.Unauthorized, RefreshError) as exc:
            # credentials refused: a revoked or deleted key, an expired login
            raise PermissionError(f"gs://{self.bucket_name}/{key}: credentials refused: "
                                  f"{exc}") from exc

    def read_bytes(self, key: str) -> bytes:
        return self._call(key, lambda: self._bucket.blob(key).download_as_bytes())

    def download(self, key: str, dest: Path) -> None:
        self._call(key, lambda: self._bucket.blob(key).download_to_filename(str(dest)))


#: Blob Storage's host suffix in each Azure cloud, and that cloud's Entra ID authority (the
#: same table as `providers/azure/clouds.py`; this module runs in the server image alone)
AZURE_BLOB_CLOUDS = {
    "blob.core.windows.net": "login.microsoftonline.com",
    "blob.core.usgovcloudapi.net": "login.microsoftonline.us",
    "blob.core.chinacloudapi.cn": "login.chinacloudapi.cn",
}
PUBLIC_BLOB_SUFFIX = "blob.core.windows.net"
#: a storage account's name: 3 to 24 lowercase letters and digits
_AZURE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")


def azure_blob_host(netloc: str) -> tuple[str, str]:
    """The account's blob host and its cloud's Entra ID authority, for the account part of
    an ``az://`` URL: a name (``acct``: the public cloud) or the account's whole blob host
    (``acct.blob.core.chinacloudapi.cn``); ValueError for any other host, so that a token
    is only ever sent to Azure's blob service."""
    account, _, suffix = netloc.lower().partition(".")
    suffix = suffix or PUBLIC_BLOB_SUFFIX
    if not _AZURE_ACCOUNT.fullmatch(account) or suffix not in AZURE_BLOB_CLOUDS:
        raise ValueError(f"az://{netloc}: expected a storage account name or its blob host "
                         f"(<account>.{' | '.join(AZURE_BLOB_CLOUDS)})")
    return f"{account}.{suffix}", AZURE_BLOB_CLOUDS[suffix]


class AzureStore:
    """Azure Blob Storage: ``AZURE_STORAGE_CONNECTION_STRING``, else DefaultAzureCredential
    on the account's blob host (az://<account>/<container>/<prefix>: the public cloud's
    ``<account>.blob.core.windows.net``; az://<account>.blob.core.chinacloudapi.cn/... and
    the US Government's host name the sovereign clouds). `credential`, when given, replaces
    DefaultAzureCredential (the CLI's, from Pulumi's ARM_* variables)."""

    def __init__(self, account: str, container: str, credential=None):
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError as exc:
            raise _missing_sdk("azure-storage-blob") from exc
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if connection:  # (it names the endpoint and the account itself)
            service = BlobServiceClient.from_connection_string(connection)
        else:
            host, authority = azure_blob_host(account)
            if credential is None:
                from azure.identity import DefaultAzureCredential

                # a service principal signs in to its own cloud's Entra ID (a managed
                # identity ignores this); the public cloud's keeps AZURE_AUTHORITY_HOST's say
                sovereign = {} if host.endswith(PUBLIC_BLOB_SUFFIX) else {"authority": authority}
                credential = DefaultAzureCredential(**sovereign)
            service = BlobServiceClient(f"https://{host}", credential=credential)
        self.where = f"az://{account}/{container}"
        self._container = service.get_container_client(container)

    def _call(self, key, fn):
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
        )

        try:
            return fn()
        except ResourceNotFoundError as exc:
            raise FileNotFoundError(f"{self.where}/{key}") from exc
        except ClientAuthenticationError as exc:
            raise PermissionError(f"{self.where}/{key}: {exc.message}") from exc
        except HttpResponseError as exc:
            if exc.status_code == 403:  # e.g. AuthorizationPermissionMismatch: no role
                raise PermissionError(f"{self.where}/{key}: {exc.message}") from exc
            raise

    def read_bytes(self, key: str) -> bytes:
        return self._call(key, lambda: self._container.download_blob(key).readall())

    def download(self, key: str, dest: Path) -> None:
        def fetch():
            with open(dest, "wb") as handle:
                self._container.download_blob(key).readinto(handle)

        self._call(key, fetch)


def bucket_key_prefix(url: str) -> str:
    """The object-key prefix a bucket URL names, with a trailing slash (or empty).

    ``s3://bucket/a/b`` and ``gs://bucket/a/b`` -> ``a/b/``;
    ``az://account/container/a/b`` -> ``a/b/``.
    """
    parsed = urlparse(url)
    path = parsed.path.strip("/")
    if parsed.scheme == "az":
        container, _, path = path.partition("/")
        if not container:
            raise ValueError(f"{url}: expected az://<account>/<container>/<prefix>")
    elif parsed.scheme not in ("s3", "gs"):
        raise ValueError(f"{url}: not a bucket URL (s3://, gs://, az://)")
    return path + "/" if path else ""


def open_store(url: str) -> BucketStore:
    """Return the store for an ``s3://``, ``gs://`` or ``az://`` URL."""
    bucket_key_prefix(url)  # validates the URL
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc)
    if parsed.scheme == "gs":
        return GcsStore(parsed.netloc)
    container = parsed.path.strip("/").partition("/")[0]
    return AzureStore(parsed.netloc, container)
