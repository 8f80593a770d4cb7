"""How `model delete` asks the Pulumi backend whether an update of the stack runs: an S3
backend's lock is read where the backend URL's query says the bucket is (an S3-compatible
endpoint such as MinIO, its region), not at the model store's endpoint; and the Pulumi
Cloud's history is read without decrypting the stack's config secrets."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from llmcloud.providers.update_in_progress import lock_holder

LOCK = {"pid": 478, "username": "ops", "hostname": "ci-7",
        "timestamp": "2026-11-30T20:31:35Z"}
MINIO = "http://minio.test:9000"


@pytest.fixture
def minio_backend(monkeypatch):
    """A Pulumi backend in bucket `state` of an S3-compatible store at MINIO (moto), with
    an update's lock on stack `prod` of project `test`; the model store's own endpoint
    (AWS_ENDPOINT_URL) is elsewhere, and nothing answers there."""
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", MINIO)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", endpoint_url=MINIO, region_name="eu-west-1")
        s3.create_bucket(Bucket="state",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="state", Key=".pulumi/locks/organization/test/prod/ec3a.json",
                      Body=json.dumps(LOCK).encode())
        yield


def test_an_s3_backends_lock_is_read_at_the_endpoint_its_url_names(minio_backend) -> None:
    url = "s3://state?endpoint=minio.test:9000&disableSSL=true&s3ForcePathStyle=true" \
          "&region=eu-west-1"
    assert lock_holder(url, "prod", "test") == \
        "taken by ops@ci-7 (pid 478) at 2026-11-30T20:31:35Z"
    assert lock_holder(url, "dev", "test") is None


def test_the_backend_urls_region_and_path_style_make_its_client() -> None:
    from llmcloud.providers.update_in_progress import BackendBucket

    bucket = BackendBucket("state", {"endpoint": ["https://s3.example:8443"],
                                     "region": ["eu-west-1"], "use_path_style": ["true"]})
    assert bucket._client.meta.region_name == "eu-west-1"
    assert bucket._client.meta.endpoint_url == "https://s3.example:8443"
    assert bucket._client.meta.config.s3 == {"addressing_style": "path"}


def test_a_profile_the_backend_url_names_that_is_missing_is_exit_1(monkeypatch,
                                                                   tmp_path) -> None:
    from llmcloud.stacks.errors import DeploymentError

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # (never asked)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(DeploymentError) as refused:
        lock_holder("s3://state?profile=ops&region=eu-west-1", "prod", "test")
    assert "could not read whether an update holds stack 'prod'" in refused.value.message
    assert "ops" in refused.value.context


def test_the_history_is_read_without_decrypting_config_secrets() -> None:
    from llmcloud.stacks.automation import PulumiStack

    asked = []

    def info(show_secrets: bool = True):
        asked.append(show_secrets)
        return SimpleNamespace(result="in-progress")

    engine = PulumiStack.__new__(PulumiStack)
    engine._stack = SimpleNamespace(info=info)
    assert engine.update_in_progress() is True
    assert asked == [False]
