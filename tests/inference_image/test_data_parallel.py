"""Data parallelism: a copy of the model per device, each with its own engine, behind one
server. Copies share the CPU here; on a GPU machine each has a GPU of its own."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from reference import greedy as reference
from server_process import ServerProcess

from llmcloud.inference_image.data_parallel import DataParallelEngine, devices
from llmcloud.inference_image.engine import ModelInfo, QueueFull, SamplingParams
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine


def test_the_copies_go_one_per_gpu():
    assert devices(None, "auto", 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert devices(None, "cuda", 2) == ["cuda:0", "cuda:1"]
    assert devices(2, "auto", 4) == ["cuda:0", "cuda:1"]
    assert devices(None, "auto", 1) == ["auto"]  # one GPU: as before
    assert devices(None, "auto", 0) == ["auto"]  # the CPU
    assert devices(None, "cuda:3", 4) == ["cuda:3"]  # a GPU chosen: that one only
    assert devices(None, "cpu", 4) == ["cpu"]
    assert devices(2, "cpu", 0) == ["cpu", "cpu"]  # sharing the cores (tests)


@pytest.mark.parametrize(("size", "device", "gpus", "says"), [
    (3, "auto", 2, "needs 3 GPUs; torch sees 2"),
    (2, "cuda", 0, "needs 2 GPUs; torch sees none"),
    (2, "cuda:1", 4, "--device must be auto or cuda, not 'cuda:1'"),
])
def test_a_size_the_machine_cannot_hold_is_refused(size, device, gpus, says):
    with pytest.raises(ValueError, match=says):
        devices(size, device, gpus)


class _Engine:
    """What the router reads of an engine: its load and its queue's room."""

    def __init__(self, running: int = 0, waiting: int = 0, room: int = 10,
                 displaceable: int = 0):
        self.num_running, self.num_waiting, self.room = running, waiting, room
        self.displaceable = displaceable  # waiting requests a more urgent one may push out
        self.info = ModelInfo("m", "v1", "text-generation", 64)
        self.tokenizer = self.structured = self.adapters = self.prefixes = None
        self.limits, self.priority_scheduling, self.max_queue = EngineLimits(8), False, 10

    def room_for(self, requests: int, priority: int = 0) -> bool:
        return self.queue_room(priority) >= requests

    def queue_room(self, priority: int = 0, displacing: bool = True) -> int:
        return self.room + (self.displaceable if displacing else 0)


def test_a_prompt_goes_to_the_copy_its_beginning_points_to_while_loads_are_even():
    engines = [_Engine(), _Engine(), _Engine()]
    router = DataParallelEngine(engines)
    prompt = list(range(100))
    chosen = router.choose(prompt)
    assert router.choose(prompt) is chosen  # the same beginning: the same prefix cache
    assert router.choose([*prompt[:32], 7, 7, 7]) is chosen  # only the beginning counts
    others = {id(router.choose([start, *prompt])) for start in range(30)}
    assert len(others) == 3  # other beginnings spread over the copies


def test_a_busy_or_full_copy_gives_way_to_the_least_busy_with_room():
    engines = [_Engine(), _Engine(), _Engine()]
    router = DataParallelEngine(engines)
    prompt = list(range(50))
    preferred = router.choose(prompt)
    preferred.num_running = 4  # half a batch (of 8) more than the others: still its own
    assert router.choose(prompt) is preferred
    preferred.num_running = 5
    rest = [engine for engine in engines if engine is not preferred]
    rest[0].num_waiting = 2
    assert router.choose(prompt) is rest[1]  # the least busy
    preferred.num_running, rest[1].room = 0, 0
    preferred.room = 0
    assert router.choose(prompt) is rest[0]  # the only one with room
    rest[0].room = 0
    with pytest.raises(QueueFull):
        router.choose(prompt)
    assert not router.room_for(1)
    rest[0].room, rest[1].room = 2, 1
    assert router.room_for(3) and not router.room_for(4)  # the queues' room, together


def test_no_waiting_request_is_pushed_out_while_another_copy_has_room():
    # priority scheduling: the preferred copy's queue is full, but holds a request a more
    # urgent one may push out; another copy has free room, which goes first
    from llmcloud.inference_image.data_parallel import AFFINITY_TOKENS

    prompt = list(range(40))
    preferred = hash(tuple(prompt[:AFFINITY_TOKENS])) % 2
    engines = [_Engine(), _Engine()]
    engines[preferred].room, engines[preferred].displaceable = 0, 1
    assert DataParallelEngine(engines).choose(prompt, priority=0) is engines[1 - preferred]
    engines[1 - preferred].room = 0  # no free room anywhere: then one is pushed out
    assert DataParallelEngine(engines).choose(prompt, priority=0) is engines[preferred]


def test_the_copies_serve_exactly_as_one_engine(causal, causal_dir):
    """Two copies of the tiny Llama on the CPU: concurrent requests spread over both, and
    every answer is exactly its greedy one; the totals are the copies' sums."""
    from llmcloud.inference_image.loader import load_model

    info = ModelInfo("tiny", "v1", causal.task, causal.max_context)
    second = load_model(causal_dir, task=None, device=str(causal.device), dtype="auto")
    engines = [TorchEngine(copy.model, copy.tokenizer, info, copy.device,
                           EngineLimits(max_batch_size=4))
               for copy in (causal, second)]
    served = [0, 0]
    for index, engine in enumerate(engines):
        def counted(ids, params, engine=engine, index=index, real=engines[index].generate):
            served[index] += 1
            return real(ids, params)
        engine.generate = counted
    router = DataParallelEngine(engines)
    vocab = min(len(causal.tokenizer), causal.model.config.vocab_size)
    prompts = [[(start * 13 + i) % (vocab - 5) + 5 for i in range(6)] for start in range(12)]

    async def tokens(stream) -> list[int]:
        return [t async for event in stream for t in event.token_ids]

    async def main():
        streams = [router.generate(ids, SamplingParams(max_tokens=5, temperature=0))
                   for ids in prompts]
        return await asyncio.gather(*map(tokens, streams))

    try:
        answers = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        router.shutdown()
    assert answers == [reference(causal, ids, 5) for ids in prompts]
    assert min(served) > 0 and sum(served) == 12
    assert router.num_running == router.num_waiting == 0


def test_a_server_with_two_copies_answers_and_reports_them_as_one(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny",
                           "--data-parallel-size", "2", "--log-level", "info")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for start in range(6):
                body = {"model": "tiny", "prompt": f"number {start} says", "max_tokens": 4}
                assert client.post("/v1/completions", json=body).status_code == 200
            text = client.get("/metrics").text
    finally:
        server.stop()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def total(name: str) -> float:  # over every label set (finished_reason: stop, length)
        return sum(sample.value for sample in samples if sample.name == name)

    assert total("llmcloud:request_success_total") == 6
    assert total("llmcloud:num_requests_running") == 0
    assert "on cpu, cpu" in server.output()
