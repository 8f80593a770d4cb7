"""`image push` into registries with immutable tags, as llmcloud's stacks make them (ECR
`IMMUTABLE`, Artifact Registry `immutable_tags`): the push defaults to this checkout's own
build (`<version>-<git commit>`), which the next build does not share, and a tag the
registry already holds is a clear error saying which tag to push instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmcloud.providers import image_builder as ib
from llmcloud.stacks.errors import ConfigError, ExitCode

ECR_SAYS = ("tag invalid: The image tag '0.1.0' already exists in the 'llm-dev' repository "
            "and cannot be overwritten because the repository is immutable.")

FAKE_BUILDER = '''#!{python}
import sys
args = sys.argv[1:]
if args[0] == "push":
    print("Getting image source signatures")
    print({said!r}, file=sys.stderr)
    sys.exit(1)
if args[:2] == ["image", "inspect"] or args[:1] == ["inspect"]:
    sys.exit(0 if args[-1] in {have!r} else 1)
'''


def fake(tmp_path: Path, name: str, said: str = "", have: tuple = ()) -> ib.Builder:
    path = tmp_path / name
    path.write_text(FAKE_BUILDER.format(python=sys.executable, said=said, have=list(have)))
    path.chmod(0o755)
    return ib.Builder(name, str(path))


@pytest.mark.parametrize("name", ["buildah", "podman"])
def test_a_tag_the_registry_holds_is_a_clear_error_naming_the_tag_to_push(tmp_path, name):
    builder = fake(tmp_path, name, said=f"Error: writing manifest: {ECR_SAYS}")
    with pytest.raises(ConfigError) as caught:
        ib.push_image(builder, "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev:0.1.0")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "already holds a 0.1.0 tag" in caught.value.message
    assert "immutable" in caught.value.message
    assert "<version>-<git commit>" in caught.value.hint


def test_other_push_failures_stay_what_they_were(tmp_path):
    from llmcloud.stacks.errors import DeploymentError

    builder = fake(tmp_path, "buildah", said="Error: authentication required")
    with pytest.raises(DeploymentError) as caught:
        ib.push_image(builder, "reg.example.com/llm/server:1")
    assert not isinstance(caught.value, ConfigError)


def _checkout(tmp_path: Path) -> Path:
    source = tmp_path / "llmcloud"
    (source / "inference_image").mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (source / "inference_image" / "Dockerfile").write_text("FROM scratch\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(source), *command], check=True, env=env)
    return source


@pytest.mark.parametrize("name", ["buildah", "docker"])
def test_push_defaults_to_this_checkouts_build(tmp_path, monkeypatch, name):
    # it pushed `llmcloud-server:<version>`, which an immutable registry takes once per
    # llmcloud release: every later build's push was refused
    source = _checkout(tmp_path)
    monkeypatch.setattr(ib, "source_checkout", lambda: source)
    unique, version = ib.default_tags("llmcloud-server", source)
    assert unique.startswith(f"{version}-")
    assert ib.default_push_image(fake(tmp_path, name, have=(unique, version)),
                                 "llmcloud-server") == unique
    # built with --tag or from another checkout: the release tag, as before
    assert ib.default_push_image(fake(tmp_path, name, have=(version,)),
                                 "llmcloud-server") == version


def test_without_a_checkout_the_push_defaults_to_the_release_tag(tmp_path, monkeypatch):
    def no_checkout():
        raise ConfigError("no source")

    monkeypatch.setattr(ib, "source_checkout", no_checkout)
    assert ib.default_push_image(fake(tmp_path, "buildah"), "llmcloud-server") == \
        f"llmcloud-server:{ib.llmcloud_version()}"


def test_the_local_image_check_asks_a_real_buildah(buildah_env, base_image, monkeypatch):
    for key, value in buildah_env.items():
        monkeypatch.setenv(key, value)
    buildah = ib.Builder("buildah", "buildah")
    assert ib.local_image_exists(buildah, base_image)
    assert not ib.local_image_exists(buildah, "localhost/llmcloud-no-such-image:1")
