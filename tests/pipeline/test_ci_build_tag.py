"""The CI examples' build and push lines, run by bash in a clean checkout: the image they
build is tagged with the checkout's commit (not `-dirty-`), and the push takes that image.
`llmcloud` is a stub that answers as `image build` does, from the real `default_tags`, and
records what `image push` was given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"

STUB = f"""#!/bin/bash
if [ "$1 $2" = "image build" ]; then
  exec {sys.executable} -c 'import json; from pathlib import Path
from llmcloud.providers.image_builder import default_tags
print(json.dumps({{"image": default_tags("llmcloud-server", Path.cwd())[0]}}))'
fi
if [ "$1 $2" = "image push" ]; then
  echo "$3" >> "$PUSHED"
  echo '{{"pinned": "r@sha256:0"}}'
fi
"""


def _image_lines(name: str) -> list[str]:
    """The build job's shell lines that call `llmcloud image`, in order."""
    document = yaml.safe_load((EXAMPLES / name).read_text())
    if "jobs" in document:  # GitHub Actions
        scripts = [s["run"] for s in document["jobs"]["build"]["steps"] if "run" in s]
        lines = [line for script in scripts for line in script.splitlines()]
    else:
        lines = [str(line) for line in document["build"]["script"]]
    return [line for line in lines if "llmcloud image " in line]


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_build_tags_the_commit_and_pushes_that_image(name: str, tmp_path: Path) -> None:
    # `image build --json > build.json` made build.json in the checkout before the build
    # looked at it: every CI image was tagged `<commit>-dirty-<hash>`
    checkout, outside, stubs = tmp_path / "checkout", tmp_path / "outside", tmp_path / "bin"
    for folder in (checkout, outside, stubs):
        folder.mkdir()
    (checkout / "README.md").write_text("a fork of llmcloud\n")
    _git(checkout, "init", "-q")
    _git(checkout, "add", "README.md")
    _git(checkout, "-c", "user.name=ci", "-c", "user.email=ci@example.com",
         "commit", "-q", "-m", "release")
    commit = _git(checkout, "rev-parse", "--short=12", "HEAD")
    (stubs / "llmcloud").write_text(STUB)
    (stubs / "llmcloud").chmod(0o755)
    (stubs / "python").symlink_to(sys.executable)  # GitLab's lines read JSON with python
    pushed = tmp_path / "pushed.txt"

    # GitLab's job writes to /tmp: here, a folder of the test's, outside the checkout too
    script = "\n".join(line.replace("/tmp/", f"{outside}/") for line in _image_lines(name))
    env = {"PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "RUNNER_TEMP": str(outside), "PUSHED": str(pushed), "GITHUB_OUTPUT": "/dev/null"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    images = pushed.read_text().split()
    assert len(images) == 2  # staging's registry and prod's
    for image in images:
        assert image == f"llmcloud-server:{_version()}-{commit}"


def _version() -> str:
    from llmcloud.providers.image_builder import llmcloud_version

    return llmcloud_version()
