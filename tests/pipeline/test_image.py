"""`llmcloud image build` and `image push` with buildah against a real registry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llmcloud.providers import image_builder as ib
from llmcloud.stacks.errors import DeploymentError, ExitCode, MissingToolError
from tests.pipeline.conftest import PASSWORD, USER, manifest_digest


def test_no_builder_is_exit_3_with_an_install_hint() -> None:
    with pytest.raises(MissingToolError) as caught:
        ib.detect_builder(which=lambda name: None)
    assert caught.value.exit_code == ExitCode.MISSING_TOOL
    assert caught.value.message == "no container builder found (docker or podman or buildah)"
    assert "apt-get install buildah" in caught.value.hint


def test_docker_without_a_daemon_falls_through_to_buildah() -> None:
    paths = {"docker": "/usr/bin/docker", "buildah": "/usr/bin/buildah"}
    found = ib.detect_builder(which=paths.get, works=lambda command: "buildx" in command)
    assert found == ib.Builder("buildah", "/usr/bin/buildah")


def test_asking_for_docker_without_a_daemon_says_so() -> None:
    with pytest.raises(MissingToolError, match="cannot build"):
        ib.detect_builder("docker", which=lambda name: "/usr/bin/docker", works=lambda c: False)


def test_image_build_cli_exit_3_without_builders(cli, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("image", "build")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "error: no container builder found (docker or podman or buildah)")


@pytest.mark.parametrize("image,expected", [
    ("llmcloud-server:0.1.0", False),
    ("localhost/llmcloud-server:0.1.0", False),
    ("localhost:5000/team/server:1", True),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:1", True),
    ("team/server:1", False),
])
def test_names_registry(image: str, expected: bool) -> None:
    assert ib.names_registry(image) is expected


def test_reference_and_pin() -> None:
    registry = "r.example:5000/team"
    assert ib.image_reference(registry, "localhost/srv:1") == f"{registry}/srv:1"
    assert ib.image_reference(None, "srv:1") == "srv:1"
    assert ib.pinned(f"{registry}/srv:1", "sha256:ab") == f"{registry}/srv@sha256:ab"


def test_build_command_for_each_builder(tmp_path: Path) -> None:
    common = dict(context=tmp_path, dockerfile=tmp_path / "Dockerfile", tags=["a:1", "a:2"],
                  build_args={"BASE_IMAGE": "b:1"}, platform="linux/amd64")
    assert ib.build_command(ib.Builder("docker", "docker"), **common) == [
        "docker", "buildx", "build", "--load", "--file", str(tmp_path / "Dockerfile"),
        "--tag", "a:1", "--tag", "a:2", "--build-arg", "BASE_IMAGE=b:1",
        "--platform", "linux/amd64", str(tmp_path)]
    for name in ("buildah", "podman"):  # docker's format: OCI images drop the HEALTHCHECK
        assert ib.build_command(ib.Builder(name, name), **common)[:6] == [
            name, "build", "--file", str(tmp_path / "Dockerfile"), "--format", "docker"]


def test_build_and_push_with_buildah_to_an_htpasswd_registry(
    cli, monkeypatch, tmp_path: Path, registry: str, buildah_env: dict, base_image: str
) -> None:
    for key, value in buildah_env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "extra.txt").write_text("built by llmcloud image build\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE_IMAGE=scratch\nFROM ${BASE_IMAGE}\nCOPY extra.txt /extra.txt\n"
                          'HEALTHCHECK --interval=30s CMD ["/bin/true"]\n')
    built = cli("image", "build", "--builder", "buildah", "--base-image", base_image,
                "--file", str(dockerfile), "--context", str(tmp_path),
                "--tag", "localhost/llmcloud-server:test", "--json")
    assert built.exit_code == 0, built.output
    document = json.loads(built.stdout)
    assert document["builder"] == "buildah"
    assert document["image_id"].startswith("sha256:")
    # the Dockerfile's HEALTHCHECK is in the image (buildah's default OCI format drops it)
    config = json.loads(subprocess.run(
        ["buildah", "inspect", "--type", "image", "localhost/llmcloud-server:test"],
        capture_output=True, text=True, check=True,
        env={**os.environ, **buildah_env}).stdout)
    assert config["Docker"]["config"]["Healthcheck"]["Test"] == ["CMD", "/bin/true"]

    pushed = cli("image", "push", "localhost/llmcloud-server:test",
                 "--registry", f"{registry}/team", "--username", USER, "--password-stdin",
                 "--no-tls-verify", "--builder", "buildah", "--json", input=PASSWORD + "\n")
    assert pushed.exit_code == 0, pushed.output
    document = json.loads(pushed.stdout)
    assert document["image"] == f"{registry}/team/llmcloud-server:test"
    assert document["digest"] == manifest_digest(registry, "team/llmcloud-server", "test")
    assert document["pinned"] == f"{registry}/team/llmcloud-server@{document['digest']}"
    assert PASSWORD not in pushed.output


def test_push_with_a_wrong_password_fails_cleanly(
    cli, monkeypatch, registry: str, buildah_env: dict, base_image: str
) -> None:
    for key, value in buildah_env.items():
        monkeypatch.setenv(key, value)
    pushed = cli("image", "push", base_image, "--registry", f"{registry}/team",
                 "--username", USER, "--password-stdin", "--no-tls-verify",
                 "--builder", "buildah", input="wrong\n")
    assert pushed.exit_code == 1
    assert pushed.stderr.startswith(f"error: pushing {registry}/team/llmcloud-test-base:1 failed")
    assert "Traceback" not in pushed.output


def test_push_defaults_to_the_stacks_registry_with_the_clouds_login(
    cli, project, monkeypatch, registry: str, buildah_env: dict, base_image: str
) -> None:
    from llmcloud.providers.aws.provider import AwsProvider

    for key, value in buildah_env.items():
        monkeypatch.setenv(key, value)
    logins = []
    monkeypatch.setattr(AwsProvider, "outputs", lambda self, ctx: {
        "outputs": {"registry_url": f"{registry}/llm-dev"}})
    monkeypatch.setattr(AwsProvider, "registry_login", lambda self, ctx, reg: (
        logins.append(reg) or (USER, PASSWORD)))
    pushed = cli("image", "push", base_image, "--provider", "aws", "--no-tls-verify",
                 "--builder", "buildah", "--json")
    assert pushed.exit_code == 0, pushed.output
    document = json.loads(pushed.stdout)
    assert logins == [f"{registry}/llm-dev"]
    assert document["image"] == f"{registry}/llm-dev/llmcloud-test-base:1"
    assert document["digest"] == manifest_digest(registry, "llm-dev/llmcloud-test-base", "1")


def test_push_to_a_stack_that_has_no_registry_yet_says_to_run_up(
        cli, project, monkeypatch, buildah_env: dict, base_image: str) -> None:
    # it was a KeyError ("this is a bug in llmcloud"); a first `up` without an image now
    # creates the registry
    from llmcloud.providers.aws.provider import AwsProvider

    for key, value in buildah_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(AwsProvider, "outputs", lambda self, ctx: {"outputs": {}})
    pushed = cli("image", "push", base_image, "--provider", "aws", "--builder", "buildah")
    assert pushed.exit_code == 2, pushed.output
    assert "has no registry yet" in pushed.stderr
    assert "llmcloud up --provider aws --stack dev" in pushed.stderr
    assert "Traceback" not in pushed.output


FAKE_DOCKER = '''#!{python}
"""docker's login, push and inspect as far as the push needs them: login writes the token
into the config folder (--config, else DOCKER_CONFIG, else ~/.docker) as docker does."""
import base64, json, os, sys
from pathlib import Path

args = sys.argv[1:]
folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
if args[:1] == ["--config"]:
    folder, args = Path(args[1]), args[2:]
config = folder / "config.json"
settings = json.loads(config.read_text()) if config.is_file() else {{}}
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "context": settings.get("currentContext"),
                          "contexts": (folder / "contexts").is_dir()}}) + "\\n")
if args[0] == "login":
    user, secret = args[args.index("--username") + 1], sys.stdin.read()
    token = base64.b64encode(f"{{user}}:{{secret}}".encode()).decode()
    settings.setdefault("auths", {{}})[args[1]] = {{"auth": token}}
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(settings))
elif args[0] == "push":
    print(os.environ.get("FAKE_DOCKER_PUSH_SAYS", "1: digest: sha256:" + "d" * 64 + " size: 856"))
elif args[0] == "inspect":
    print("WARNING: a warning docker writes to stderr", file=sys.stderr)
    print(os.environ.get("FAKE_DOCKER_INSPECT_SAYS",
                         json.dumps(["reg.example.com/llm/server@sha256:" + "d" * 64])))
'''


def test_a_docker_login_for_a_push_leaves_no_token_behind(tmp_path, monkeypatch):
    import json
    import sys

    home = tmp_path / "home"
    (home / ".docker" / "contexts").mkdir(parents=True)
    user_config = home / ".docker" / "config.json"
    user_config.write_text(json.dumps({"currentContext": "desktop-linux", "auths": {
        "other.example.com": {"auth": "b3RoZXI6b2xk"}}}))
    before = user_config.read_text()
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    digest = ib.push_image(ib.Builder("docker", str(docker)), "reg.example.com/llm/server:1",
                           username="AWS", password="s3cret-token")
    assert digest == "sha256:" + "d" * 64
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call["args"][0] for call in calls] == ["login", "push"]
    # the user's context and contexts came along; their other logins did not
    assert all(call["context"] == "desktop-linux" and call["contexts"] for call in calls)
    assert user_config.read_text() == before  # no token written where it would stay
    import base64

    token = base64.b64encode(b"AWS:s3cret-token").decode()
    left = "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*")
                   if p.is_file() and p != log)
    assert token not in left and "s3cret" not in left


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    import sys

    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker.log"))
    return ib.Builder("docker", str(docker))


OLD, NEW = "sha256:" + "0" * 64, "sha256:" + "e" * 64
REPO = "reg.example.com/llm/server"


def test_a_docker_push_reports_the_digest_docker_pushed(fake_docker, monkeypatch):
    # RepoDigests keeps earlier pushes' digests of the repository too: the one inspect
    # matched first could be another push's
    import json

    monkeypatch.setenv("FAKE_DOCKER_PUSH_SAYS", "The push refers to repository [x]\n"
                       f"5f70bf18a086: Pushed\n1: digest: {NEW} size: 1573")
    monkeypatch.setenv("FAKE_DOCKER_INSPECT_SAYS",
                       json.dumps([f"{REPO}@{OLD}", f"{REPO}@{NEW}"]))
    assert ib.push_image(fake_docker, f"{REPO}:1") == NEW


def test_a_docker_push_without_a_digest_line_asks_inspect(fake_docker, monkeypatch):
    # inspect's stderr warning was parsed as part of its JSON answer
    monkeypatch.setenv("FAKE_DOCKER_PUSH_SAYS", "pushed")
    assert ib.push_image(fake_docker, f"{REPO}:1") == "sha256:" + "d" * 64


@pytest.mark.parametrize("inspect_says", [
    f'["{REPO}@{OLD}", "{REPO}@{NEW}"]',  # which one this push stored is not knowable
    "[]", "not json",
], ids=["two-digests", "none", "garbled"])
def test_a_docker_digest_that_cannot_be_told_is_an_error(fake_docker, monkeypatch,
                                                          inspect_says):
    monkeypatch.setenv("FAKE_DOCKER_PUSH_SAYS", "pushed")
    monkeypatch.setenv("FAKE_DOCKER_INSPECT_SAYS", inspect_says)
    with pytest.raises(DeploymentError) as caught:
        ib.push_image(fake_docker, f"{REPO}:1")
    assert caught.value.message == f"docker did not report the digest it pushed {REPO}:1 as"
    assert caught.value.hint == (f"docker buildx imagetools inspect {REPO}:1 shows the "
                                 "digest the registry holds")


def test_the_commit_tag_tells_a_checkout_with_uncommitted_changes(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "server.py").write_text("print(1)\n")
    git("add", "server.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    clean = ib.git_commit(tmp_path)
    assert clean and len(clean) == 12
    (tmp_path / "server.py").write_text("print(2)\n")
    edited = ib.git_commit(tmp_path)
    assert edited.startswith(clean + "-dirty-") and len(edited) == len(clean) + 15
    assert ib.git_commit(tmp_path) == edited  # the same changes, the same tag
    (tmp_path / "server.py").write_text("print(3)\n")
    assert ib.git_commit(tmp_path) not in (clean, edited)  # other changes, another tag
    (tmp_path / "server.py").write_text("print(1)\n")
    (tmp_path / "new.py").write_text("x = 1\n")  # an untracked file is in the build context
    untracked = ib.git_commit(tmp_path)
    assert untracked.startswith(clean + "-dirty-")
    (tmp_path / "new.py").write_text("x = 2\n")  # and so is what it holds
    assert ib.git_commit(tmp_path) not in (clean, untracked)
    (tmp_path / "new.py").unlink()
    assert ib.git_commit(tmp_path) == clean
