"""Sampling defaults from the model's generation config (vLLM's and transformers serve's
``--generation-config auto``) and ``--override-generation-config``: reading and refusing
them, the HTTP layer applying them to the fields a request leaves out, and a real server
decoding with them through the official client."""

from __future__ import annotations

import json
import logging
import shutil

import openai
import pytest
from fake_engine import FakeEngine
from reference import penalized_greedy
from server_process import ServerProcess
from test_http import CHAT, COMP, make_client

from llmcloud.inference_image.manifest import MANIFEST_NAME
from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.inference_image.router import ServerState, create_app
from llmcloud.inference_image.sampling_defaults import (
    SamplingDefaults,
    SamplingDefaultsError,
    parse_override,
    read_defaults,
)
from llmcloud.inference_image.serving import OpenAIServing

# What Llama 3.1 Instruct's generation_config.json holds.
LLAMA31 = {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
           "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"}


def write_config(folder, config: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


# --- reading ------------------------------------------------------------------------------

def test_the_model_creators_settings_are_the_defaults(tmp_path):
    defaults = read_defaults(write_config(tmp_path, LLAMA31))
    assert defaults == SamplingDefaults(temperature=0.6, top_p=0.9)
    assert defaults.changed() == {"temperature": 0.6, "top_p": 0.9}
    qwen = {"repetition_penalty": 1.05, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
            "min_p": 0.05, "max_new_tokens": 2048}
    assert read_defaults(write_config(tmp_path / "qwen", qwen)) == SamplingDefaults(
        temperature=0.7, top_p=0.8, top_k=20, min_p=0.05, repetition_penalty=1.05,
        max_tokens=2048)


def test_none_keeps_openais_and_a_folder_can_hold_another_config(tmp_path):
    model = write_config(tmp_path / "model", LLAMA31)
    assert read_defaults(model, "none") == read_defaults(model, "vllm") == SamplingDefaults()
    assert read_defaults(tmp_path / "no-config") == SamplingDefaults()  # auto, no file
    other = write_config(tmp_path / "ops", {"temperature": 0.2})
    assert read_defaults(model, str(other)).temperature == 0.2
    assert read_defaults(model, str(other / "generation_config.json")).temperature == 0.2
    with pytest.raises(SamplingDefaultsError, match="no generation_config.json there"):
        read_defaults(model, str(tmp_path / "missing"))


def test_the_override_wins_over_the_file(tmp_path):
    model = write_config(tmp_path, LLAMA31)
    override = parse_override('{"temperature": 0, "max_new_tokens": 64, "top_k": -1}')
    assert read_defaults(model, "auto", override) == SamplingDefaults(
        temperature=0.0, top_p=0.9, top_k=0, max_tokens=64)
    assert read_defaults(model, "none", override).top_p == 1.0


@pytest.mark.parametrize(("text", "message"), [
    ("{temperature: 1}", "is not JSON"),
    ("[0.5]", "must be a JSON object"),
    ('{"temp": 0.5, "do_sample": true}', "cannot set do_sample, temp; it takes temperature"),
    ('{"temperature": 3}', "temperature must be a number from 0 to 2, got 3"),
    ('{"top_p": 0}', "top_p must be a number above 0"),
    ('{"top_k": 2.5}', "top_k must be a whole number"),
    ('{"max_new_tokens": 0}', "max_new_tokens must be a whole number of at least 1"),
    ('{"repetition_penalty": "high"}', "repetition_penalty must be a number"),
    ('{"min_p": true}', "min_p must be a number from 0 to 1, got True"),
])
def test_a_bad_override_says_what_is_wrong(text, message):
    with pytest.raises(SamplingDefaultsError, match=message):
        parse_override(text)


def test_a_bad_value_in_the_models_file_is_skipped_with_a_warning(tmp_path, caplog):
    model = write_config(tmp_path, {"temperature": -1, "top_p": 0.5, "top_k": "many"})
    with caplog.at_level(logging.WARNING, "llmcloud.sampling_defaults"):
        assert read_defaults(model) == SamplingDefaults(top_p=0.5)
    assert "temperature must be a number from 0 to 2, got -1" in caplog.text
    assert "top_k must be a whole number" in caplog.text
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(SamplingDefaultsError, match="cannot read"):
        read_defaults(model)


@pytest.mark.parametrize(("cap", "api_default", "length"), [
    (None, 16, 16), (None, None, None), (5, 16, 5), (5, None, 5), (100, 16, 16)])
def test_max_new_tokens_caps_only_the_default_length(cap, api_default, length):
    assert SamplingDefaults(max_tokens=cap).answer_length(api_default) == length


# --- the HTTP layer -----------------------------------------------------------------------

@pytest.fixture()
def qwen_like(tokenizer):
    engine = FakeEngine(tokenizer, max_context=256)
    metrics = ServerMetrics("fake-model", "v0", "text-generation", lambda: 0, lambda: 0)
    defaults = SamplingDefaults(temperature=0.7, top_p=0.8, top_k=20, min_p=0.05,
                                repetition_penalty=1.05, max_tokens=5)
    state = ServerState(OpenAIServing(engine, metrics, "auto", defaults), None)
    from starlette.testclient import TestClient

    return TestClient(create_app(state, max_body_bytes=1 << 16)), engine


def sent(engine):
    p = engine.requests[-1].params
    return (p.temperature, p.top_p, p.top_k, p.min_p, p.repetition_penalty, p.max_tokens)


def test_left_out_fields_get_the_defaults(qwen_like):
    client, engine = qwen_like
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    assert client.post(CHAT, json=chat).status_code == 200
    assert sent(engine) == (0.7, 0.8, 20, 0.05, 1.05, 5)
    assert client.post(COMP, json={"prompt": "hi"}).status_code == 200
    assert sent(engine) == (0.7, 0.8, 20, 0.05, 1.05, 5)  # min(16, 5)
    assert client.post("/v1/responses", json={"input": "hi"}).status_code == 200
    assert sent(engine) == (0.7, 0.8, 20, 0.05, 1.05, 5)


def test_a_requests_own_values_win_zero_and_all_tokens_included(qwen_like):
    client, engine = qwen_like
    own = {"temperature": 0, "top_p": 1, "top_k": -1, "min_p": 0, "repetition_penalty": 1,
           "max_tokens": 40}
    assert client.post(COMP, json={"prompt": "hi", **own}).status_code == 200
    assert sent(engine) == (0.0, 1.0, 0, 0.0, 1.0, 40)  # beyond the default's cap
    body = {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 7,
            "temperature": 1.5}
    assert client.post(CHAT, json=body).status_code == 200
    assert sent(engine)[0] == 1.5 and sent(engine)[-1] == 7


def test_without_defaults_the_server_keeps_openais(tokenizer):
    engine = FakeEngine(tokenizer, max_context=256)
    client, _ = make_client(engine)
    assert client.post(COMP, json={"prompt": "hi"}).status_code == 200
    assert sent(engine) == (1.0, 1.0, 0, 0.0, 1.0, 16)


# --- a real server ------------------------------------------------------------------------

PROMPT = "The quick brown fox"


def test_a_server_decodes_with_its_models_defaults(causal_dir, causal_ref, tmp_path):
    model = tmp_path / "tiny-llama"
    shutil.copytree(causal_dir, model)
    (model / MANIFEST_NAME).unlink()  # its generation config changes below
    config = json.loads((model / "generation_config.json").read_text())
    write_config(model, {**config, "temperature": 0.0, "max_new_tokens": 5})
    server = ServerProcess("--model", str(model), "--served-model-name", "tiny",
                           "--log-level", "info",
                           env={"LLMCLOUD_OVERRIDE_GENERATION_CONFIG": '{"max_new_tokens": 6}'})
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        expected = penalized_greedy(causal_ref, causal_ref.tokenizer(PROMPT)["input_ids"], 9)
        # greedy from the file's temperature 0, 6 tokens from the override's cap
        for _ in range(2):
            result = client.completions.create(model="tiny", prompt=PROMPT)
            assert (result.choices[0].finish_reason, result.usage.completion_tokens) == (
                "length", 6)
            assert result.choices[0].text == causal_ref.tokenizer.decode(expected[:6])
        longer = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=9)
        assert longer.choices[0].text == causal_ref.tokenizer.decode(expected)
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": PROMPT}])
        assert (chat.choices[0].finish_reason, chat.usage.completion_tokens) == ("length", 6)
    finally:
        server.stop()
    assert "requests that leave them out get temperature 0.0, max_tokens 6" in server.output()


def test_a_bad_override_stops_the_server_before_loading(causal_dir):
    server = ServerProcess("--model", str(causal_dir),
                           "--override-generation-config", '{"temprature": 0.5}')
    assert server.wait_exit(30) == 1
    assert "cannot set temprature" in server.output()


def test_a_missing_generation_config_folder_stops_the_server(causal_dir, tmp_path):
    server = ServerProcess("--model", str(causal_dir), "--generation-config", str(tmp_path))
    assert server.wait_exit(60) == 1
    assert "no generation_config.json there" in server.output()

