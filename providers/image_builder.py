"""Build and push the model server image with whatever builder the machine has.

docker (buildx), podman and buildah are driven through their own command lines, so their
configuration (storage driver, isolation, registries.conf, credential helpers) applies as
the user set it up; llmcloud adds nothing but the arguments. Pushes always report the
digest the registry stored, because stacks deploy images by digest, never by a mutable tag.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmcloud.stacks.errors import ConfigError, DeploymentError, MissingToolError

BUILDERS = ("docker", "podman", "buildah")
#: an ECR repository's URL (`123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-dev/m-server`)
ECR_REPOSITORY = re.compile(
    r"^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9._/-]+$")
INSTALL_HINT = "install one of them, e.g. apt-get install buildah (or podman, or docker)"


@dataclass(frozen=True)
class Builder:
    """A container builder found on this machine."""

    name: str
    path: str


def _works(command: Sequence[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detect_builder(preferred: str | None = None, *, which=shutil.which, works=_works) -> Builder:
    """The builder to use: `preferred` if given, else docker buildx (when its daemon answers),
    podman, buildah. Raise `MissingToolError` (exit 3) when there is none."""
    if preferred is not None and preferred not in BUILDERS:
        raise ConfigError(
            f"unknown builder '{preferred}'", context=f"choose one of: {', '.join(BUILDERS)}",
            hint="llmcloud image build --builder buildah",
        )
    for name in (preferred,) if preferred else BUILDERS:
        path = which(name)
        if path is None:
            continue
        if name == "docker" and not (
            works([path, "buildx", "version"]) and works([path, "info"])
        ):
            if preferred:
                raise MissingToolError(
                    "docker is installed but cannot build (no buildx, or no daemon running)",
                    context="`docker buildx version` and `docker info` must both succeed",
                    hint="start the Docker daemon, or use --builder buildah",
                )
            continue
        return Builder(name, path)
    wanted = preferred or " or ".join(BUILDERS)
    raise MissingToolError(
        f"no container builder found ({wanted})",
        context="llmcloud builds the image with docker buildx, podman or buildah",
        hint=INSTALL_HINT,
    )


def build_command(
    builder: Builder,
    *,
    context: Path,
    dockerfile: Path,
    tags: Sequence[str],
    build_args: Mapping[str, str],
    platform: str | None,
) -> list[str]:
    """The command line that builds the image with `builder`."""
    verb = ["buildx", "build", "--load"] if builder.name == "docker" else ["build"]
    command = [builder.path, *verb, "--file", str(dockerfile)]
    if builder.name != "docker":
        # buildah and podman build OCI images by default, and the OCI format has no
        # HEALTHCHECK: the Dockerfile's was dropped (with a warning) from every image
        command += ["--format", "docker"]
    for tag in tags:
        command += ["--tag", tag]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    if platform:
        command += ["--platform", platform]
    return [*command, str(context)]


def run_builder(command: Sequence[str], what: str, *, stdin: str | None = None,
                answer_only: bool = False) -> str:
    """Run a builder command and return its output (its warnings too, unless
    `answer_only`: then stdout alone, for an answer to parse); raise on failure."""
    process = None
    try:
        process = subprocess.Popen(
            command, text=True, stdin=subprocess.PIPE if stdin is not None else None,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE if answer_only else subprocess.STDOUT,
            start_new_session=True,  # it hears of an interruption from llmcloud (see _stop)
        )
        stdout, stderr = process.communicate(stdin)
    except KeyboardInterrupt:
        if process is not None:
            _stop(process)
        raise
    if process.returncode != 0:
        said = stdout + (stderr or "")
        tail = [line for line in said.splitlines() if line.strip()][-3:]
        raise DeploymentError(
            f"{what} failed (exit {process.returncode})",
            context=" | ".join(tail) or "no output",
            hint="run the command again with --debug, or run the builder by hand: "
            + " ".join(command[:3]) + " ...",
        )
    return stdout


#: how long a builder gets to stop by itself (and clean up) after llmcloud passed it
#: Ctrl-C or SIGTERM, before it is killed: under `docker stop`'s 10 s grace period
BUILDER_STOP_SECONDS = 5.0


def _stop(process: subprocess.Popen) -> None:
    """Pass the builder the interruption llmcloud got (SIGTERM after SIGTERM, else SIGINT),
    wait `BUILDER_STOP_SECONDS` for it to stop, then kill it; a second interruption kills it
    at once.

    Python's own handling SIGKILLed the builder a quarter of a second after a Ctrl-C (and
    at once after a SIGTERM, which reached llmcloud alone): it could not clean up, and what
    it ran (buildah's RUN steps, docker's buildx plugin before Docker 25) went on, orphaned.
    In a session of its own, it gets exactly one signal for each llmcloud gets, whether the
    signal reached llmcloud's whole process group (a terminal's Ctrl-C) or llmcloud alone.
    """
    errors = sys.modules.get("llmcloud.cli.errors")  # (the command line's, which knows)
    sigterm = errors is not None and errors.terminated()
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM if sigterm else signal.SIGINT)
        process.communicate(timeout=BUILDER_STOP_SECONDS)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        process.kill()
        process.wait()


#: what registries with immutable tags answer a push to a tag they hold: ECR ("... cannot
#: be overwritten because the repository is immutable", even for the same image), Artifact
#: Registry and others ("tag ... already exists and cannot be overwritten")
TAG_TAKEN = re.compile(r"cannot be overwritten|tag is immutable|immutable tag", re.IGNORECASE)


def push_image(
    builder: Builder,
    image: str,
    *,
    username: str | None = None,
    password: str | None = None,
    tls_verify: bool = True,
) -> str:
    """Push `image` (a full reference with its registry) and return the stored digest."""
    if (username is None) != (password is None):
        raise ConfigError(
            "a registry username needs a password and the other way round",
            hint="llmcloud image push IMAGE --username USER --password-stdin < token",
        )
    try:
        return _push(builder, image, username, password, tls_verify)
    except DeploymentError as exc:
        if not TAG_TAKEN.search(exc.context or ""):
            raise
        raise ConfigError(
            f"the registry already holds a {image.rsplit(':', 1)[-1]} tag, and its tags are "
            "immutable",
            context="a tag names one image for good there (llmcloud's stacks make their "
                    "registries so: servers pull by digest); ECR refuses even the same "
                    f"image again ({exc.context})",
            hint="push this build under a tag of its own: `llmcloud image build` tags "
                 "<version>-<git commit> (push that one), or --tag NAME; an image pushed "
                 "before is deployed by the digest its push printed") from None


def _push(builder: Builder, image: str, username: str | None, password: str | None,
          tls_verify: bool) -> str:
    if builder.name == "docker":
        return _docker_push(builder, image, username, password)
    with tempfile.TemporaryDirectory() as folder:
        digest_file = Path(folder) / "digest"
        command = [builder.path, "push", "--digestfile", str(digest_file)]
        if not tls_verify:
            command.append("--tls-verify=false")
        if username is not None:
            # --creds puts the password in the process list; an auth file does not
            auth = Path(folder) / "auth.json"
            _write_auth_file(auth, image, username, password or "")
            command += ["--authfile", str(auth)]
        command += [image, f"docker://{image}"]
        run_builder(command, f"pushing {image}")
        return digest_file.read_text().strip()


def _write_auth_file(path: Path, image: str, username: str, password: str) -> None:
    registry = image.split("/", 1)[0]
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    os.chmod(path, 0o600)


def _docker_push(builder: Builder, image: str, username: str | None, password: str | None) -> str:
    if username is None:
        return _docker_push_as(builder, image, [])
    # `docker login` would leave the registry's token in ~/.docker/config.json, in plain
    # text unless a credential helper is set, long after this push: the login goes to a
    # private copy of the user's settings instead, deleted with the push
    with tempfile.TemporaryDirectory() as folder:
        registry = image.split("/", 1)[0]
        _private_docker_config(Path(folder), registry)
        config = ["--config", folder]
        run_builder(
            [builder.path, *config, "login", registry, "--username", username,
             "--password-stdin"],
            f"logging in to {registry}", stdin=password,
        )
        return _docker_push_as(builder, image, config)


def _private_docker_config(folder: Path, registry: str) -> None:
    """The user's docker settings (context, proxies, other registries' credential helpers)
    without their registry logins, in ``folder``, where the login to ``registry`` stays:
    its contexts are the user's own."""
    home = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        settings = json.loads((home / "config.json").read_text())
    except (OSError, ValueError):
        settings = {}
    settings = settings if isinstance(settings, dict) else {}
    # `docker login` hands the token to the credential store (`credsStore`, or the
    # registry's `credHelpers` entry) when one is set: it stayed in the user's keychain
    # after the push, over their own login, and ECR's helper refuses to store at all
    # ("not implemented"). Without one, docker picks the platform's keychain itself unless
    # the file names some login: the registry's empty entry keeps the token in this file.
    settings.pop("credsStore", None)
    helpers = settings.get("credHelpers")
    if isinstance(helpers, dict):
        helpers.pop(registry, None)
    settings["auths"] = {registry: {}}
    (folder / "config.json").write_text(json.dumps(settings))
    os.chmod(folder / "config.json", 0o600)
    if (home / "contexts").is_dir():
        (folder / "contexts").symlink_to(home / "contexts")


def _docker_push_as(builder: Builder, image: str, config: list[str]) -> str:
    said = run_builder([builder.path, *config, "push", image], f"pushing {image}")
    # "TAG: digest: sha256:... size: N", docker's last line, is what the registry stored
    # for this push; the image's RepoDigests may also hold digests of earlier pushes
    pushed = re.findall(r"\bdigest: (sha256:[0-9a-f]{64})\b", said, flags=re.IGNORECASE)
    if pushed:
        return pushed[-1]
    out = run_builder(
        [builder.path, *config, "inspect", "--format", "{{json .RepoDigests}}", image],
        "reading the digest", answer_only=True,
    )
    repository = pinned(image, "").rstrip("@")
    try:
        entries = json.loads(out or "[]") or []
    except ValueError:
        entries = []
    found = [e.split("@", 1)[1] for e in entries
             if isinstance(e, str) and e.startswith(repository + "@")]
    if len(found) == 1:
        return found[0]
    raise DeploymentError(
        f"docker did not report the digest it pushed {image} as",
        context=f"docker inspect's RepoDigests: {out.strip() or 'none'}",
        hint=f"docker buildx imagetools inspect {image} shows the digest the registry holds",
    )


def image_reference(registry: str | None, image: str) -> str:
    """`image` under `registry` (`host/path`), unless `image` already names a registry.

    An ECR URL with a path names a repository (an AWS stack's `registry_url` is one), not a
    registry: the image goes into it with its tag (`REPOSITORY:TAG`). ECR creates no
    repository on push, and the servers may pull from the stack's repository only."""
    if names_registry(image) or not registry:
        return image
    local = image.removeprefix("localhost/")  # podman's and buildah's name for local images
    if ECR_REPOSITORY.match(registry.rstrip("/")):
        return f"{registry.rstrip('/')}:{_tag_of(local)}"
    return f"{registry.rstrip('/')}/{local}"


def _tag_of(image: str) -> str:
    """The tag of a local image reference (`latest` when it names none, as docker reads it)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.partition(":")[2] or "latest"


def llmcloud_version() -> str:
    """The installed llmcloud version (tags the image)."""
    from importlib.metadata import version

    return version("llmcloud")


def source_checkout() -> Path:
    """The llmcloud checkout this llmcloud runs from (the image's build context)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "inference_image" / "Dockerfile").is_file():
        return root
    raise ConfigError(
        "the image is built from llmcloud's source, and this installation has none",
        context=f"no pyproject.toml and inference_image/Dockerfile under {root}",
        hint="run it from a checkout of llmcloud (pip install -e .), or pass "
        "--context DIR --file DIR/inference_image/Dockerfile",
    )


def git_commit(folder: Path) -> str | None:
    """The short commit of `folder`'s git checkout, or None outside one. A checkout with
    uncommitted changes gets `-dirty-` and a hash of them: the image is not that commit's,
    and two builds of different changes must not share a tag."""
    commit = _git(folder, "rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=normal")
    if not status:
        return commit
    changes = hashlib.sha256((status + (_git(folder, "diff", "HEAD", "--binary") or ""))
                             .encode())
    # untracked files are in the build context too, and `git diff` leaves them out
    for name in (_git(folder, "ls-files", "--others", "--exclude-standard") or "").splitlines():
        with contextlib.suppress(OSError):
            changes.update(name.encode() + b"\0" + (Path(folder) / name).read_bytes())
    return f"{commit}-dirty-{changes.hexdigest()[:8]}"


def _git(folder: Path, *args: str) -> str | None:
    """A git command's output in `folder` (stripped), or None when it fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def default_tags(repository: str, source: Path) -> list[str]:
    """`repository:<version>-<commit>` (unique) and `repository:<version>`."""
    version = llmcloud_version()
    commit = git_commit(source)
    tags = [f"{repository}:{version}-{commit}"] if commit else []
    return [*tags, f"{repository}:{version}"]


def build_image(
    builder: Builder,
    *,
    context: Path,
    dockerfile: Path,
    tags: Sequence[str],
    build_args: Mapping[str, str],
    platform: str | None,
) -> str:
    """Build the image and return its local id."""
    if not dockerfile.is_file():
        raise ConfigError(f"no Dockerfile at {dockerfile}", hint="pass --file PATH")
    with tempfile.TemporaryDirectory() as folder:
        iid = Path(folder) / "iid"
        command = build_command(
            builder, context=context, dockerfile=dockerfile, tags=tags,
            build_args=build_args, platform=platform,
        )
        command[-1:-1] = [*_single_manifest(builder), "--iidfile", str(iid)]
        run_builder(command, f"building {tags[0]}")
        return iid.read_text().strip()


def _single_manifest(builder: Builder) -> list[str]:
    """buildx (0.10 and later) adds a provenance attestation, which makes the image an OCI
    index wherever the image store keeps it (Docker Desktop's and newer engines' containerd
    store): `docker push` then pushed the index, and SageMaker refuses to create a model from
    an OCI index or manifest. Without it the image is one Docker manifest, as buildah's and
    podman's `--format docker` make it."""
    return ["--provenance=false"] if builder.name == "docker" else []


def local_image_exists(builder: Builder, image: str) -> bool:
    """Whether the builder's local store has an image of that name."""
    command = ([builder.path, "inspect", "--type", "image", image] if builder.name == "buildah"
               else [builder.path, "image", "inspect", image])
    try:
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def default_push_image(builder: Builder, repository: str) -> str:
    """The image `image push` pushes when none is named: this checkout's own build
    (`repository:<version>-<git commit>`, as `default_tags` names it) when the builder has
    it, else `repository:<version>`. The commit tag is the one a registry with immutable
    tags takes again at the next build; `<version>` it takes once per llmcloud release."""
    try:
        tags = default_tags(repository, source_checkout())
    except ConfigError:  # no checkout: `image build` needed --context, and tagged <version>
        return f"{repository}:{llmcloud_version()}"
    for tag in tags[:-1]:
        if local_image_exists(builder, tag):
            return tag
    return tags[-1]


def tag_image(builder: Builder, source: str, target: str) -> None:
    """Give the local image `source` the name `target`."""
    run_builder([builder.path, "tag", source, target], f"tagging {source} as {target}")


def names_registry(image: str) -> bool:
    """Whether an image reference starts with a registry host (`host.tld/`, `host:5000/`).

    A bare `localhost/` is how podman and buildah name local images, not a registry."""
    first = image.split("/", 1)[0]
    return "/" in image and ("." in first or ":" in first)


def pinned(image: str, digest: str) -> str:
    """`registry/repo@sha256:...`: the reference a stack deploys."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: name.rfind(":")]
    return f"{name}@{digest}"
