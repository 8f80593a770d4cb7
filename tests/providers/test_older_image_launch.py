"""A stack keeps the image it was deployed with while llmcloud is upgraded: each cloud's real
`docker run` (its entry point, or the Dockerfile's ENTRYPOINT) is run as the container would
run it, against the real argument parser of a server that predates the flags this llmcloud
adds by itself. Before, such a server exited "unrecognized arguments" at every start: after
the next `up` or scale-out every server of the group crash-looped."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llmcloud.providers.server_launch import LATER_FLAGS
from tests.providers.boot_scripts import boot_script

DOCKERFILE = Path(__file__).resolve().parents[2] / "inference_image" / "Dockerfile"
#: a model URI with a space and a `$`: it must reach the server as one argument, as written
ODD_URI = "s3://b/models/my model/$HOME"

#: `llmcloud-server` in the image: the real parser, less the flags in $LACKS (an image of an
#: earlier release); it prints what it parsed
SERVER = f"""#!{sys.executable}
import argparse, json, os, sys
from llmcloud.inference_image.server_options import build_parser
lacks = set(os.environ.get("LACKS", "").split())
add = argparse._ActionsContainer.add_argument
def add_known(self, *names, **kw):
    return None if lacks & set(names) else add(self, *names, **kw)
argparse._ActionsContainer.add_argument = add_known
print(json.dumps(vars(build_parser().parse_args(sys.argv[1:])), default=str))
"""


def _script(cloud: str) -> str:
    return boot_script(cloud, model_uri=ODD_URI, port=9000)


def _container_argv(script: str) -> list[str]:
    """What the container of the boot script's `docker run` runs: its --entrypoint (else
    the Dockerfile's ENTRYPOINT) and the words after the image."""
    (line,) = [line for line in script.splitlines() if line.startswith("docker run ")]
    words = shlex.split(line)
    at = words.index("$IMAGE")
    options, args = words[:at], words[at + 1:]
    if "--entrypoint" in options:
        return [options[options.index("--entrypoint") + 1], *args]
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE.read_text(), re.M)
    return [*json.loads(entrypoint), *args]


def _run(cloud: str, tmp_path: Path, lacks: tuple[str, ...] = (),
         server: str = SERVER) -> subprocess.CompletedProcess:
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "llmcloud-server").write_text(server)
    (bin_ / "llmcloud-server").chmod(0o755)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "HOME": str(tmp_path), "LACKS": " ".join(lacks)}
    return subprocess.run(_container_argv(_script(cloud)), env=env, capture_output=True,
                          text=True, timeout=60)


CLOUDS = ["aws", "gcp", "azure"]


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("lacks", [LATER_FLAGS, ("--leave-seconds",)],
                         ids=["first-release", "before-leave"])
def test_an_older_image_starts_without_the_flags_it_does_not_know(cloud, lacks, tmp_path):
    done = _run(cloud, tmp_path, lacks)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["model"] == ODD_URI and parsed["port"] == 9000
    passed = [flag for flag in lacks if flag in _container_argv(_script(cloud))]
    for flag in lacks:
        assert flag.lstrip("-").replace("-", "_") not in parsed
        assert (f"predates {flag}" in done.stderr) == (flag in passed)
    assert ("llmcloud image push" in done.stderr) == bool(passed)  # Azure: no leave
    if "--keep-alive-timeout" not in lacks:  # what the image knows still reaches it
        assert parsed["keep_alive_timeout"] == 620


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_current_image_gets_every_flag(cloud, tmp_path):
    done = _run(cloud, tmp_path)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["keep_alive_timeout"] == 620 and parsed["model"] == ODD_URI
    assert parsed["leave_seconds"] == {"aws": 65, "gcp": 20, "azure": 15}[cloud]
    assert parsed["strip_path_prefix"] == ("/api" if cloud == "aws" else None)
    assert "predates" not in done.stderr


def test_a_server_whose_help_fails_gets_every_flag(tmp_path):
    # nothing is left out on a guess: the server says itself what is wrong
    server = SERVER.replace("lacks = set(", "sys.argv[1:2] == ['--help'] and sys.exit(1)\n"
                                            "lacks = set(")
    done = _run("gcp", tmp_path, server=server)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["leave_seconds"] == 20


def test_the_later_flags_are_the_servers_own():
    # a misspelt one would never be left out: an older image would exit at it again
    from llmcloud.inference_image.server_options import build_parser

    known = {name for action in build_parser()._actions for name in action.option_strings}
    assert set(LATER_FLAGS) <= known


def test_the_server_says_which_release_it_is_from(capsys):
    from importlib.metadata import version

    from llmcloud.inference_image.server_options import build_parser

    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmcloud-server {version('llmcloud')}"
