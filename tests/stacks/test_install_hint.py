"""The install command a missing-extra error names: llmcloud is installed from a clone (it
is not on an index), so the command must name that clone, or say to run it in one."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from llmcloud.stacks.errors import install_hint


class _Distribution:
    def __init__(self, direct_url: dict | None):
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


@pytest.fixture
def installed(monkeypatch):
    def install(direct_url: dict | None) -> None:
        # first the record a build leaves in the clone (llmcloud.egg-info), which has none
        monkeypatch.setattr(importlib.metadata, "distributions",
                            lambda name: iter([_Distribution(None), _Distribution(direct_url)]))
    return install


def _clone(tmp_path: Path) -> Path:
    folder = tmp_path / "llm cloud"  # a space: the command quotes the path
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[project]\nname = 'llmcloud'\n")
    return folder


def test_an_editable_install_names_its_clone(tmp_path, installed) -> None:
    # it said `pip install "llmcloud[aws]"`, which asks an index for an unpublished name
    folder = _clone(tmp_path)
    installed({"url": folder.as_uri(), "dir_info": {"editable": True}})
    assert install_hint("aws") == f'pip install -e "{folder}[aws]"'


def test_a_plain_install_from_a_folder_names_that_folder(tmp_path, installed) -> None:
    folder = _clone(tmp_path)
    installed({"url": folder.as_uri(), "dir_info": {}})
    assert install_hint("aws,gcp") == f'pip install "{folder}[aws,gcp]"'


@pytest.mark.parametrize("direct_url", [
    None,  # from a wheel or an index: no direct_url.json
    {"url": "file:///gone/src", "dir_info": {}},  # the image's build folder, deleted since
    {"url": "https://example.com/llmcloud.whl", "archive_info": {}},
], ids=["no-record", "folder-gone", "archive"])
def test_otherwise_it_says_to_install_from_a_clone(installed, direct_url) -> None:
    installed(direct_url)
    assert install_hint("runtime") == 'pip install -e ".[runtime]" (in a clone of llmcloud)'


def test_this_environment_names_the_clone_it_was_installed_from() -> None:
    # run from the clone, the build's llmcloud.egg-info comes first and has no record
    origins = [json.loads(d.read_text("direct_url.json") or "{}")
               for d in importlib.metadata.distributions(name="llmcloud")]
    folders = [o["url"] for o in origins if "dir_info" in o]
    if not folders:
        pytest.skip("llmcloud is not installed from a folder here")
    assert install_hint("azure").endswith('[azure]"'), install_hint("azure")
