"""Priority scheduling benchmark: interactive requests arriving while batch work fills
the server, on `--scheduling-policy priority` (interactive priority 0, batch 1) against
`--scheduling-policy fcfs` (the default: the same requests, no priorities).

    python bench/priority_bench.py [--rounds 3]

Both servers serve the runtime benchmark's ~30M Llama on 2 threads with 8 batch slots.
Each round sends 24 batch streams (64 prompt tokens, 128 new tokens) at once, then, once
they fill the slots and others wait, 4 interactive streams (64 prompt tokens, 32 new tokens).
Rounds alternate the two servers (in rotated order), after a warm-up; every round's
prompts are new. Prints, per server, the interactive requests' TTFT p50 and end-to-end
latency p50, the batch work's tokens/s and the preemptions, and the per-round ratios.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from burst import llmcloud_server, setup
from preemption_bench import metric
from runtime_bench import prompts, streamed_texts

SLOTS, PROMPT_TOKENS = 8, 64
BATCH, BATCH_TOKENS = 24, 128
INTERACTIVE, INTERACTIVE_TOKENS = 4, 32
POLICIES = ("fcfs", "priority")


async def one(client, url: str, body: dict) -> dict:
    started, first, tokens = time.perf_counter(), None, 0
    async for text in streamed_texts(client, url, body):
        first = first or time.perf_counter()
        tokens += len(text.split())  # one word per token in the benchmark's vocabulary
    return {"ttft": first - started, "latency": time.perf_counter() - started,
            "tokens": tokens}


async def load(base: str, policy: str, batch: list[str], interactive: list[str]) -> dict:
    import httpx

    url = f"{base}/v1/completions"

    def body(prompt: str, tokens: int, priority: int) -> dict:
        ranked = {"priority": priority} if policy == "priority" else {}
        return {"model": "bench", "prompt": prompt, "max_tokens": tokens, "temperature": 0,
                "stream": True, "ignore_eos": True, **ranked}

    limits = httpx.Limits(max_connections=len(batch) + len(interactive) + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        preempted = await metric(client, base, "llmcloud:num_preemptions_total")
        started = time.perf_counter()
        background = asyncio.gather(*(one(client, url, body(p, BATCH_TOKENS, 1))
                                      for p in batch))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                await metric(client, base, "llmcloud:num_requests_running") >= SLOTS
                and await metric(client, base, "llmcloud:num_requests_waiting") >= 1):
            await asyncio.sleep(0.02)  # until the slots are full and requests queue
        urgent = await asyncio.gather(*(one(client, url, body(p, INTERACTIVE_TOKENS, 0))
                                        for p in interactive))
        finished = await background
        wall = time.perf_counter() - started
        preempted = await metric(client, base, "llmcloud:num_preemptions_total") - preempted
    return {"ttft": statistics.median(r["ttft"] for r in urgent),
            "latency": statistics.median(r["latency"] for r in urgent),
            "batch_tok_s": sum(r["tokens"] for r in finished) / wall,
            "preempted": int(preempted)}


def main() -> None:
    args, work, folder = setup(__doc__, rounds=3, requests=False)
    servers = {policy: llmcloud_server(policy, folder, work, "--max-batch-size", str(SLOTS),
                                       "--scheduling-policy", policy)
               for policy in POLICIES}
    results: dict[str, list[dict]] = {policy: [] for policy in POLICIES}
    try:
        for policy, server in servers.items():  # warm-up
            asyncio.run(load(f"http://127.0.0.1:{server.port}", policy,
                             prompts(SLOTS + 2, PROMPT_TOKENS, batch=-1), prompts(
                                 1, PROMPT_TOKENS, batch=-2)))
        for number in range(args.rounds):
            batch = prompts(BATCH, PROMPT_TOKENS, batch=2 * number)
            interactive = prompts(INTERACTIVE, PROMPT_TOKENS, batch=2 * number + 1)
            order = POLICIES if number % 2 == 0 else tuple(reversed(POLICIES))
            for policy in order:
                base = f"http://127.0.0.1:{servers[policy].port}"
                results[policy].append(asyncio.run(load(base, policy, batch, interactive)))
    finally:
        for server in servers.values():
            server.stop()
    report(results, args.rounds)


def report(results: dict[str, list[dict]], rounds: int) -> None:
    print(f"\n{SLOTS} slots; {BATCH} batch streams ({PROMPT_TOKENS} + {BATCH_TOKENS} tokens), "
          f"then {INTERACTIVE} interactive ({PROMPT_TOKENS} + {INTERACTIVE_TOKENS}); "
          f"{rounds} rounds (median of rounds)\n")
    print("| policy   | interactive TTFT p50 | interactive latency p50 | batch tok/s "
          "| preempted |")
    print("|----------|---------------------:|------------------------:|------------:"
          "|----------:|")
    for policy in POLICIES:
        runs = results[policy]
        print(f"| {policy:<8} | {statistics.median(r['ttft'] for r in runs) * 1000:17.0f} ms "
              f"| {statistics.median(r['latency'] for r in runs) * 1000:20.0f} ms "
              f"| {statistics.median(r['batch_tok_s'] for r in runs):11.0f} "
              f"| {statistics.median(r['preempted'] for r in runs):9.0f} |")
    for key, what in (("ttft", "interactive TTFT p50"), ("latency", "interactive latency"),
                      ("batch_tok_s", "batch tok/s")):
        ratios = [a[key] / b[key] for a, b in zip(results["priority"], results["fcfs"],
                                                  strict=True)]
        print(f"{what}, priority / fcfs, per round: {' '.join(f'{r:.2f}' for r in ratios)}, "
              f"median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
