"""End to end: real server processes, the official openai client, both model families."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess

PROMPT = "The quick brown fox"


def greedy_text(loaded, prompt_ids: list[int], n: int) -> str:
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([prompt_ids]), max_new_tokens=n,
                                    min_new_tokens=n, do_sample=False)
    start = 1 if loaded.model.config.is_encoder_decoder else len(prompt_ids)
    return loaded.tokenizer.decode(out[0, start:], skip_special_tokens=True)


def metrics(server) -> dict:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_value(families, family, sample_name, **labels) -> float:
    for sample in families[family].samples:
        if sample.name == sample_name and all(sample.labels.get(k) == v
                                              for k, v in labels.items()):
            return sample.value
    raise KeyError(f"{sample_name} {labels}")


def test_models(case):
    client, ref, model = case
    models = client.models.list()
    assert [m.id for m in models.data] == [model]
    assert client.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"


def test_greedy_completion_matches_transformers_and_counts_usage(case):
    client, ref, model = case
    result = client.completions.create(model=model, prompt=PROMPT, max_tokens=12,
                                       temperature=0)
    prompt_ids = ref.tokenizer(PROMPT)["input_ids"]
    assert result.choices[0].text == greedy_text(ref, prompt_ids, 12)
    assert result.choices[0].finish_reason == "length"
    assert result.usage.prompt_tokens == len(prompt_ids)
    assert result.usage.completion_tokens == 12
    assert result.usage.total_tokens == len(prompt_ids) + 12


def test_streaming_equals_non_streaming_and_reports_usage(case):
    client, ref, model = case
    whole = client.completions.create(model=model, prompt=PROMPT, max_tokens=15,
                                      temperature=0)
    chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=15,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 15
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}


def test_stop_sequence(case):
    client, ref, model = case
    full = client.completions.create(model=model, prompt=PROMPT, max_tokens=20,
                                     temperature=0).choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 2]
    expected = full[:full.find(stop)]
    for stream in (False, True):
        if stream:
            chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=20,
                                                    temperature=0, stop=[stop], stream=True))
            text = "".join(c.choices[0].text for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            choice = client.completions.create(model=model, prompt=PROMPT, max_tokens=20,
                                               temperature=0, stop=stop).choices[0]
            text, finish = choice.text, choice.finish_reason
        assert (text, finish) == (expected, "stop")


def test_seed_makes_sampling_deterministic(case):
    client, ref, model = case

    def run(seed):
        return client.completions.create(model=model, prompt=PROMPT, max_tokens=16,
                                         temperature=1.0, top_p=0.9, seed=seed).choices[0].text

    assert run(1234) == run(1234)
    assert len({run(1234), run(1), run(2)}) > 1


def test_concurrent_requests_each_match_greedy(case):
    client, ref, model = case
    prompts = [PROMPT, "Hello", "Large language models", "Une maison", "0123", "def add"]

    def run(i):
        return client.completions.create(model=model, prompt=prompts[i], max_tokens=8 + i,
                                         temperature=0).choices[0].text

    with ThreadPoolExecutor(len(prompts)) as pool:
        texts = list(pool.map(run, range(len(prompts))))
    for i, text in enumerate(texts):
        assert text == greedy_text(ref, ref.tokenizer(prompts[i])["input_ids"], 8 + i)


def test_a_long_prompt_prefilled_by_chunks_next_to_a_stream(causal_client, causal_ref):
    """A prompt over the server's 512-token prefill step goes in by chunks while another
    request streams: both come out as transformers generates them alone."""
    vocab = min(len(causal_ref.tokenizer), causal_ref.model.config.vocab_size)
    long_ids = [5 + (i * 37) % (vocab - 5) for i in range(700)]
    short_ids = causal_ref.tokenizer(PROMPT)["input_ids"]

    def stream_short() -> str:
        return "".join(c.choices[0].text for c in causal_client.completions.create(
            model="tiny-llama", prompt=short_ids, max_tokens=40, temperature=0, stream=True))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(stream_short)
        long = causal_client.completions.create(model="tiny-llama", prompt=long_ids,
                                                max_tokens=8, temperature=0)
        assert running.result(60) == greedy_text(causal_ref, short_ids, 40)
    assert long.usage.prompt_tokens == 700
    assert long.choices[0].text == greedy_text(causal_ref, long_ids, 8)


def test_chat_on_causal(causal_client, causal_ref):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello, how are you?"}]
    result = causal_client.chat.completions.create(model="tiny-llama", messages=messages,
                                                   max_tokens=10, temperature=0)
    rendered = causal_ref.tokenizer.apply_chat_template(messages, tokenize=False,
                                                        add_generation_prompt=True)
    prompt_ids = causal_ref.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == greedy_text(causal_ref, prompt_ids, 10)
    assert result.usage.prompt_tokens == len(prompt_ids)
    chunks = list(causal_client.chat.completions.create(
        model="tiny-llama", messages=messages, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == result.choices[0].message.content
    assert chunks[-1].usage.total_tokens == result.usage.total_tokens


def test_chat_on_seq2seq_without_template_is_400(seq2seq_client):
    with pytest.raises(openai.BadRequestError, match="chat template"):
        seq2seq_client.chat.completions.create(
            model="tiny-t5", messages=[{"role": "user", "content": "hi"}])


def test_client_errors_are_4xx(causal_client):
    with pytest.raises(openai.BadRequestError, match="context"):
        causal_client.completions.create(model="tiny-llama", prompt="hi", max_tokens=5000)
    with pytest.raises(openai.NotFoundError):
        causal_client.completions.create(model="gpt-4", prompt="hi")


def test_a_prompt_near_the_body_limit_does_not_stall_the_server(causal_server):
    # 3.5 MB, under the 4 MiB body limit: seconds of tokenizing. Tokenized on the event loop,
    # it would leave the health checks below unanswered past their timeout.
    prompt = "the quick brown fox jumps over the lazy dog " * 80_000
    body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": 1}
    answered = 0
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(httpx.post, f"{causal_server.url}/v1/completions", json=body,
                          timeout=120)
        while not big.done():
            assert httpx.get(f"{causal_server.url}/health/live", timeout=1.5).status_code == 200
            answered += 1
            time.sleep(0.05)
    assert answered >= 5
    response = big.result()
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "1024 tokens" in error["message"]


def test_metrics_are_prometheus_text_with_vllm_names(causal_server, causal_client):
    causal_client.completions.create(model="tiny-llama", prompt="Hello", max_tokens=4,
                                     temperature=0)
    fams = metrics(causal_server)
    info = sample_value(fams, "llmcloud:model_info", "llmcloud:model_info", model_name="tiny-llama",
                        model_version="v1", task="text-generation")
    assert info == 1
    assert sample_value(fams, "llmcloud:time_to_first_token_seconds",
                        "llmcloud:time_to_first_token_seconds_count") >= 1
    assert sample_value(fams, "llmcloud:inter_token_latency_seconds",
                        "llmcloud:inter_token_latency_seconds_count") >= 3
    assert sample_value(fams, "llmcloud:e2e_request_latency_seconds",
                        "llmcloud:e2e_request_latency_seconds_count") >= 1
    assert sample_value(fams, "llmcloud:generation_tokens",
                        "llmcloud:generation_tokens_total") >= 4
    assert sample_value(fams, "llmcloud:prompt_tokens", "llmcloud:prompt_tokens_total") >= 1
    assert sample_value(fams, "llmcloud:num_requests_running",
                        "llmcloud:num_requests_running") == 0
    assert sample_value(fams, "llmcloud:num_requests_waiting",
                        "llmcloud:num_requests_waiting") == 0
    # sized from this machine's free memory; idle, nothing of it is held
    assert sample_value(fams, "llmcloud:kv_cache_capacity_tokens",
                        "llmcloud:kv_cache_capacity_tokens") >= 1024
    assert sample_value(fams, "llmcloud:kv_cache_usage_perc",
                        "llmcloud:kv_cache_usage_perc") == 0
    assert sample_value(fams, "llmcloud:num_preemptions",
                        "llmcloud:num_preemptions_total") == 0
    assert sample_value(fams, "llmcloud:requests", "llmcloud:requests_total",
                        endpoint="/v1/completions", status="200") >= 1
    assert sample_value(fams, "llmcloud:request_success", "llmcloud:request_success_total",
                        finished_reason="length") >= 1


def test_each_requests_phases_and_counts_are_vllms_histograms(causal_server, causal_client,
                                                                causal_ref):
    names = ("queue_time_seconds", "prefill_time_seconds", "decode_time_seconds",
             "inference_time_seconds", "prompt_tokens", "generation_tokens",
             "params_max_tokens", "params_n")

    def read() -> dict[str, tuple[float, float]]:
        fams = metrics(causal_server)
        return {name: (sample_value(fams, f"llmcloud:request_{name}",
                                    f"llmcloud:request_{name}_count"),
                       sample_value(fams, f"llmcloud:request_{name}",
                                    f"llmcloud:request_{name}_sum")) for name in names}

    before = read()
    causal_client.completions.create(model="tiny-llama", prompt="Hello there", max_tokens=5,
                                     n=2, temperature=1, seed=3,
                                     extra_body={"ignore_eos": True})
    after = read()
    grown = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
             for name in names}
    prompt = len(causal_ref.tokenizer("Hello there")["input_ids"])
    assert grown["prompt_tokens"] == (2, 2 * prompt)  # each answer is a request, as vLLM's
    assert grown["generation_tokens"] == (2, 10)
    assert grown["params_max_tokens"] == (2, 10)
    assert grown["params_n"] == (1, 2)  # one API request asking for 2
    for phase in ("queue", "prefill", "decode", "inference"):
        count, total = grown[f"{phase}_time_seconds"]
        assert count == 2 and total >= 0
    assert grown["decode_time_seconds"][1] > 0  # four tokens after the first
    assert grown["inference_time_seconds"][1] >= grown["decode_time_seconds"][1]


def test_a_repeated_prompt_beginning_comes_from_the_prefix_cache(causal_server, causal_client,
                                                                   causal_ref):
    system = "The quick brown fox jumps over the lazy dog. " * 6
    before = metrics(causal_server)
    cached = []
    for question in ("Hello?", "Streaming responses arrive as events?"):
        prompt = system + question
        result = causal_client.completions.create(model="tiny-llama", prompt=prompt,
                                                  max_tokens=6, temperature=0)
        prompt_ids = causal_ref.tokenizer(prompt)["input_ids"]
        assert result.choices[0].text == greedy_text(causal_ref, prompt_ids, 6)
        cached.append(result.usage.prompt_tokens_details.cached_tokens)
    after = metrics(causal_server)

    def grew(family: str) -> float:
        name = f"{family}_total"
        return sample_value(after, family, name) - sample_value(before, family, name)

    shared = len(causal_ref.tokenizer(system)["input_ids"])
    assert grew("llmcloud:prefix_cache_hits") >= shared // 32 * 32 > 0
    assert grew("llmcloud:prefix_cache_queries") >= 2 * shared
    # OpenAI's usage says which of a request's prompt tokens the cache served
    assert cached[1] >= shared // 32 * 32 > 0
    assert sum(cached) == grew("llmcloud:prefix_cache_hits")


def test_disconnect_stops_generation(causal_server):
    before = metrics(causal_server)
    generated_before = sample_value(before, "llmcloud:generation_tokens",
                                    "llmcloud:generation_tokens_total")
    body = {"model": "tiny-llama", "prompt": "hi", "max_tokens": 1000, "temperature": 0,
            "stream": True}
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", f"{causal_server.url}/v1/completions", json=body) as response:
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["text"]:
                seen += 1
            if seen >= 3:
                # the running request holds a share of the cache
                assert sample_value(metrics(causal_server), "llmcloud:kv_cache_usage_perc",
                                    "llmcloud:kv_cache_usage_perc") > 0
                break
    # The client is gone: the slot must be freed and generation must stop well short of 1000.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fams = metrics(causal_server)
        if sample_value(fams, "llmcloud:num_requests_running",
                        "llmcloud:num_requests_running") == 0:
            break
        time.sleep(0.02)
    fams = metrics(causal_server)
    assert sample_value(fams, "llmcloud:num_requests_running",
                        "llmcloud:num_requests_running") == 0
    generated = sample_value(fams, "llmcloud:generation_tokens",
                             "llmcloud:generation_tokens_total") - generated_before
    assert generated < 500
    assert sample_value(fams, "llmcloud:request_success", "llmcloud:request_success_total",
                        finished_reason="abort") >= 1
    assert sample_value(fams, "llmcloud:kv_cache_usage_perc",
                        "llmcloud:kv_cache_usage_perc") == 0
    time.sleep(0.3)  # nothing keeps generating in the background
    later = sample_value(metrics(causal_server), "llmcloud:generation_tokens",
                         "llmcloud:generation_tokens_total") - generated_before
    assert later == generated


def test_streams_go_on_through_preemption(causal_dir):
    """A cache too small for the batch it admitted: the newest requests are preempted and
    resumed. Their streams only pause, and every text is the one the request gets alone."""
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny-llama",
                           "--max-batch-tokens", "300", "--reserve-new-tokens", "4",
                           "--max-batch-size", "8")
    prompts = [f"{PROMPT} {word}" for word in ("jumps", "runs", "sleeps", "eats", "sits", "hides")]
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                               timeout=60)

        def stream(prompt: str) -> tuple[str, str | None]:
            text, finish = "", None
            for chunk in client.completions.create(model="tiny-llama", prompt=prompt,
                                                   max_tokens=120, temperature=0, stream=True):
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            return text, finish

        with ThreadPoolExecutor(len(prompts)) as pool:
            together = list(pool.map(stream, prompts))
        preempted = sample_value(metrics(server), "llmcloud:num_preemptions",
                                 "llmcloud:num_preemptions_total")
        alone = [client.completions.create(model="tiny-llama", prompt=p, max_tokens=120,
                                           temperature=0).choices[0].text for p in prompts]
    finally:
        server.stop()
    assert preempted > 0
    assert [finish for _, finish in together] == ["length"] * len(prompts)
    assert [text for text, _ in together] == alone
