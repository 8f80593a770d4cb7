"""Resolving --model under the conditions operators meet: replicas sharing one cache, a
killed start, a full disk, large models, refused cloud credentials, hub offline modes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_model_source import FakeBucket, uploaded  # noqa: F401  (the fixture)

from llmcloud.inference_image import manifest as manifest_module
from llmcloud.inference_image import model_source
from llmcloud.inference_image.model_source import ModelSourceError, resolve

URL = "s3://bucket/m"


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


class SlowBucket(FakeBucket):
    """Writes the weights in two halves, as the SDKs stream to their file, and waits between
    them (until ``resume`` is set, or a second) for another replica to run meanwhile."""

    def __init__(self, *args):
        super().__init__(*args)
        self.halfway = threading.Event()
        self.resume = threading.Event()
        self.slow_thread: int | None = None

    def download(self, key: str, dest: Path) -> None:
        if not key.endswith(".safetensors") or threading.get_ident() != self.slow_thread:
            return super().download(key, dest)
        self.downloads.append(key)
        data = self.read_bytes(key)
        with open(dest, "wb") as handle:
            handle.write(data[:100])
            handle.flush()
            self.halfway.set()
            self.resume.wait(1.0)
            handle.write(data[100:])


def test_replicas_starting_together_download_once_and_all_start(tmp_path, uploaded):  # noqa: F811
    """N replicas on one cache folder: the first to finish deleted the others' half
    downloads as leftovers of a killed start, and they failed ('cannot download ...: No
    such file or directory: .part-...'); each replica downloaded every file too."""
    bucket = SlowBucket("m", uploaded)
    cache = tmp_path / "cache"
    results: dict[str, object] = {}

    def first():
        bucket.slow_thread = threading.get_ident()
        try:
            results["first"] = resolve(URL, cache_dir=cache, store=bucket)
        except Exception as exc:  # noqa: BLE001
            results["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert bucket.halfway.wait(10)
    try:
        results["second"] = resolve(URL, cache_dir=cache, store=bucket)
    finally:
        bucket.resume.set()
        thread.join(10)
    assert not isinstance(results["first"], Exception), results["first"]
    assert (results["second"].folder / "model.safetensors").read_bytes() == b"S" * 3000
    assert sorted(bucket.downloads) == ["m/config.json", "m/model.safetensors"]
    assert _cache_files(results["second"].folder) == ["config.json", "manifest.json",
                                                      "model.safetensors"]


def test_a_killed_starts_partial_files_are_removed_before_downloading(tmp_path, uploaded):  # noqa: F811
    """A start killed during a large download left its part file (boto3's own temp file
    beside it); it was removed only after a successful download, so on a disk that holds the
    model once the next start ran out of room, and every start after it: a crash loop."""
    bucket = FakeBucket("m", uploaded)
    folder = tmp_path / "cache" / "s3" / "bucket" / "m"
    folder.mkdir(parents=True)
    (folder / ".part-ab12cd34").write_bytes(b"")
    (folder / ".part-ab12cd34.1A2b3C4d").write_bytes(b"half a weight file")
    seen: list[list[str]] = []
    download = bucket.download

    def download_seeing_the_folder(key, dest):
        seen.append([name for name in os.listdir(folder) if Path(folder / name) != dest])
        download(key, dest)

    bucket.download = download_seeing_the_folder
    resolve(URL, cache_dir=tmp_path / "cache", store=bucket)
    assert seen and not any(name.startswith(".part-") for names in seen for name in names)


def test_a_full_disk_names_the_file_and_the_cache_folder(tmp_path, uploaded):  # noqa: F811
    """ENOSPC from the SDK's write came out as a bare '[Errno 28] No space left on
    device': which disk, which file, and how much room the model needs went unsaid."""
    bucket = FakeBucket("m", uploaded)

    def full(key, dest):
        with open(dest, "wb") as handle:
            handle.write(b"S" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    bucket.download = full
    cache = tmp_path / "cache"
    with pytest.raises(ModelSourceError) as info:
        resolve(URL, cache_dir=cache, store=bucket)
    message = str(info.value)
    assert "No space left on device" in message
    assert "config.json" in message and str(cache / "s3" / "bucket" / "m") in message
    assert _cache_files(cache / "s3" / "bucket" / "m") == []  # no half file left


def test_each_start_reads_each_file_once(tmp_path, uploaded, monkeypatch):  # noqa: F811
    """Every start hashed every cached file twice (a check, then the verification): a
    140 GB model read 280 GB before loading."""
    bucket = FakeBucket("m", uploaded)
    cache = tmp_path / "cache"
    resolve(URL, cache_dir=cache, store=bucket)
    hashed: list[str] = []
    real = manifest_module.file_sha256

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(manifest_module, "file_sha256", counting)
    monkeypatch.setattr(model_source, "file_sha256", counting)
    resolve(URL, cache_dir=cache, store=bucket)
    assert sorted(hashed) == ["config.json", "model.safetensors"]


def test_a_download_that_does_not_match_never_lands_in_the_cache(tmp_path, uploaded):  # noqa: F811
    bucket = FakeBucket("m", uploaded)
    bucket.objects["m/model.safetensors"] = b"X" * 3000
    cache = tmp_path / "cache"
    with pytest.raises(ModelSourceError, match="model.safetensors: sha256 mismatch"):
        resolve(URL, cache_dir=cache, store=bucket)
    assert "model.safetensors" not in _cache_files(cache / "s3" / "bucket" / "m")


# -- Google Cloud Storage credentials -------------------------------------------------------

_REFUSING_TOKEN_SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Refuse(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": "invalid_grant",
                           "error_description": "Invalid JWT Signature."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = HTTPServer(("127.0.0.1", 0), Refuse)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture()
def refusing_token_server():
    process = subprocess.Popen([sys.executable, "-c", _REFUSING_TOKEN_SERVER],
                               stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{process.stdout.readline().strip()}/token"
    finally:
        process.terminate()
        process.wait(10)


def _google_env(monkeypatch, tmp_path, credentials: dict) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(credentials))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def test_refused_google_credentials_are_a_clear_error(tmp_path, monkeypatch,
                                                       refusing_token_server):
    """A revoked service-account key: google-auth's RefreshError came out as it was,
    where refused AWS and Azure credentials say which model they could not read."""
    pytest.importorskip("google.cloud.storage")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    _google_env(monkeypatch, tmp_path, {
        "type": "service_account", "project_id": "p", "private_key_id": "k",
        "private_key": key, "client_email": "server@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": refusing_token_server})
    with pytest.raises(ModelSourceError, match=r"gs://bucket/m.*invalid_grant"):
        resolve("gs://bucket/m", cache_dir=tmp_path / "cache")


def test_google_user_credentials_without_a_project_can_read(tmp_path, monkeypatch):
    """`gcloud auth application-default login` credentials mounted into the image (no
    gcloud there to name a project): 'Project was not passed and could not be determined
    from the environment', though reading a bucket needs no project."""
    pytest.importorskip("google.cloud.storage")
    from llmcloud.inference_image.bucket_stores import GcsStore

    _google_env(monkeypatch, tmp_path, {"type": "authorized_user", "client_id": "x",
                                        "client_secret": "y", "refresh_token": "z"})
    assert GcsStore("bucket").bucket_name == "bucket"


# -- the hub's offline mode ------------------------------------------------------------------

def _cached_hub_model(cache: Path) -> None:
    repo = cache / "hub" / "models--org--tiny"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)


@pytest.mark.parametrize("setting", [{"HF_HUB_OFFLINE": "ON"}, {"TRANSFORMERS_OFFLINE": "1"}])
def test_every_offline_setting_the_hub_honours_loads_a_cached_model(tmp_path, setting):
    """huggingface_hub is offline for HF_HUB_OFFLINE=1/ON/YES/TRUE or TRANSFORMERS_OFFLINE;
    the server listed the repo's files unless HF_HUB_OFFLINE was 1/true/yes, which offline
    mode refuses: a cached model did not start ('... it is not cached')."""
    _cached_hub_model(tmp_path)
    environ = {k: v for k, v in os.environ.items()
               if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("from pathlib import Path; from llmcloud.inference_image.model_source import "
            f"resolve; print(resolve('org/tiny', cache_dir=Path({str(tmp_path)!r})).folder)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**environ, **setting, "HF_ENDPOINT": "http://127.0.0.1:1"},
                         timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.strip().endswith("snapshots/" + "a" * 40)


def test_a_hub_failure_online_does_not_blame_hf_hub_offline(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=0 (online) and an unreachable hub: the error said 'HF_HUB_OFFLINE is
    set and it is not cached'."""
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", unreachable)
    with pytest.raises(ModelSourceError) as info:
        resolve("org/not-cached", cache_dir=tmp_path)
    assert "HF_HUB_OFFLINE" not in str(info.value)
