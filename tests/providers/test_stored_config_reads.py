"""Promote (and `up` on a deployed cloud stack) check a stored version's `model.task` and
its fit on the GPUs, and both read the version's config.json from the model store: a
cloud read each (S3, GCS, Blob storage). One read serves both checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers import model_fit, rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.config import resolve_spec
from tests.providers.untouched_stack import UntouchedProvider

GB = 10**9
#: a causal model: it can be served as the spec's text-generation
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
          "torch_dtype": "bfloat16"}


def _store(tmp_path: Path, version: str) -> str:
    """A store holding `version` of m: 16 GB of weights, a good part of a g6.xlarge's 24 GB
    GPU, so that the fit check reads the config too."""
    folder = tmp_path / "store" / "m" / version
    folder.mkdir(parents=True)
    files = {"config.json": 700, "model.safetensors": 16 * GB}
    (folder / "manifest.json").write_text(json.dumps({
        "format": 1, "name": "m", "version": version,
        "files": [{"path": p, "sha256": "0" * 64, "size": s} for p, s in files.items()]}))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return str(tmp_path / "store")


def _ctx(tmp_path: Path, version: str) -> StackContext:
    spec = resolve_spec(file_values={"provider": "aws", "compute": {
        "instance_type": "g6.xlarge"}, "model": {"name": "m", "version": version,
                                                 "task": "text-generation"}}, environ={})
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The config.json reads of the store, as the version addresses they read."""
    done: list[str] = []
    real = model_fit.read_store_config

    def counted(version_uri: str) -> dict:
        done.append(version_uri)
        return real(version_uri)

    monkeypatch.setattr(model_fit, "read_store_config", counted)
    return done


def test_promote_reads_the_versions_config_once(tmp_path, reads) -> None:
    store = _store(tmp_path, "v2")
    # past both checks: the (untouched) stack's config change is what stops it
    with pytest.raises(AssertionError, match="config was changed"):
        rollout.promote(UntouchedProvider(store), _ctx(tmp_path, "v1"), "v2")
    assert len(reads) == 1, reads


@pytest.mark.store_reads
def test_up_reads_the_versions_config_once(tmp_path, reads) -> None:
    store = _store(tmp_path, "v2")
    model_fit.check_before_up(_ctx(tmp_path, "v2"), {"model_store_uri": store})
    assert len(reads) == 1, reads


def test_a_check_alone_still_reads_what_it_needs(tmp_path, reads) -> None:
    store = _store(tmp_path, "v2")
    rollout.check_task(_ctx(tmp_path, "v2").spec, store, "v2")
    assert len(reads) == 1
