"""Storage emulators for the upload tests, each started on loopback by a fixture: moto in
server mode (S3), gcp-storage-emulator (GCS) and Azurite (Azure Blob Storage)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def serve(command: list[str], url: str, log: Path, ok=lambda r: r.status_code < 500
          ) -> Iterator[subprocess.Popen]:
    """Run `command` until `url` answers; stop it afterwards."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if ok(httpx.get(url, timeout=1)):
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"{command[0]} did not start: {log.read_text()[-500:]}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def azurite_command() -> list[str] | None:
    """How to start Azurite's blob service: on PATH, or installed by .ci/run under .tools/."""
    found = shutil.which("azurite-blob")
    local = REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if found:
        return [found]
    if local.exists():
        return [str(local)]
    return None


def moto_command() -> list[str] | None:
    found = shutil.which("moto_server")
    return [found] if found else None


def gcs_command() -> list[str] | None:
    found = shutil.which("gcp-storage-emulator")
    return [found] if found else None


def env_for(kind: str, port: int) -> dict[str, str]:
    """The SDK settings that point each cloud's client at its emulator."""
    if kind == "s3":
        return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    if kind == "gs":
        return {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    return {"AZURE_STORAGE_CONNECTION_STRING": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")}


def create_bucket(kind: str, name: str) -> str:
    """Create an empty bucket (container) in the emulator; return the store URI."""
    if kind == "s3":
        import boto3

        boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=name)
        return f"s3://{name}"
    if kind == "gs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(credentials=AnonymousCredentials(), project="test").create_bucket(name)
        return f"gs://{name}"
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"])
    service.create_container(name)
    return f"az://devstoreaccount1/{name}"
