"""``--trust-remote-code``: a model whose architecture is Python code in its own folder
(config.json's ``auto_map``) loads only when the operator says so, and then serves as any
other; a model that merely carries an ``auto_map`` for a built-in architecture needs
nothing."""

from __future__ import annotations

import json
import shutil

import openai
import pytest
from reference import penalized_greedy
from server_process import ServerProcess

from llmcloud.inference_image.loader import ModelLoadError, load_model, needs_remote_code
from llmcloud.inference_image.manifest import MANIFEST_NAME

CONFIGURATION = '''import os
import pathlib

from transformers import LlamaConfig

if os.environ.get("TINY_MARKER"):  # shows whether this code ran
    pathlib.Path(os.environ["TINY_MARKER"]).touch()


class TinyCustomConfig(LlamaConfig):
    model_type = "tiny-custom"
'''
MODELING = '''from transformers import LlamaForCausalLM

from .configuration_tiny import TinyCustomConfig


class TinyCustomForCausalLM(LlamaForCausalLM):
    config_class = TinyCustomConfig
'''
AUTO_MAP = {"AutoConfig": "configuration_tiny.TinyCustomConfig",
            "AutoModelForCausalLM": "modeling_tiny.TinyCustomForCausalLM"}


def custom_model(causal_dir, folder, model_type="tiny-custom"):
    """The tiny Llama's weights under an architecture of its own, in code beside them."""
    shutil.copytree(causal_dir, folder)
    (folder / MANIFEST_NAME).unlink()
    (folder / "configuration_tiny.py").write_text(CONFIGURATION)
    (folder / "modeling_tiny.py").write_text(MODELING)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, architectures=["TinyCustomForCausalLM"],
                  auto_map=AUTO_MAP)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture()
def modules_cache(tmp_path, monkeypatch):
    # transformers copies a model's code into a modules cache: the servers started here get
    # a test's own (this process's transformers fixed its cache when it was imported)
    cache = tmp_path / "hf-modules"
    monkeypatch.setenv("HF_MODULES_CACHE", str(cache))
    return cache


def test_custom_code_runs_only_when_trusted(causal_dir, tmp_path, modules_cache,
                                            monkeypatch):
    model = custom_model(causal_dir, tmp_path / "custom")
    marker = tmp_path / "ran"
    monkeypatch.setenv("TINY_MARKER", str(marker))
    assert needs_remote_code(model) and not needs_remote_code(causal_dir)
    with pytest.raises(ModelLoadError, match="loads only with --trust-remote-code"):
        load_model(model, task=None, device="cpu", dtype="auto")
    assert not marker.exists()  # refused before any of its code ran
    loaded = load_model(model, task=None, device="cpu", dtype="auto", trust_remote_code=True)
    assert marker.exists()
    assert type(loaded.model).__name__ == "TinyCustomForCausalLM"


def test_an_auto_map_beside_a_built_in_architecture_needs_no_flag(causal_dir, tmp_path,
                                                                   modules_cache):
    model = custom_model(causal_dir, tmp_path / "mapped", model_type="llama")
    loaded = load_model(model, task=None, device="cpu", dtype="auto")
    assert type(loaded.model).__name__ == "LlamaForCausalLM"  # transformers' own code


def test_a_trusted_custom_model_serves_as_any_other(causal_dir, causal_ref, tmp_path,
                                                     modules_cache):
    model = custom_model(causal_dir, tmp_path / "custom")
    refused = ServerProcess("--model", str(model), env={"HF_MODULES_CACHE": str(modules_cache)})
    assert refused.wait_exit(60) == 1
    assert "--trust-remote-code" in refused.output()
    server = ServerProcess("--model", str(model), "--served-model-name", "custom",
                           env={"HF_MODULES_CACHE": str(modules_cache),
                                "LLMCLOUD_TRUST_REMOTE_CODE": "1"})
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        prompt = "The quick brown fox"
        result = client.completions.create(model="custom", prompt=prompt, max_tokens=6,
                                           temperature=0)
        expected = penalized_greedy(causal_ref, causal_ref.tokenizer(prompt)["input_ids"], 6)
        assert result.choices[0].text == causal_ref.tokenizer.decode(expected)
    finally:
        server.stop()
