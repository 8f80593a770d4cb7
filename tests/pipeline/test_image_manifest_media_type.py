"""The image `image build` and `image push` hand to SageMaker is one Docker manifest: SageMaker
creates no model from an OCI image index or OCI manifest ("Unsupported manifest media type",
aws/amazon-sagemaker-feedback#180), which buildx's default provenance attestation makes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from llmcloud.providers import image_builder as ib
from tests.pipeline.conftest import PASSWORD, USER

#: the manifest type SageMaker's CreateModel takes
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

FAKE_DOCKER = """#!/bin/bash
printf '%s\\n' "$@" > "$RECORD"
while [ $# -gt 0 ]; do
  [ "$1" = --iidfile ] && echo sha256:0123 > "$2"
  shift
done
"""


def test_docker_builds_without_the_provenance_index(tmp_path: Path, monkeypatch) -> None:
    # buildx 0.10+ attests provenance by default: on a containerd image store the loaded
    # image was an OCI index, and that is what `docker push` pushed
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    monkeypatch.setenv("RECORD", str(tmp_path / "argv"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    image_id = ib.build_image(ib.Builder("docker", str(docker)), context=tmp_path,
                              dockerfile=tmp_path / "Dockerfile", tags=["srv:1"],
                              build_args={}, platform=None)
    argv = (tmp_path / "argv").read_text().split()
    assert image_id == "sha256:0123"
    assert argv[:3] == ["buildx", "build", "--load"]
    assert "--provenance=false" in argv


def test_buildah_pushes_one_docker_manifest(cli, monkeypatch, tmp_path: Path, registry: str,
                                            buildah_env: dict, base_image: str) -> None:
    for key, value in buildah_env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE=scratch\nFROM ${BASE_IMAGE}\n"
                                         'ENTRYPOINT ["/bin/true"]\n')
    built = cli("image", "build", "--builder", "buildah", "--base-image", base_image,
                "--file", str(tmp_path / "Dockerfile"), "--context", str(tmp_path),
                "--tag", "localhost/llmcloud-server:media", "--json")
    assert built.exit_code == 0, built.output
    pushed = cli("image", "push", "localhost/llmcloud-server:media", "--registry",
                 f"{registry}/team", "--username", USER, "--password-stdin", "--no-tls-verify",
                 "--builder", "buildah", "--json", input=PASSWORD + "\n")
    assert pushed.exit_code == 0, pushed.output
    pinned = json.loads(pushed.stdout)["pinned"]
    repository, digest = pinned.split("/", 1)[1].split("@")
    # what a puller that takes every kind is given for the pinned digest
    response = httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{digest}", auth=(USER, PASSWORD),
        headers={"Accept": ", ".join([
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json", DOCKER_MANIFEST])})
    response.raise_for_status()
    assert response.headers["content-type"] == DOCKER_MANIFEST
    assert json.loads(response.content)["mediaType"] == DOCKER_MANIFEST
