"""A request's stream coalesces the events that pile up while its consumer is busy; what
they carry must survive that."""

from __future__ import annotations

import asyncio

from test_engine_differential import make_engine, wait_idle

from llmcloud.inference_image.engine import GenerationStream, SamplingParams, StreamEvent


async def _events(pushed: list[StreamEvent]) -> list[StreamEvent]:
    stream = GenerationStream([7], SamplingParams(max_tokens=2, prompt_logprobs=1),
                              asyncio.get_running_loop())
    for event in pushed:  # all of them before the consumer reads one
        stream.push(event)
    return [event async for event in stream]


def test_the_empty_prompt_logprobs_of_a_one_token_prompt_survive_coalescing():
    """A prompt of one token has no log probabilities after its first token: the engine
    sends an empty list, which still tells the serving layer to put the echoed prompt
    before the answer. Coalesced with the first token's event, it became None (``[] or
    None``), and an `echo` with `logprobs` of such a prompt came back without its echo."""
    events = asyncio.run(_events([StreamEvent([], prompt_logprobs=[]),
                                  StreamEvent([5]), StreamEvent([6], "length")]))
    assert len(events) == 1
    assert events[0].prompt_logprobs == []
    assert events[0].token_ids == [5, 6] and events[0].finish_reason == "length"


def test_why_a_stream_ended_survives_coalescing():
    events = asyncio.run(_events([StreamEvent([5]), StreamEvent([], "abort", "gone",
                                                                code="queue_full")]))
    assert [(e.token_ids, e.finish_reason, e.code) for e in events] == [
        ([5], "abort", "queue_full")]


def test_the_engine_scores_a_one_token_prompt_once_whatever_the_consumers_pace(causal):
    """Through the engine: the prompt's (empty) scores come before the first token, in
    the same coalesced event when the consumer reads late."""
    engine = make_engine(causal)

    async def main():
        stream = engine.generate([7], SamplingParams(max_tokens=3, temperature=0,
                                                     ignore_eos=True, prompt_logprobs=1))
        while not stream.finished:  # let every event pile up first
            await asyncio.sleep(0.01)
        events = [event async for event in stream]
        await wait_idle(engine)
        return events

    try:
        events = asyncio.run(main())
    finally:
        engine.shutdown()
    assert [e.prompt_logprobs for e in events] == [[]]
    assert len(events[0].token_ids) == 3


def test_an_echo_with_logprobs_of_a_one_token_prompt_shows_the_prompt(causal):
    """Over HTTP: /v1/completions with `echo` and `logprobs` of a prompt of one token came
    back without the prompt (text and its null log probability) about nine times in ten."""
    from test_http import make_client

    engine = make_engine(causal)
    client, _ = make_client(engine)
    try:
        for _ in range(5):
            body = client.post("/v1/completions", json={
                "model": "tiny", "prompt": [7], "echo": True, "logprobs": 1, "max_tokens": 3,
                "temperature": 0}).json()
            logprobs = body["choices"][0]["logprobs"]
            assert body["choices"][0]["text"].startswith(causal.tokenizer.decode([7]))
            assert len(logprobs["tokens"]) == 4 and logprobs["token_logprobs"][0] is None
    finally:
        engine.shutdown()
