"""What users install and build: the inference image's Dockerfile and pinned requirements,
the wheel's package data, and the CI examples' way of installing llmcloud. Static checks
(no network, no image build): each one stands for a failure a user met."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (ROOT / "inference_image" / "Dockerfile").read_text()
EXAMPLES = ROOT / "examples" / "ci"


def _package_dirs() -> dict[str, str]:
    """`llmcloud.x.y` -> its folder in the checkout (`x/y`)."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    roots = setuptools["package-dir"]
    found = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        for cut in range(len(parts), 0, -1):
            if ".".join(parts[:cut]) in roots:
                found[package] = "/".join([roots[".".join(parts[:cut])], *parts[cut:]])
                break
    return found


def _copied_to_src() -> set[str]:
    """The checkout paths the Dockerfile copies into /src (what `pip install /src` sees)."""
    copied = set()
    for line in DOCKERFILE.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            *sources, target = words[1:]
            if target.rstrip("/") == "/src" or target.startswith("/src/"):
                copied.update(sources)
    return copied


def test_dockerfile_copies_every_package_folder_the_install_needs() -> None:
    # `pip install --no-deps /src` failed ("package directory 'console' does not exist"):
    # pyproject.toml lists llmcloud.console, the Dockerfile did not copy console/, and the
    # image could not be built at all.
    copied = _copied_to_src()
    assert {"pyproject.toml", "README.md"} <= copied
    for package, folder in _package_dirs().items():
        top = folder.split("/")[0]
        assert top in copied, f"the Dockerfile does not copy {top}/ ({package})"


def test_requirements_pin_the_runtime_extra_within_pyproject() -> None:
    pins = {}
    for line in (ROOT / "inference_image" / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line} is not pinned"
            pins[canonicalize_name(requirement.name)] = spec.version
    runtime = PYPROJECT["project"]["optional-dependencies"]["runtime"]
    pydantic = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("pydantic")]
    for dependency in [*runtime, *pydantic]:  # the server imports pydantic too
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in the runtime extra but not in requirements.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {name}=={pins[name]}, pyproject wants {requirement}")


def _matches_package_data(relative: str, package: str) -> bool:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    patterns = [*data.get("*", []), *data.get(package, [])]
    return any(fnmatch.fnmatch(relative, pattern) and
               relative.count("/") == pattern.count("/") for pattern in patterns)


def test_every_tracked_data_file_of_a_package_is_package_data() -> None:
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True,
                             text=True, check=False).stdout.splitlines()
    if not tracked:
        pytest.skip("not a git checkout")
    dirs = _package_dirs()
    folders = sorted(dirs.items(), key=lambda item: -len(item[1]))
    for name in tracked:
        if name.endswith(".py") or name.startswith("tests/"):
            continue
        for package, folder in folders:  # the innermost package that holds the file
            if name.startswith(folder + "/"):
                relative = name[len(folder) + 1:]
                assert _matches_package_data(relative, package), (
                    f"{name} is not in the wheel (add it to package-data of {package})")
                break


def _example_scripts(name: str) -> dict[str, list[str]]:
    """job -> its shell lines (GitLab's default before_script included)."""
    document = yaml.safe_load((EXAMPLES / name).read_text())
    jobs: dict[str, list[str]] = {}
    if "jobs" in document:  # GitHub Actions
        for job, spec in document["jobs"].items():
            jobs[job] = [step["run"] for step in spec["steps"] if "run" in step]
    else:
        default = document.get("default", {}).get("before_script", [])
        for job, spec in document.items():
            if isinstance(spec, dict) and "script" in spec:
                jobs[job] = [*spec.get("before_script", default), *spec["script"]]
    return jobs


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_install_llmcloud_from_the_checkout(name: str) -> None:
    # `pip install "llmcloud[aws]"` asked an index for a distribution that is not published
    # there; and an installed (not editable) llmcloud has no source, so `llmcloud image build`
    # exits 2 ("the image is built from llmcloud's source, and this installation has none").
    for job, lines in _example_scripts(name).items():
        installs = [line for line in lines if re.search(r"pip install .*llmcloud|pip install "
                                                        r".*[\"']?\.\[", line)]
        assert installs, f"{name}: job {job} never installs llmcloud"
        for line in installs:
            assert "llmcloud[" not in line, f"{name}: job {job} installs llmcloud by name"
            assert re.search(r"pip install (-e|--editable) [\"']?\.", line), (
                f"{name}: job {job} must install the checkout editable: {line}")


def test_gitlab_build_job_has_the_builder_it_asks_for() -> None:
    # the job ran in python:3.11 (no docker CLI) with --builder docker: exit 3, no image
    document = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    job = document["build"]
    image = job.get("image", document.get("default", {}).get("image", ""))
    script = "\n".join(job["script"])
    builders = set(re.findall(r"--builder (\w+)", script))
    assert builders, "the build job should name its builder"
    for builder in builders:
        if builder == "docker":
            assert str(image).startswith("docker"), f"{image} has no docker CLI"
        else:
            assert f"install -y --no-install-recommends {builder}" in script or str(
                image).split("/")[-1].startswith(builder), f"{image} has no {builder}"
