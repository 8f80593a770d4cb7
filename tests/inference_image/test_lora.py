"""LoRA adapters served beside the model (`--lora-modules`, vLLM's): a request naming an
adapter must answer exactly as the model with that adapter merged into its weights would,
in a batch shared with other adapters' and the model's own requests, through the prefix
cache and chunked prefills; adapters that cannot be served exactly are refused at start."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from devices import TEST_DEVICE, TEST_DTYPE
from lora_adapters import build_adapter, merge
from reference import greedy
from server_process import ServerProcess
from test_engine import collect

from llmcloud.inference_image.engine import ModelInfo, SamplingParams
from llmcloud.inference_image.loader import load_model
from llmcloud.inference_image.lora import AdapterError, Adapters
from llmcloud.inference_image.server_options import parse_lora_modules
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine

PROMPT = [5, 9, 14, 3, 27, 8, 11]
LONG = [(7 * i + 3) % 90 + 4 for i in range(70)]  # two whole prefix-cache blocks and more


@pytest.fixture(scope="module")
def adapter_dirs(causal_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"sql": build_adapter(root / "sql", causal_dir, seed=1),
            "chat": build_adapter(root / "chat", causal_dir, seed=2, rank=8, alpha=4),
            "attn": build_adapter(root / "attn", causal_dir, seed=7,
                                  targets=("self_attn.q_proj", "self_attn.v_proj"))}


@pytest.fixture(scope="module")
def merged(causal_dir, adapter_dirs, tmp_path_factory):
    """Each adapter's merged model, loaded as the server loads a model."""
    root = tmp_path_factory.mktemp("merged")
    return {name: load_model(merge(causal_dir, folder, root / name), task=None, device="cpu",
                             dtype="auto", pack_for_batch=8)
            for name, folder in adapter_dirs.items()}


@pytest.fixture(scope="module")
def served(causal_dir, adapter_dirs):
    """The tiny Llama (weights packed, as served) with both adapters loaded."""
    loaded = load_model(causal_dir, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE,
                        pack_for_batch=8)
    adapters = Adapters(loaded.model)
    for name, folder in adapter_dirs.items():
        adapters.load(name, folder, str(folder))
    return loaded, adapters


def make_engine(served, **limits) -> TorchEngine:
    loaded, adapters = served
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device, EngineLimits(**limits),
                       adapters)


def run_all(engine, jobs: list[tuple[list[int], int, int]]) -> list[list[int]]:
    """Greedy tokens of (prompt, new tokens, adapter slot) jobs, all queued at once."""
    async def main():
        streams = [engine.generate(prompt, SamplingParams(max_tokens=n, temperature=0,
                                                          ignore_eos=True, adapter=slot))
                   for prompt, n, slot in jobs]
        return [tokens for tokens, _, _ in await asyncio.gather(*map(collect, streams))]

    try:
        return asyncio.run(main())
    finally:
        engine.shutdown()


def test_adapters_answer_as_their_merged_models_in_one_shared_batch(served, merged,
                                                                    causal):
    """The model's own rows and three adapters' rows (of two ranks and scales, one adapting
    only the attention's layers), twins of one prompt among them, decode together; each
    answers as its merged model (or the model) does alone."""
    _, adapters = served
    sql, chat, attn = (adapters.slot(name) for name in ("sql", "chat", "attn"))
    expected = {0: greedy(causal, PROMPT, 12), sql: greedy(merged["sql"], PROMPT, 12),
                chat: greedy(merged["chat"], PROMPT, 12),
                attn: greedy(merged["attn"], PROMPT, 12)}
    assert len({tuple(tokens) for tokens in expected.values()}) == 4  # the adapters matter
    other = [4, 4, 19, 33, 2]
    jobs = [(PROMPT, 12, 0), (PROMPT, 12, sql), (PROMPT, 12, chat), (PROMPT, 12, attn),
            (other, 9, sql), (PROMPT, 12, sql)]
    got = run_all(make_engine(served, max_batch_size=8), jobs)
    assert got[:4] == [expected[0], expected[sql], expected[chat], expected[attn]]
    assert got[4] == greedy(merged["sql"], other, 9)
    assert got[5] == expected[sql]


def test_an_adapter_never_gets_the_models_cached_prefix(served, merged, causal):
    """A prompt the model's own request left in the prefix cache is prefilled anew for an
    adapter's request (its states differ); the adapter's repeat reuses its own."""
    _, adapters = served
    sql = adapters.slot("sql")
    engine = make_engine(served, max_batch_size=4)

    async def main():
        results = []
        for slot in (0, sql, sql):
            stream = engine.generate(LONG, SamplingParams(max_tokens=6, temperature=0,
                                                          ignore_eos=True, adapter=slot))
            tokens, _, _ = await collect(stream)
            results.append((tokens, stream.cached_tokens))
        return results

    try:
        (base, base_cached), (first, first_cached), (again, again_cached) = asyncio.run(main())
    finally:
        engine.shutdown()
    assert base == greedy(causal, LONG, 6) and base_cached == 0
    assert first == greedy(merged["sql"], LONG, 6) and first_cached == 0
    assert again == first and again_cached == 64


def test_an_adapters_long_prompt_is_prefilled_by_chunks_with_it(served, merged):
    _, adapters = served
    got = run_all(make_engine(served, max_prefill_tokens=16, prefix_caching=False),
                  [(LONG, 8, adapters.slot("chat")), (PROMPT, 8, 0)])
    assert got[0] == greedy(merged["chat"], LONG, 8)


@pytest.mark.parametrize("slow_retire", [False, True], ids=["as-is", "slow-retire"])
def test_the_engine_tells_which_adapters_run_and_wait(served, monkeypatch, slow_retire):
    """What `llmcloud:lora_requests_info` reports: one slot, an adapter's request running
    and another's waiting; nothing once both end, even in the moment between a request's
    last event reaching its client and the engine thread retiring its row (made long here:
    CI once read the gauge in it)."""
    _, adapters = served
    engine = make_engine(served, max_batch_size=1)
    if slow_retire:
        import time

        from llmcloud.inference_image.torch_engine import TorchEngine

        retire = TorchEngine._retire
        monkeypatch.setattr(TorchEngine, "_retire",
                            lambda self: time.sleep(0.05) or retire(self))

    async def main():
        def params(slot):
            return SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, adapter=slot)

        first = engine.generate(PROMPT, params(adapters.slot("sql")))
        second = engine.generate(PROMPT, params(adapters.slot("attn")))
        while engine.num_running == 0:
            await asyncio.sleep(0.001)
        during = engine.adapters_in_use()
        await asyncio.gather(collect(first), collect(second))
        return during, engine.adapters_in_use()

    try:
        during, after = asyncio.run(main())
    finally:
        engine.shutdown()
    assert during == (["sql"], ["attn"])
    assert after == ([], [])
    assert engine.num_running == 0


def test_max_loras_holds_each_batch_to_that_many_adapters(served, merged, causal):
    """`--max-loras 1` on a four-slot engine, an adapter's long request running: another
    adapter's request waits; the model's own requests go by it, the running adapter's do
    not (they could keep it waiting for ever). No step holds two adapters, and every
    answer is still its merged model's (or the model's)."""
    _, adapters = served
    sql, chat = adapters.slot("sql"), adapters.slot("chat")
    engine = make_engine(served, max_batch_size=4, max_loras=1)
    batch, decode, held = engine._batch, engine._batch.decode, []

    def counting(tokens):
        held.append(set(batch.slots_of_rows) - {0})
        return decode(tokens)

    batch.decode = counting

    async def main():
        def params(n, slot):
            return SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, adapter=slot)

        streams = [engine.generate(PROMPT, params(n, slot))
                   for n, slot in ((30, sql), (5, chat), (5, 0), (5, sql))]
        results = await asyncio.wait_for(asyncio.gather(*map(collect, streams)), 60)
        return streams, [tokens for tokens, _, _ in results]

    try:
        streams, got = asyncio.run(main())
    finally:
        engine.shutdown()
    assert got == [greedy(merged["sql"], PROMPT, 30), greedy(merged["chat"], PROMPT, 5),
                   greedy(causal, PROMPT, 5), greedy(merged["sql"], PROMPT, 5)]
    order = sorted(range(4), key=lambda i: streams[i].scheduled_at)
    assert order == [0, 2, 1, 3]  # sql, the model's, then chat, then sql again
    assert max(len(adapters_held) for adapters_held in held) == 1
    assert {chat} in held and {sql} in held


def test_max_loras_is_what_the_info_metric_reports():
    from prometheus_client.parser import text_string_to_metric_families

    from llmcloud.inference_image.metrics import ServerMetrics

    def reported(max_loras):
        metrics = ServerMetrics("m", "v1", "text-generation", lambda: 0, lambda: 0,
                                lora_names=("a", "b", "c"), lora_in_use=lambda: ([], []),
                                max_loras=max_loras)
        text = metrics.render().decode()
        (sample,) = [sample for family in text_string_to_metric_families(text)
                     if family.name == "llmcloud:lora_requests_info"
                     for sample in family.samples]
        return sample.labels["max_lora"]

    assert [reported(cap) for cap in (1, None, 5)] == ["1", "3", "3"]


def test_the_max_loras_flag_and_its_variable(monkeypatch, capsys):
    from llmcloud.inference_image.server import build_parser

    assert build_parser().parse_args(["--model", "m"]).max_loras is None  # all
    assert build_parser().parse_args(["--model", "m", "--max-loras", "2"]).max_loras == 2
    monkeypatch.setenv("LLMCLOUD_MAX_LORAS", "1")  # SageMaker's way
    assert build_parser().parse_args(["--model", "m"]).max_loras == 1
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--model", "m", "--max-loras", bad])
        assert "--max-loras: expected 'all' or a number" in capsys.readouterr().err


def test_parsing_lora_modules():
    assert parse_lora_modules(["sql=s3://b/sql", '{"name": "chat", "path": "/a b/c"}']) == {
        "sql": "s3://b/sql", "chat": "/a b/c"}
    for bad, says in [("sql", "name=source"), ("=x", "name=source"), ("{not json", "JSON"),
                      ('{"name": "x"}', "JSON")]:
        with pytest.raises(ValueError, match=says):
            parse_lora_modules([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_lora_modules(["a=x", "a=y"])


@pytest.mark.parametrize("change, says", [
    ({"use_dora": True}, "DoRA"),
    ({"bias": "lora_only"}, "trains biases"),
    ({"modules_to_save": ["lm_head"]}, "saves whole modules"),
    ({"peft_type": "IA3"}, "IA3 adapter, not LoRA"),
])
def test_adapters_that_cannot_be_served_exactly_are_refused(causal_dir, tmp_path, change,
                                                            says):
    folder = build_adapter(tmp_path / "a", causal_dir, seed=3, **change)
    loaded = load_model(causal_dir, task=None, device="cpu", dtype="auto")
    with pytest.raises(AdapterError, match=says):
        Adapters(loaded.model).load("a", folder, "a")


def test_an_adapter_of_another_model_is_refused(causal_dir, tmp_path):
    from tiny_models import build_causal

    other = build_causal(tmp_path / "wider", hidden_size=96, num_attention_heads=4)
    folder = build_adapter(tmp_path / "a", other, seed=3)
    loaded = load_model(causal_dir, task=None, device="cpu", dtype="auto")
    with pytest.raises(AdapterError, match="trained for another base model"):
        Adapters(loaded.model).load("a", folder, "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").unlink()
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        Adapters(loaded.model).load("a", folder, "a")
    assert config["r"] == 4


def test_the_server_serves_adapters_by_name(causal_dir, adapter_dirs, merged):
    """The official client lists the adapters, streams an adapter's chat answer and gets
    an adapter's completion, each equal to its merged model's; an unknown name is a 404
    that lists what is served."""
    server = ServerProcess("--model", str(causal_dir), "--log-level", "info",
                           "--lora-modules", f"sql={adapter_dirs['sql']}",
                           json.dumps({"name": "chat", "path": str(adapter_dirs["chat"])}))
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        models = {m.id: m for m in client.models.list().data}
        assert set(models) == {"tiny-llama", "sql", "chat"}
        assert models["sql"].parent == "tiny-llama"
        assert models["sql"].root == str(adapter_dirs["sql"])
        assert client.models.retrieve("chat").parent == "tiny-llama"

        tokenizer = merged["sql"].tokenizer
        completion = client.completions.create(model="sql", prompt="hello world",
                                               max_tokens=8, temperature=0)
        ids = tokenizer("hello world")["input_ids"]
        expected = tokenizer.decode(greedy(merged["sql"], ids, 8), skip_special_tokens=True)
        assert completion.model == "sql"
        assert completion.choices[0].text == expected

        chat = [{"role": "user", "content": "hello"}]
        stream = client.chat.completions.create(model="chat", messages=chat, max_tokens=8,
                                                temperature=0, stream=True)
        chunks = list(stream)
        assert {chunk.model for chunk in chunks} == {"chat"}
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        rendered = tokenizer.apply_chat_template(chat, tokenize=False,
                                                 add_generation_prompt=True)
        chat_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert text == tokenizer.decode(greedy(merged["chat"], chat_ids, 8),
                                        skip_special_tokens=True)

        response = client.responses.create(model="sql", input="hello", max_output_tokens=4)
        assert response.model == "sql"
        client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2)

        with pytest.raises(openai.NotFoundError) as error:
            client.completions.create(model="sq1", prompt="hi", max_tokens=2)
        message = error.value.body["message"]
        assert "'tiny-llama' and its LoRA adapters 'sql', 'chat'" in message
        assert lora_requests(server.url) == {"sql": 2, "chat": 1}
        assert lora_info(server.url) == {"max_lora": "2", "running_lora_adapters": "",
                                         "waiting_lora_adapters": ""}
        lines = [line for line in server.output().splitlines()
                 if "finish=" in line and "completion_tokens=" in line]
        assert [line.split(" lora=")[1] if " lora=" in line else None
                for line in lines] == ["sql", "chat", "sql", None]
    finally:
        server.stop()


def lora_requests(url: str) -> dict[str, float]:
    """``llmcloud:lora_requests_total`` by adapter, read with Prometheus' own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {sample.labels["lora_name"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "llmcloud:lora_requests"
            for sample in family.samples if sample.name.endswith("_total")}


def lora_info(url: str) -> dict[str, str]:
    """The labels of ``llmcloud:lora_requests_info``'s one sample."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    (sample,) = [sample for family in text_string_to_metric_families(text)
                 if family.name == "llmcloud:lora_requests_info" for sample in family.samples]
    return sample.labels


def test_the_server_refuses_adapters_it_cannot_serve(causal_dir, seq2seq_dir, tmp_path):
    folder = build_adapter(tmp_path / "a", causal_dir, seed=4, use_dora=True)
    for args, says in [
        (["--model", str(causal_dir), "--lora-modules", f"a={folder}"], "DoRA"),
        (["--model", str(seq2seq_dir), "--lora-modules", f"a={folder}"], "causal model"),
        (["--model", str(causal_dir), "--lora-modules", "a"], "expected name=source"),
        (["--model", str(causal_dir), "--lora-modules", f"tiny-llama={folder}"],
         "served model's own name"),
    ]:
        server = ServerProcess(*args)
        assert server.wait_exit(90) != 0
        assert says in server.output()


def test_an_adapter_inside_the_model_folder_is_found_there(causal_dir, tmp_path,
                                                           monkeypatch):
    """What the spec's `server.lora_modules` gives: folders inside the model version (the
    servers' variable holds them all, space-separated); other sources resolve as a model's."""
    from llmcloud.inference_image.model_source import ModelSourceError, resolve_adapter
    from llmcloud.inference_image.server import build_parser

    inside = build_adapter(tmp_path / "model" / "adapters" / "sql", causal_dir, seed=5)
    elsewhere = build_adapter(tmp_path / "elsewhere", causal_dir, seed=6)
    model = tmp_path / "model"
    assert resolve_adapter(model, "adapters/sql", tmp_path / "cache") == inside
    assert resolve_adapter(model, "./adapters/sql", tmp_path / "cache") == inside  # the spec's
    assert resolve_adapter(model, str(elsewhere), tmp_path / "cache") == elsewhere
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_adapter(model, "./adapters/chat", tmp_path / "cache")
    monkeypatch.setenv("LLMCLOUD_LORA_MODULES", "chat=adapters/chat sql=adapters/sql")
    args = build_parser().parse_args(["--model", str(model)])
    assert parse_lora_modules(args.lora_modules) == {"chat": "adapters/chat",
                                                     "sql": "adapters/sql"}
