"""Priority scheduling (`--scheduling-policy priority`, vLLM's): requests wait by their
``priority`` (lower values sooner, then arrival), a waiting request of a lower value takes
the place of running ones of a higher value when it has none, and the KV cache's victims
are the least urgent. On the tiny random Llama in process; the HTTP field against the fake
engine. Every preempted request must still get exactly its greedy tokens."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from fake_engine import FakeEngine
from reference import greedy as reference
from server_process import ServerProcess
from test_engine import collect, make_engine
from test_http import CHAT, COMP, USER, assert_error, make_client

from llmcloud.inference_image.engine import QueueFull, SamplingParams
from llmcloud.inference_image.server import build_parser
from llmcloud.inference_image.waiting_queue import WaitingQueue


def greedy(n: int, priority: int = 0) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, priority=priority)


async def until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def run(engine, main):
    """``main()`` run to its end against ``engine``, which is shut down after."""
    try:
        return asyncio.run(main())
    finally:
        engine.shutdown()


async def running_then(engine, prompt: list[int], first: SamplingParams,
                       second: SamplingParams) -> tuple[tuple, tuple, bool]:
    """``first`` starts; once it runs, ``second`` arrives. Their results, and whether the
    first had finished when the second did."""
    running = engine.generate(prompt, first)
    await until(lambda: engine.num_running == 1)
    arriving = engine.generate(prompt, second)
    arrived = await asyncio.wait_for(collect(arriving), 60)
    first_done = running.finished
    return await asyncio.wait_for(collect(running), 60), arrived, first_done


def served_order(causal, priority_scheduling: bool, priorities: list[int]) -> list[int]:
    """Queue requests of these priorities behind a running one on a one-slot engine; the
    order (indices into ``priorities``) they were given the slot in."""
    engine = make_engine(causal, max_batch_size=1, priority_scheduling=priority_scheduling)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        first = engine.generate(prompt, greedy(40, priority=-100))  # outranks them all
        await until(lambda: engine.num_running == 1)
        streams = [engine.generate(prompt, greedy(3, p)) for p in priorities]
        results = await asyncio.wait_for(asyncio.gather(collect(first),
                                                        *map(collect, streams)), 60)
        return streams, results

    streams, results = run(engine, main)
    assert engine.preemptions == 0
    assert all(tokens == reference(causal, prompt, 3) for tokens, _, _ in results[1:])
    return sorted(range(len(streams)), key=lambda i: streams[i].scheduled_at)


def test_waiting_requests_are_served_by_priority_then_arrival(causal):
    assert served_order(causal, True, [5, 1, 1, -2, 0]) == [3, 4, 1, 2, 0]


def test_first_come_first_served_ignores_priority(causal):
    assert served_order(causal, False, [5, 1, 1, -2, 0]) == [0, 1, 2, 3, 4]


def test_a_more_urgent_request_takes_a_running_ones_place_and_it_resumes(causal):
    """One slot, a long request of priority 5 running: one of priority 0 preempts it, runs
    to its end, and the long one resumes where it stopped with its exact tokens."""
    engine = make_engine(causal, max_batch_size=1, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]
    low, high, low_was_done = run(engine, lambda: running_then(
        engine, prompt, greedy(150, priority=5), greedy(5, priority=0)))
    assert engine.preemptions == 1 and not low_was_done
    assert high == (reference(causal, prompt, 5), "length", None)
    assert low == (reference(causal, prompt, 150), "length", None)


def test_equal_priorities_never_preempt_each_other(causal):
    engine = make_engine(causal, max_batch_size=1, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]
    first, second, first_was_done = run(engine, lambda: running_then(
        engine, prompt, greedy(60, priority=3), greedy(5, priority=3)))
    assert engine.preemptions == 0 and first_was_done
    assert (first[0], second[0]) == (reference(causal, prompt, 60), reference(causal, prompt, 5))


def test_a_cancelled_request_waiting_preempts_nothing(causal):
    engine = make_engine(causal, max_batch_size=1, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        low = engine.generate(prompt, greedy(100, priority=5))
        await until(lambda: engine.num_running == 1)
        with engine._wake:  # the engine sees it only once it is cancelled
            urgent = engine.generate(prompt, greedy(5, priority=0))
            urgent.cancel()
        return await asyncio.wait_for(asyncio.gather(collect(low), collect(urgent)), 60)

    low, urgent = run(engine, main)
    assert engine.preemptions == 0
    assert low == (reference(causal, prompt, 100), "length", None)
    assert urgent[:2] == ([], "abort")


def test_a_long_prompt_prefilled_by_chunks_gives_way_too(causal):
    """One slot, a priority-5 prompt of 300 tokens being prefilled in 16-token chunks: a
    priority-0 request takes its place at once, so its first token comes first, and the
    long one is prefilled again from its start afterwards; both answers are exact."""
    engine = make_engine(causal, max_batch_size=1, max_prefill_tokens=16,
                         prefix_caching=False, priority_scheduling=True)
    long = [(7 * i + 3) % 90 + 4 for i in range(300)]
    prompt = causal.tokenizer("Hello")["input_ids"]
    firsts: list[str] = []  # whose first token came first

    async def noting(name, stream):
        tokens, finish, error = [], None, None
        async for event in stream:
            if event.token_ids and name not in firsts:
                firsts.append(name)
            tokens += event.token_ids
            finish, error = event.finish_reason, event.error
        return tokens, finish, error

    async def main():
        low = engine.generate(long, greedy(3, priority=5))
        await until(lambda: engine._chunking is not None)
        urgent = engine.generate(prompt, greedy(3, priority=0))
        return await asyncio.wait_for(asyncio.gather(noting("low", low),
                                                     noting("urgent", urgent)), 60)

    low, urgent = run(engine, main)
    assert firsts == ["urgent", "low"] and engine.preemptions == 1
    assert urgent == (reference(causal, prompt, 3), "length", None)
    assert low == (reference(causal, long, 3), "length", None)


def test_giving_way_only_when_it_makes_room(causal):
    """A waiting request that outranks one running request but not the other, and has no
    room beside the more urgent one, preempts nothing: giving way would not be enough. It
    runs once the batch has room for it."""
    engine = make_engine(causal, max_batch_size=4, max_batch_tokens=200,
                         reserve_new_tokens=None, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        urgent = engine.generate(prompt, greedy(60, priority=0))
        low = engine.generate(prompt, greedy(20, priority=2))
        await until(lambda: engine.num_running == 2)
        middle = engine.generate(prompt, greedy(150, priority=1))  # too big beside urgent
        await until(lambda: engine.num_waiting == 1)
        return await asyncio.wait_for(asyncio.gather(*map(collect, (urgent, low, middle))), 60)

    results = run(engine, main)
    assert engine.preemptions == 0
    assert [tokens for tokens, _, _ in results] == [reference(causal, prompt, n)
                                                    for n in (60, 20, 150)]


def test_a_full_cache_preempts_the_least_urgent_row_not_the_newest(causal):
    """Two rows outgrow a small cache: first come first served would preempt the newer,
    here the older one of a higher priority value goes; both end with their exact tokens,
    the urgent one first."""
    engine = make_engine(causal, max_batch_tokens=200, reserve_new_tokens=1,
                         priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]
    older, newer, older_was_done = run(engine, lambda: running_then(
        engine, prompt, greedy(150, priority=5), greedy(150, priority=0)))
    assert not older_was_done and engine.preemptions == 1
    assert newer[0] == older[0] == reference(causal, prompt, 150)


def test_the_queue_orders_put_back_requests_by_their_first_arrival():
    class Row:
        def __init__(self, name, priority):
            self.name, self.priority, self.arrival, self.round = name, priority, -1, -1
            self.context = 0

    queue = WaitingQueue(by_priority=True)
    a, b, c, d = Row("a", 1), Row("b", 0), Row("c", 1), Row("d", 1)
    queue.add([a, b, c])
    assert [queue.popleft().name for _ in range(2)] == ["b", "a"]
    queue.add([d])
    queue.add([a])  # preempted: back ahead of the later arrivals of its priority
    assert [row.name for row in queue] == ["a", "c", "d"]
    queue.remove(c)
    assert [row.name for row in queue] == ["a", "d"] and len(queue) == 2


def test_a_full_queue_makes_room_for_a_more_urgent_request():
    class Row:
        def __init__(self, name, priority, started=False):
            self.name, self.priority, self.arrival, self.started = name, priority, -1, started
            self.round, self.context = -1, 0

    queue = WaitingQueue(by_priority=True)
    a, b, c, d = Row("a", 1), Row("b", 0), Row("c", 1), Row("d", 2, started=True)
    queue.add([a, b, c, d])

    def out(row, started=lambda waiting: False):
        found = queue.displaceable(row, started)
        return found[0].name if found else None

    assert out(Row("new", 1)) == "d"  # the least urgent
    assert out(Row("new", 2)) is None  # equals never displace each other
    assert out(Row("new", 1), lambda w: w.started) is None  # d has run; a and c are equals
    assert out(Row("new", 0), lambda w: w.started) == "c"  # the later of the two
    assert out(Row("new", -5), lambda w: True) is None
    assert WaitingQueue().displaceable(Row("new", -5)) == []  # first come, first served


async def last_event(stream):
    events = [event async for event in stream]
    return events[-1]


def test_an_urgent_request_takes_the_place_of_the_least_urgent_waiting_one(causal):
    """A one-slot engine with room for two waiting requests, both of priority 5: one of
    priority 0 still gets in, and the later of the two ends unrun, told the queue was full
    (a 429 its client retries); the urgent one is served first, with its exact tokens.
    Nothing gets in past an equal, nor under first come, first served."""
    engine = make_engine(causal, max_batch_size=1, max_queue=2, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        running = engine.generate(prompt, greedy(60, priority=-100))
        await until(lambda: engine.num_running == 1)
        earlier = engine.generate(prompt, greedy(3, priority=5))
        later = engine.generate(prompt, greedy(3, priority=5))
        urgent = engine.generate(prompt, greedy(3, priority=0))
        with pytest.raises(QueueFull):
            engine.generate(prompt, greedy(3, priority=5))  # no one it outranks waits
        ended = await asyncio.wait_for(last_event(later), 10)
        results = await asyncio.wait_for(asyncio.gather(*map(collect, (running, earlier,
                                                                       urgent))), 60)
        return ended, later, results, (earlier, urgent)

    ended, later, results, (earlier, urgent) = run(engine, main)
    assert (ended.token_ids, ended.finish_reason, ended.code) == ([], "abort", "queue_full")
    assert "a more urgent request took this one's place" in ended.error
    assert later.scheduled_at is None and engine.preemptions == 0
    assert [r[0] for r in results] == [reference(causal, prompt, n) for n in (60, 3, 3)]
    assert urgent.scheduled_at < earlier.scheduled_at

    fcfs = make_engine(causal, max_batch_size=1, max_queue=1)

    async def first_come():
        running = fcfs.generate(prompt, greedy(30))
        await until(lambda: fcfs.num_running == 1)
        waiting = fcfs.generate(prompt, greedy(3, priority=0))
        with pytest.raises(QueueFull):
            fcfs.generate(prompt, greedy(3, priority=0))
        return await asyncio.wait_for(asyncio.gather(collect(running), collect(waiting)), 60)

    assert [r[1] for r in run(fcfs, first_come)] == ["length", "length"]


def test_a_request_of_several_answers_gets_in_whole_or_pushes_nobody_out(causal, fake):
    """The queue tells whether all of a request's answers get in (pushing out less urgent
    waiting ones where they may be); the server asks before queuing any, so a request that
    would not fit whole is refused without ending anybody else's."""
    engine = make_engine(causal, max_batch_size=1, max_queue=2, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        running = engine.generate(prompt, greedy(40, priority=-100))
        await until(lambda: engine.num_running == 1)
        waiting = [engine.generate(prompt, greedy(3, priority=5)) for _ in range(2)]
        rooms = [engine.room_for(n, priority) for n, priority in ((2, 0), (3, 0), (1, 5))]
        await asyncio.wait_for(asyncio.gather(*map(collect, (running, *waiting))), 60)
        return rooms, engine.room_for(2, 5)

    assert run(engine, main) == ([True, False, False], True)
    assert WaitingQueue().displaceable(type("Row", (), {"priority": -9})()) == []

    client, fake_engine = fake
    fake_engine.priority_scheduling = True
    fake_engine.room_for = lambda requests, priority=0: requests < 2
    body = {"prompt": "hi", "max_tokens": 3, "priority": 0}
    refused = client.post(COMP, json={**body, "n": 2})
    error = assert_error(refused, 429, code="queue_full")
    assert "no room in its queue for 2 answers" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert fake_engine.requests == []  # nothing was queued
    assert client.post(COMP, json=body).status_code == 200


def test_a_preempted_request_keeps_its_place_in_a_full_queue(causal):
    """A request that has streamed tokens and was preempted waits again, but is never
    pushed out of the queue: its client already has part of its answer."""
    engine = make_engine(causal, max_batch_size=1, max_queue=1, priority_scheduling=True)
    prompt = causal.tokenizer("Hello")["input_ids"]

    async def main():
        low = engine.generate(prompt, greedy(120, priority=5))
        await until(lambda: engine.num_running == 1)
        high = engine.generate(prompt, greedy(40, priority=0))
        await until(lambda: engine.preemptions == 1 and engine.num_waiting == 1)
        with pytest.raises(QueueFull):
            engine.generate(prompt, greedy(3, priority=1))
        return await asyncio.wait_for(asyncio.gather(collect(low), collect(high)), 60)

    low, high = run(engine, main)
    assert low == (reference(causal, prompt, 120), "length", None)
    assert high == (reference(causal, prompt, 40), "length", None)


# --- the HTTP field ---------------------------------------------------------------------

@pytest.fixture()
def fake(tokenizer):
    engine = FakeEngine(tokenizer, max_context=256)
    client, _ = make_client(engine)
    return client, engine


@pytest.mark.parametrize(("path", "body"), [
    (COMP, {"prompt": "hi", "max_tokens": 3}),
    (CHAT, {"messages": USER, "max_tokens": 3}),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 3}),
])
def test_priority_reaches_the_engine_only_where_the_server_schedules_by_it(fake, path, body,
                                                                          caplog):
    caplog.set_level(logging.INFO, "llmcloud.requests")
    client, engine = fake
    error = assert_error(client.post(path, json={**body, "priority": 2}), 400,
                         param="priority", code="unsupported_value")
    assert "--scheduling-policy priority" in error["message"]
    assert client.post(path, json={**body, "priority": 0}).status_code == 200
    engine.priority_scheduling = True
    assert client.post(path, json={**body, "priority": -3}).status_code == 200
    assert engine.requests[-1].params.priority == -3
    lines = [r.getMessage() for r in caplog.records if r.name == "llmcloud.requests"]
    assert " priority=" not in lines[-2] and " priority=-3" in lines[-1]  # when not 0
    assert_error(client.post(path, json={**body, "priority": "high"}), 400, param="priority")


def test_the_flag_and_its_variable(monkeypatch):
    assert build_parser().parse_args(["--model", "m"]).scheduling_policy == "fcfs"
    given = build_parser().parse_args(["--model", "m", "--scheduling-policy", "priority"])
    assert given.scheduling_policy == "priority"
    monkeypatch.setenv("LLMCLOUD_SCHEDULING_POLICY", "priority")  # SageMaker's way
    assert build_parser().parse_args(["--model", "m"]).scheduling_policy == "priority"


def test_a_server_scheduling_by_priority_serves_the_urgent_request_first(causal_dir, causal):
    """The official client against a one-slot server started with the flag: a priority-0
    request sent while a long priority-5 stream runs is answered before that stream ends,
    which then still reads exactly as its greedy answer; the preemption is counted."""
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny",
                           "--max-batch-size", "1", "--scheduling-policy", "priority")
    prompt = "Hello there"
    ids = causal.tokenizer(prompt)["input_ids"]
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0,
                               timeout=60)
        low = client.completions.create(model="tiny", prompt=prompt, max_tokens=240,
                                        temperature=0, stream=True,
                                        extra_body={"priority": 5, "ignore_eos": True})
        chunks = iter(low)
        texts = [next(chunks).choices[0].text]  # it is running
        urgent = client.completions.create(model="tiny", prompt=prompt, max_tokens=4,
                                           temperature=0, extra_body={"priority": 0,
                                                                      "ignore_eos": True})
        rest = [chunk.choices[0].text for chunk in chunks if chunk.choices]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    decode = causal.tokenizer.decode
    assert urgent.choices[0].text == decode(reference(causal, ids, 4))
    assert "".join(texts + rest) == decode(reference(causal, ids, 240))
    assert 'llmcloud:num_preemptions_total{model_name="tiny"' in metrics
    preempted = [line for line in metrics.splitlines()
                 if line.startswith("llmcloud:num_preemptions_total")]
    assert preempted and float(preempted[0].split()[-1]) == 1.0


def waiting(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("llmcloud:num_requests_waiting{"):
            return float(line.split()[-1])
    raise AssertionError("no waiting gauge")


def test_a_server_tells_a_displaced_request_to_retry(causal_dir, causal):
    """Through HTTP, a one-slot server with room for two waiting requests: a streamed and a
    plain request of priority 5 wait; two of priority 0 take their places. The plain one
    gets a 429 in OpenAI's shape with Retry-After, the streamed one an error event with the
    same code, then [DONE]; the urgent ones get their exact answers."""
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny",
                           "--max-batch-size", "1", "--max-queue", "2",
                           "--scheduling-policy", "priority")
    prompt = "Hello there"
    url = f"{server.url}/v1/completions"

    def body(priority: int, n: int, stream: bool = False) -> dict:
        return {"model": "tiny", "prompt": prompt, "max_tokens": n, "temperature": 0,
                "priority": priority, "ignore_eos": True, "stream": stream}

    def streamed(priority: int, n: int) -> list[str]:
        with httpx.stream("POST", url, json=body(priority, n, True), timeout=60) as response:
            assert response.status_code == 200
            return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]

    try:
        server.wait_ready()
        with ThreadPoolExecutor(5) as pool, httpx.stream(
                "POST", url, json=body(-1, 900, True), timeout=60) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data: ")  # it runs
            background_stream = pool.submit(streamed, 5, 4)
            deadline = time.monotonic() + 30
            while waiting(server.url) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            background = pool.submit(httpx.post, url, json=body(5, 4), timeout=60)
            while waiting(server.url) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            urgent = [pool.submit(httpx.post, url, json=body(0, 4), timeout=60)
                      for _ in range(2)]
            displaced, events = background.result(30), background_stream.result(30)
            assert not urgent[0].done() or not urgent[1].done()  # still behind the long one
            for _ in lines:
                pass
            answers = [future.result(60) for future in urgent]
    finally:
        server.stop()
    error = assert_error(displaced, 429, code="queue_full")
    assert error["type"] == "rate_limit_error" and displaced.headers["retry-after"] == "1"
    assert "more urgent request" in error["message"]
    assert events[-1] == "[DONE]" and len(events) == 2
    streamed_error = json.loads(events[0])["error"]
    assert streamed_error["code"] == "queue_full" and "retry" in streamed_error["message"]
    expected = causal.tokenizer.decode(reference(causal, causal.tokenizer(prompt)["input_ids"],
                                                 4))
    assert [answer.json()["choices"][0]["text"] for answer in answers] == [expected] * 2
