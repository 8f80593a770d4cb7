"""`llmcloud model upload` against S3 (moto server), GCS (gcp-storage-emulator) and Azure
(Azurite): every file and a correct manifest, skip-identical, refusal to overwrite, resume."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from llmcloud.inference_image.manifest import build_manifest, verify_folder
from llmcloud.inference_image.model_source import resolve
from llmcloud.providers import model_stores
from tests.pipeline import stores
from tests.pipeline.conftest import free_port

KINDS = ["s3", "gs", "az"]
_names = (f"bucket-{n}" for n in itertools.count())


@pytest.fixture(scope="module", params=KINDS)
def emulator(request, tmp_path_factory):
    """(kind, port) of a running emulator for one cloud's object store."""
    kind = request.param
    command = {"s3": stores.moto_command, "gs": stores.gcs_command,
               "az": stores.azurite_command}[kind]()
    if command is None:
        pytest.skip(f"the {kind} emulator is not installed (see .ci/run)")
    port = free_port()
    root = tmp_path_factory.mktemp(f"emulator-{kind}")
    args = {
        "s3": ["-H", "127.0.0.1", "-p", str(port)],
        "gs": ["start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
        "az": ["--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(root),
               "--skipApiVersionCheck", "--loose", "--silent"],
    }[kind]
    url = f"http://127.0.0.1:{port}/" + ("moto-api/" if kind == "s3" else "")
    with stores.serve([*command, *args], url, root / "log"):
        yield kind, port


@pytest.fixture
def store_uri(emulator, monkeypatch) -> str:
    """A fresh, empty bucket in the emulator, with the SDK pointed at it."""
    kind, port = emulator
    for key, value in stores.env_for(kind, port).items():
        monkeypatch.setenv(key, value)
    return stores.create_bucket(kind, next(_names))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder shaped like a saved model (config, tokenizer, safetensors, a subfolder)."""
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    (folder / "model.safetensors").write_bytes(os.urandom(300_000))
    (folder / "sub" / "extra.txt").write_text("nested files keep their paths\n")
    return folder


def _upload(cli, model_dir: Path, uri: str, *extra: str):
    return cli("model", "upload", str(model_dir), "--name", "m", "--version", "v1",
               "--to", uri, "--json", *extra)


def test_upload_writes_every_file_and_a_correct_manifest(
    cli, model_dir: Path, store_uri: str, tmp_path: Path
) -> None:
    result = _upload(cli, model_dir, store_uri)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["uri"] == f"{store_uri}/models/m/v1"
    assert (document["files"], document["uploaded"], document["skipped"]) == (4, 4, 0)
    # read it back the way the runtime does: download, verify against the manifest
    resolved = resolve(document["uri"], version="v1", cache_dir=tmp_path / "cache")
    assert (resolved.name, resolved.version) == ("m", "v1")
    local = build_manifest(model_dir, "m", "v1")
    verify_folder(Path(resolved.folder), local)
    remote = json.loads((Path(resolved.folder) / "manifest.json").read_text()) if (
        Path(resolved.folder) / "manifest.json").exists() else None
    if remote is not None:
        assert remote["files"] == local["files"]


def test_second_upload_of_a_version_is_refused_unless_it_is_the_same(
        cli, model_dir: Path, store_uri: str) -> None:
    """A version is immutable: the same content again is a success that changes nothing
    (a re-run CI job), other content is refused, whether its sizes differ or only its
    bytes."""
    assert _upload(cli, model_dir, store_uri).exit_code == 0
    same = _upload(cli, model_dir, store_uri)
    assert same.exit_code == 0, same.output
    document = json.loads(same.stdout)
    assert (document["uploaded"], document["skipped"], document["unchanged"]) == (0, 4, True)
    tokenizer = model_dir / "tokenizer.json"
    for content in ('{"version": "2.0"}', '{"version": "1.1", "longer": true}'):
        tokenizer.write_text(content)
        again = _upload(cli, model_dir, store_uri)
        assert again.exit_code == 1
        assert again.stderr.splitlines()[0] == (
            f"error: version v1 of m exists already at {store_uri}/models/m/v1")
        assert again.stderr.splitlines()[-1] == (
            "hint: upload it as a new version, or overwrite it with --force")


def test_force_sends_every_file_again(cli, model_dir: Path, store_uri: str) -> None:
    """An object's sha256 metadata says what was meant to be sent: a file that changed
    while an earlier upload sent it would never be sent again if --force trusted it."""
    assert _upload(cli, model_dir, store_uri).exit_code == 0
    (model_dir / "tokenizer.json").write_text(json.dumps({"version": "2.0"}))
    result = _upload(cli, model_dir, store_uri, "--force")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["uploaded"], document["skipped"], document["overwritten"]) == (4, 0, True)


def test_an_overwrite_leaves_none_of_the_old_versions_objects(cli, model_dir: Path,
                                                              store_uri: str) -> None:
    """A version overwritten with fewer files: the bucket keeps only the new ones (the
    servers would never fetch the others, but they would cost storage for ever)."""
    from llmcloud.providers.model_stores import open_writable_store
    from llmcloud.providers.model_upload import version_uri

    assert _upload(cli, model_dir, store_uri).exit_code == 0
    store, prefix = open_writable_store(version_uri(store_uri, "m", "v1"))
    assert prefix + "sub/extra.txt" in store.keys(prefix)
    (model_dir / "sub" / "extra.txt").unlink()
    result = _upload(cli, model_dir, store_uri, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(key.removeprefix(prefix) for key in store.keys(prefix)) == [
        "config.json", "manifest.json", "model.safetensors", "tokenizer.json"]


def test_an_overwrite_removes_the_old_manifest_first_and_a_folder_its_old_files(
        cli, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Meanwhile no server loads a mix of two uploads (it finds no manifest); an
    interrupted overwrite is run again like any upload; a folder store (the local
    provider's, loaded as it is) keeps only the new version's files."""
    store = tmp_path / "store"
    assert _upload(cli, model_dir, str(store)).exit_code == 0
    version = store / "m" / "v1"
    assert (version / "sub" / "extra.txt").is_file()
    (model_dir / "sub" / "extra.txt").unlink()
    real_upload, seen = model_stores.FolderStore.upload, []

    def interrupted(self, path, key, sha256, progress):
        seen.append((self.root / "manifest.json").exists())
        raise KeyboardInterrupt

    monkeypatch.setattr(model_stores.FolderStore, "upload", interrupted)
    assert _upload(cli, model_dir, str(store), "--force").exit_code == 130
    assert seen and not any(seen)  # the old manifest was gone before any file was sent
    monkeypatch.setattr(model_stores.FolderStore, "upload", real_upload)
    resumed = _upload(cli, model_dir, str(store))  # no --force: there is no version now
    assert resumed.exit_code == 0, resumed.output
    assert not (version / "sub" / "extra.txt").exists()
    resolve(str(version), version="v1")  # loads: nothing there the manifest does not list
    again = _upload(cli, model_dir, str(store), "--force")
    assert again.exit_code == 0, again.output
    assert sorted(p.relative_to(version).as_posix() for p in version.rglob("*")
                  if p.is_file()) == ["config.json", "manifest.json", "model.safetensors",
                                      "tokenizer.json"]
    resolve(str(version), version="v1")


def test_interrupted_upload_resumes(
    cli, model_dir: Path, store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = {"s3": model_stores.S3Writer, "gs": model_stores.GcsWriter,
              "az": model_stores.AzureWriter}[store_uri.split(":")[0]]
    real_upload = writer.upload
    sent: list[str] = []

    def flaky(self, path, key, sha256, progress):
        if len(sent) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle
        sent.append(key)
        return real_upload(self, path, key, sha256, progress)

    monkeypatch.setattr(writer, "upload", flaky)
    first = cli("model", "upload", str(model_dir), "--name", "m", "--version", "v1",
                "--to", store_uri)
    assert first.exit_code == 130
    monkeypatch.setattr(writer, "upload", real_upload)
    second = _upload(cli, model_dir, store_uri)
    assert second.exit_code == 0, second.output
    document = json.loads(second.stdout)
    assert (document["uploaded"], document["skipped"]) == (2, 2)


def test_not_a_model_folder_is_a_usage_error(cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = cli("model", "upload", str(tmp_path), "--version", "v1", "--to", "s3://b")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"error: {tmp_path} is not a model folder: it has no config.json")


def test_promote_finds_uploaded_versions_only(cli, model_dir: Path, store_uri: str) -> None:
    from llmcloud.providers.rollout import check_version_in_store
    from llmcloud.stacks.errors import DeploymentError

    assert _upload(cli, model_dir, store_uri).exit_code == 0
    assert check_version_in_store(store_uri, "m", "v1")["version"] == "v1"
    with pytest.raises(DeploymentError) as caught:
        check_version_in_store(store_uri, "m", "v2")
    assert caught.value.message == "version v2 of m is not in the model store"
    assert caught.value.hint == "llmcloud model upload MODEL_FOLDER --name m --version v2"


def test_an_unreachable_store_is_an_error_not_a_traceback(cli, model_dir: Path,
                                                          monkeypatch) -> None:
    from tests.pipeline.conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = _upload(cli, model_dir, "s3://nowhere")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: the model store s3://nowhere/models/m/v1 could not be reached")
    assert "Traceback" not in result.output


def test_a_missing_bucket_is_named_as_missing_not_as_unreachable(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's upload wraps S3's refusal in an S3UploadFailedError: it was reported as a
    network failure ("could not be reached"), with a network hint."""
    from moto import mock_aws

    from llmcloud.providers.model_upload import upload_model
    from llmcloud.stacks.errors import DeploymentError

    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(), pytest.raises(DeploymentError) as info:
        upload_model(model_dir, "s3://no-such-bucket", name="m", version="v1")
    assert info.value.message == "the model store s3://no-such-bucket/models/m/v1 does not exist"


def test_no_google_credentials_is_a_credentials_error_not_a_bug(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from llmcloud.providers.model_upload import upload_model
    from llmcloud.stacks.errors import CredentialsError

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default file
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # and no metadata server
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    with pytest.raises(CredentialsError) as info:
        upload_model(model_dir, "gs://some-bucket", name="m", version="v1")
    assert "no Google Cloud credentials" in info.value.message


def test_upload_without_a_name_uses_the_name_a_stack_gives_the_folder(
        cli, model_dir: Path, tmp_path: Path) -> None:
    # a stack whose model.source is this folder loads models/<model_name_from_source>/...:
    # the folder's name lowered ("qwen2.5-0.5b") was another path, which no stack loads
    from llmcloud.stacks.spec import model_name_from_source

    folder = model_dir.rename(model_dir.parent / "Qwen2.5-0.5B")
    store = tmp_path / "store"
    result = cli("model", "upload", str(folder), "--version", "v1", "--to", str(store),
                 "--json")
    assert result.exit_code == 0, result.output
    name = model_name_from_source(str(folder))
    assert name == "qwen2-5-0-5b"
    assert (store / name / "v1" / "manifest.json").is_file()
