"""Real parts for the artifact pipeline, started by the tests on loopback: an OCI registry
with htpasswd auth (Debian's docker-registry) and buildah with its own storage."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest

USER, PASSWORD = "ci", "s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> str:
    """`127.0.0.1:PORT` of a real registry that wants USER/PASSWORD."""
    binary = shutil.which("docker-registry")
    htpasswd = shutil.which("htpasswd")
    if binary is None or htpasswd is None:
        pytest.skip("docker-registry or htpasswd is not installed (apt-get install "
                    "docker-registry apache2-utils)")
    root = tmp_path_factory.mktemp("registry")
    hashed = subprocess.run([htpasswd, "-Bbn", USER, PASSWORD], capture_output=True,
                            text=True, check=True).stdout
    (root / "htpasswd").write_text(hashed)
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: llmcloud-tests\n    path: {root / 'htpasswd'}\n"
    )
    with open(root / "registry.log", "w") as log:
        process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.skip(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def buildah_env(tmp_path_factory) -> dict[str, str]:
    """Environment for buildah with a private vfs store and chroot isolation (no daemon)."""
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (apt-get install buildah)")
    root = tmp_path_factory.mktemp("containers")
    conf = root / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root / "graph"}"\n'
        f'runroot = "{root / "run"}"\n'
    )
    return {"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot",
            "STORAGE_DRIVER": "vfs"}


@pytest.fixture(scope="session")
def base_image(buildah_env: dict[str, str], tmp_path_factory) -> str:
    """A tiny local base image, made from scratch (nothing is pulled)."""
    import os

    env = {**os.environ, **buildah_env}
    payload = tmp_path_factory.mktemp("payload") / "hello.txt"
    payload.write_text("hello from the base\n")

    def buildah(*args: str) -> str:
        return subprocess.run(["buildah", *args], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    container = buildah("from", "scratch")
    buildah("copy", container, str(payload), "/hello.txt")
    buildah("commit", "--quiet", container, "localhost/llmcloud-test-base:1")
    buildah("rm", container)
    return "localhost/llmcloud-test-base:1"


def manifest_digest(registry: str, repository: str, tag: str) -> str:
    """The digest the registry reports for `repository:tag` (its own API, with auth)."""
    response = httpx.head(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        auth=(USER, PASSWORD),
        headers={"Accept": ", ".join([
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])},
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]
