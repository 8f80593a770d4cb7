"""The model cache keeps two versions of a model, not every one ever promoted: the servers'
disks are sized for the image and two model copies, and the local provider's cache (shared
by every stack and replica on the machine) grew by a model copy at each promote. A version a
running server uses is never removed, whichever process runs it."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_model_source import FakeBucket

import llmcloud.inference_image.model_source as model_source
from llmcloud.inference_image.manifest import MANIFEST_NAME, build_manifest
from llmcloud.inference_image.model_source import resolve

HERE = Path(__file__).parent
_STARTS = itertools.count()


def _upload(root: Path, name: str, version: str) -> Path:
    folder = root / "uploads" / name / version
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(version.encode() * 1000)
    (folder / MANIFEST_NAME).write_text(json.dumps(build_manifest(folder, name, version)))
    return folder


class Bucket(FakeBucket):
    """One bucket holding every uploaded version under models/<name>/<version>/."""

    def __init__(self, root: Path, versions: dict[str, list[str]]):
        self.objects, self.downloads = {}, []
        for name, names in versions.items():
            for version in names:
                folder = _upload(root, name, version)
                self.objects.update(FakeBucket(f"models/{name}/{version}", folder).objects)


@pytest.fixture()
def bucket(tmp_path):
    return Bucket(tmp_path, {"llama": ["v1", "v2", "v3", "v4"], "other": ["v1"]})


@pytest.fixture()
def cache(tmp_path):
    yield tmp_path / "cache"
    _server_exits()


def _server_exits() -> None:
    """What a server's end does to its in-use marks: the kernel drops its locks."""
    held = getattr(model_source, "_IN_USE", {})
    for lock in held.values():
        lock.close()
    held.clear()


def _start(cache: Path, bucket, name: str, version: str, *, exits: bool = True) -> Path:
    """One server start with ``version`` (then its end, unless ``exits`` is false)."""
    url = f"s3://bucket/models/{name}/{version}"
    folder = resolve(url, version=version, cache_dir=cache, store=bucket).folder
    # each start a second apart: "newest" is when a server last started with a version
    stamp = 1_700_000_000 + next(_STARTS)
    os.utime(folder / MANIFEST_NAME, (stamp, stamp))
    if exits:
        _server_exits()
    return folder


def _cached(cache: Path, name: str = "llama") -> list[str]:
    return sorted(p.name for p in (cache / "s3/bucket/models" / name).iterdir())


def test_a_promote_keeps_the_new_version_and_the_previous_one(cache, bucket):
    for version in ("v1", "v2", "v3"):
        _start(cache, bucket, "llama", version)
    assert _cached(cache) == ["v2", "v3"]
    # a rollback to the previous version finds it whole: nothing to download
    downloads = len(bucket.downloads)
    _start(cache, bucket, "llama", "v2")
    assert len(bucket.downloads) == downloads
    assert _cached(cache) == ["v2", "v3"]


def test_older_versions_go_before_the_new_one_downloads(cache, bucket):
    # the disk holds two copies: a third version must not land beside two others
    for version in ("v1", "v2"):
        _start(cache, bucket, "llama", version)
    seen = []
    download = bucket.download

    def counting(key: str, dest: Path) -> None:
        seen.append(_cached(cache))
        download(key, dest)

    bucket.download = counting
    _start(cache, bucket, "llama", "v3")
    assert seen and all(cached == ["v2", "v3"] for cached in seen)


def test_other_models_in_the_cache_are_left_alone(cache, bucket):
    _start(cache, bucket, "other", "v1")
    for version in ("v1", "v2", "v3"):
        _start(cache, bucket, "llama", version)
    assert _cached(cache, "other") == ["v1"]


def test_a_version_this_process_serves_is_kept(cache, bucket):
    _start(cache, bucket, "llama", "v1", exits=False)
    _start(cache, bucket, "llama", "v2", exits=False)
    _start(cache, bucket, "llama", "v3", exits=False)
    assert _cached(cache) == ["v1", "v2", "v3"]


RUNNING_SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_model_source import FakeBucket
from llmcloud.inference_image.model_source import resolve
bucket = FakeBucket("models/llama/v1", Path({upload!r}))
resolve("s3://bucket/models/llama/v1", cache_dir=Path({cache!r}), store=bucket)
print("serving", flush=True)
sys.stdin.read()
"""


def test_a_version_another_running_server_uses_is_kept(cache, bucket, tmp_path):
    # (the local provider's replicas of the old version, during a promote, share the cache)
    script = RUNNING_SERVER.format(tests=str(HERE), cache=str(cache),
                                   upload=str(tmp_path / "uploads/llama/v1"))
    server = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "serving"
        os.utime(cache / "s3/bucket/models/llama/v1" / MANIFEST_NAME, (1, 1))  # the oldest
        _start(cache, bucket, "llama", "v2")
        _start(cache, bucket, "llama", "v3")
        assert _cached(cache) == ["v1", "v2", "v3"]
        assert (cache / "s3/bucket/models/llama/v1/model.safetensors").is_file()
    finally:
        server.communicate("", timeout=30)
    assert server.returncode == 0
    _start(cache, bucket, "llama", "v4")  # it has stopped: v1 goes now, and v2
    assert _cached(cache) == ["v3", "v4"]
