"""``--max-model-len``: a context below the model's own, served and enforced as the model's
would be; one beyond it refused before the model loads."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from server_process import ServerProcess

from llmcloud.inference_image.loader import ModelLoadError, declared_context
from llmcloud.inference_image.server import served_context


def test_the_served_context_is_the_flags_up_to_the_models():
    assert served_context(4096, None) == 4096
    assert served_context(4096, 1024) == 1024
    with pytest.raises(ModelLoadError, match="--max-model-len 8192 is longer than the "
                                             "model's context of 4096 tokens"):
        served_context(4096, 8192)


def test_the_declared_context_is_read_without_loading(causal_dir, seq2seq_dir, tmp_path):
    config = json.loads((causal_dir / "config.json").read_text())
    assert declared_context(causal_dir) == config["max_position_embeddings"]
    assert declared_context(seq2seq_dir) is None  # T5: relative positions, no limit
    assert declared_context(tmp_path) is None


def test_a_shorter_context_is_served_and_enforced(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny",
                           "--max-model-len", "48")
    try:
        server.wait_ready()
        card = httpx.get(f"{server.url}/v1/models/tiny", timeout=10).json()
        assert card["max_model_len"] == 48
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as too_long:
            client.completions.create(model="tiny", prompt="word " * 60, max_tokens=1)
        assert too_long.value.code == "context_length_exceeded"
        assert "longer than the model's context of 48 tokens" in str(too_long.value)
        prompt_ids = httpx.post(f"{server.url}/tokenize", json={"prompt": "word " * 5},
                                timeout=10).json()["tokens"]
        room = 48 - len(prompt_ids)
        with pytest.raises(openai.BadRequestError, match=f"leaving room for {room}"):
            client.completions.create(model="tiny", prompt="word " * 5, max_tokens=room + 1)
        fits = client.completions.create(model="tiny", prompt="word " * 5, max_tokens=room,
                                         temperature=0, extra_body={"ignore_eos": True})
        assert fits.usage.completion_tokens == room
        # left unset, an answer gets the rest of the served context, not the model's
        rest = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}],
            extra_body={"ignore_eos": True})
        assert rest.usage.prompt_tokens + rest.usage.completion_tokens == 48
    finally:
        server.stop()


def test_a_longer_context_than_the_models_stops_the_server_before_loading(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--max-model-len", "100000")
    assert server.wait_exit(30) == 1
    context = json.loads((causal_dir / "config.json").read_text())["max_position_embeddings"]
    assert (f"--max-model-len 100000 is longer than the model's context of {context} "
            "tokens") in server.output()
