"""A stack's `model.task` reaches every server as `--task` (SageMaker: LLMCLOUD_TASK), for
every version it serves. Promoting a T5 where the spec says text-generation (or a Llama
where it says text2text-generation) loaded on no server, and the rollout said so only
after the cloud's boot allowance: promote (and `up`) now refuse it from the uploaded
version's config.json, and the server says why in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import build_causal, build_seq2seq

from llmcloud.inference_image.loader import ModelLoadError, load_model
from llmcloud.providers import rollout
from llmcloud.providers.base import StackContext
from llmcloud.providers.model_upload import upload_model
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError, ExitCode
from tests.providers.untouched_stack import UntouchedProvider


def _uploaded(tmp_path: Path, build, version: str) -> str:
    """A store holding ``build``'s model as version ``version`` of t5, as `model upload`
    writes it."""
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    upload_model(build(tmp_path / version), str(store), name="t5", version=version)
    return str(store)


def _promote(tmp_path: Path, store: str, task: str | None):
    spec = resolve_spec(file_values={"provider": "aws", "model": {
        "name": "t5", "version": "v1", "task": task}}, environ={})
    ctx = StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})
    return rollout.promote(UntouchedProvider(store), ctx, "v2")


@pytest.mark.parametrize(("build", "task", "kind"), [
    (build_seq2seq, "text-generation", "an encoder-decoder model"),
    (build_causal, "text2text-generation", "a causal (LlamaForCausalLM) model"),
], ids=["t5-as-causal", "llama-as-seq2seq"])
def test_promoting_a_version_of_the_other_task_is_refused_before_the_update(
        tmp_path, build, task, kind):
    store = _uploaded(tmp_path, build, "v2")
    with pytest.raises(ConfigError) as refused:
        _promote(tmp_path, store, task)
    error = refused.value
    assert error.exit_code == ExitCode.USAGE
    assert error.message == f"version v2 of t5 cannot be served as model.task {task}"
    assert kind in error.context and "unset model.task" in error.hint


def test_without_a_task_or_with_the_versions_own_either_kind_goes_on(tmp_path):
    store = _uploaded(tmp_path, build_seq2seq, "v2")
    for task in (None, "text2text-generation"):
        # past the task check: the (fake) stack's update is what stops it
        with pytest.raises(AssertionError, match="config was changed"):
            _promote(tmp_path, store, task)


def test_the_server_says_why_a_model_does_not_load_as_the_task_given(tmp_path):
    folder = build_seq2seq(tmp_path / "t5")
    with pytest.raises(ModelLoadError) as refused:
        load_model(folder, task="text-generation", device="cpu", dtype="float32")
    assert "config.json says it is an encoder-decoder model, which loads as " \
           "text2text-generation, not text-generation" in str(refused.value)
    assert "leave --task out" in str(refused.value)
    assert load_model(folder, task="text2text-generation", device="cpu",
                      dtype="float32").task == "text2text-generation"


@pytest.mark.store_reads
def test_up_refuses_a_task_the_stored_version_cannot_be_served_as(tmp_path):
    from llmcloud.providers.model_fit import check_before_up

    store = _uploaded(tmp_path, build_seq2seq, "v2")
    spec = resolve_spec(file_values={"provider": "gcp", "model": {
        "name": "t5", "version": "v2", "task": "text-generation"}}, environ={})
    ctx = StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})
    with pytest.raises(ConfigError, match="cannot be served as model.task text-generation"):
        check_before_up(ctx, {"model_store_uri": store})
