"""The spec's `server.lora_modules` on the local provider with the real `llmcloud-server`:
an adapter shipped inside the model's folder is imported into the store with it, and
served under its name through the gateway."""

from __future__ import annotations

import os

import pytest

from llmcloud.providers.local.procs import free_port
from tests.local.test_quickstart_real import _cli

openai = pytest.importorskip("openai")
pytest.importorskip("torch")


def test_an_adapter_inside_the_model_version_is_served_by_name(home, tmp_path):
    from llmcloud.inference_image.loader import load_model
    from tests.inference_image.lora_adapters import build_adapter, merge
    from tests.inference_image.reference import greedy
    from tests.inference_image.tiny_models import build_causal

    model = build_causal(tmp_path / "tiny-llama")
    adapter = build_adapter(model / "adapters" / "sql", model, seed=11)
    merged = load_model(merge(model, adapter, tmp_path / "merged"), task=None, device="cpu",
                        dtype="auto")
    port = free_port()
    env = {**os.environ, "LLMCLOUD_HOME": str(home), "LLMCLOUD_PROJECT_DIR": str(tmp_path),
           "LLMCLOUD_SERVER__PORT": str(port), "LLMCLOUD_LOCAL_HEALTH_INTERVAL": "0.2",
           "LLMCLOUD_LOCAL_READY_TIMEOUT": "120", "LLMCLOUD_LOCAL_OWNER_PID": str(os.getpid()),
           "LLMCLOUD_SERVER__LORA_MODULES": '{"sql": "adapters/sql"}', "HF_HUB_OFFLINE": "1"}
    env.pop("LLMCLOUD_LOCAL_SERVER", None)
    up = _cli(env, "up", "--model", str(model))
    try:
        client = openai.OpenAI(base_url=up["endpoint"], api_key=up["api_key"], max_retries=0)
        cards = {card.id: card for card in client.models.list().data}
        assert cards["sql"].parent in cards and len(cards) == 2
        answer = client.completions.create(model="sql", prompt="hello world", max_tokens=6,
                                           temperature=0)
        ids = merged.tokenizer("hello world")["input_ids"]
        assert answer.model == "sql"
        assert answer.choices[0].text == merged.tokenizer.decode(
            greedy(merged, ids, 6), skip_special_tokens=True)
    finally:
        _cli(env, "destroy", "--yes")
