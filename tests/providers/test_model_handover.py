"""A model version's hand-overs, each side's real code on both ends: what a boot script gives
the server container, read by the runtime's bucket stores."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from llmcloud.providers.aws.userdata import ServerLaunch, render_user_data

AWS_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/llm-dev/m@sha256:" + "a" * 64


def container_env(script: str) -> dict[str, str]:
    """The `-e NAME=VALUE` settings of the script's `docker run`, as bash expands them (its
    plain assignments first; `docker` a function that prints its arguments)."""
    lines = script.splitlines()
    assignments = [line for line in lines
                   if re.match(r"^[A-Z_]+=", line) and "$(" not in line]
    run = next(line for line in lines if line.startswith("docker run "))
    probe = "\n".join([*assignments, "docker() { printf '%s\\0' \"$@\"; }", run])
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    args = out.split("\0")
    return dict(args[i + 1].split("=", 1) for i, arg in enumerate(args[:-1]) if arg == "-e")


@pytest.fixture
def no_aws_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of this machine's AWS settings: a server's container has none."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.usefixtures("no_aws_settings")
def test_the_aws_server_reads_its_bucket_in_the_region_its_boot_script_names(monkeypatch):
    """The boot script hands the region to the container as AWS_REGION; the loader's S3
    client must use it (boto3 itself reads only AWS_DEFAULT_REGION, and went to us-east-1)."""
    pytest.importorskip("boto3")
    from llmcloud.inference_image.bucket_stores import S3Store
    from llmcloud.providers.model_stores import S3Writer

    script = render_user_data(ServerLaunch(
        image=AWS_IMAGE, model_uri="s3://llm-models-1/models/m/v1/", model_version="v1",
        region="eu-west-1", log_group="/llmcloud/dev", asg_name="llm-dev-gpu"))
    env = container_env(script)
    assert env.get("AWS_REGION") == "eu-west-1"
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert S3Store("llm-models-1")._client.meta.region_name == "eu-west-1"
    # `model upload` opens the bucket the same way, as the AWS CLI reads the variable
    assert S3Writer("llm-models-1")._client.meta.region_name == "eu-west-1"


@pytest.mark.usefixtures("no_aws_settings")
def test_aws_default_region_still_counts_and_aws_region_comes_first(monkeypatch):
    pytest.importorskip("boto3")
    from llmcloud.inference_image.bucket_stores import S3Store

    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert S3Store("b")._client.meta.region_name == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")  # the SDKs' shared order
    assert S3Store("b")._client.meta.region_name == "eu-central-1"


def _saved_model(folder: Path) -> Path:
    """A folder shaped like a saved model (what `check_model_folder` asks for)."""
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\x01" * 4096)
    (folder / "sub" / "tokenizer.json").write_text('{"version": "1.0"}')
    return folder


def test_a_version_folder_with_its_manifest_uploads_again_unchanged(tmp_path):
    """A version as a store keeps it (the local provider's `models/<name>/<version>/`, a
    server's cache folder) holds its manifest.json beside the files: uploading it to another
    store, then again (a re-run), must find the same content there, not "other content"."""
    from llmcloud.inference_image.model_source import resolve
    from llmcloud.providers.model_upload import upload_model

    local = tmp_path / "local-store"
    upload_model(_saved_model(tmp_path / "model"), str(local), name="m", version="v1")
    kept = local / "m" / "v1"
    assert (kept / "manifest.json").is_file()

    cloud = tmp_path / "cloud-store"
    first = upload_model(kept, str(cloud), name="m", version="v1")
    again = upload_model(kept, str(cloud), name="m", version="v1")

    assert first["files"] == 3 and not first["unchanged"]
    assert again["unchanged"] and again["uploaded"] == 0
    loaded = resolve(str(cloud / "m" / "v1"), version="v1", cache_dir=tmp_path / "cache")
    assert loaded.version == "v1"


def test_a_server_refuses_a_folder_version_whose_upload_is_unfinished(tmp_path):
    """An upload writes a version's files under its claim and the manifest last: a server
    given that folder meanwhile (the local provider's store; a volume servers share), or
    after the upload was cut off, must refuse it rather than load it unchecked."""
    from llmcloud.inference_image.model_source import ModelSourceError, resolve
    from llmcloud.providers.model_upload import upload_model
    from llmcloud.stacks.errors import DeploymentError

    model = _saved_model(tmp_path / "model")
    store = tmp_path / "store"

    def cut_off(file: str, done: int, total: int) -> None:
        raise RuntimeError("connection lost")

    with pytest.raises(DeploymentError):
        upload_model(model, str(store), name="m", version="v1", workers=1,
                     on_progress=cut_off)
    version = store / "m" / "v1"
    assert not (version / "manifest.json").exists()
    assert any(p.is_file() and not p.name.startswith(".") for p in version.rglob("*"))

    with pytest.raises(ModelSourceError, match="unfinished upload"):
        resolve(str(version), version="v1")

    upload_model(model, str(store), name="m", version="v1")  # run again: it resumes
    assert resolve(str(version), version="v1").version == "v1"


def test_a_folder_without_manifest_or_claim_still_loads_unchecked(tmp_path):
    """A plain saved model folder (no upload ever wrote it) is served as it is."""
    from llmcloud.inference_image.model_source import resolve

    folder = _saved_model(tmp_path / "model")
    assert resolve(str(folder)).folder == folder
