"""What penalties, logit biases and log probabilities cost: the same 16 streams with and
without them, on one server.

    python bench/sampling_controls_bench.py [--rounds 4] [--requests 16]

One llmcloud-server with the runtime benchmark's ~30M Llama on 2 threads. Each round sends
16 concurrent streaming completions (64 prompt tokens, 64 new tokens, greedy) four ways, in
rotated order: plain; `logprobs: 5`; `presence_penalty` and `frequency_penalty` 0.5 with a
`logit_bias` of 10 tokens; and all of them. Prints tokens/s and TTFT p50 per way (median of
rounds) and each way's tok/s against the plain run of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runtime_bench import Server, build_model, free_port, prompts, streamed_texts

PROMPT_TOKENS, NEW_TOKENS = 64, 64
PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": 0.5,
             "logit_bias": {str(token): -5 for token in range(10, 20)}}
WAYS = {
    "plain": {},
    "logprobs 5": {"logprobs": 5},
    "penalties + bias": PENALTIES,
    "all of them": {**PENALTIES, "logprobs": 5},
}


async def one_stream(client, url: str, body: dict) -> tuple[float, int, float]:
    started = time.perf_counter()
    first, tokens = None, 0
    async for text in streamed_texts(client, url, body):
        first = first or time.perf_counter()
        tokens += len(text.split())  # one word per token in the benchmark's vocabulary
    return first - started, tokens, time.perf_counter()


async def load(base: str, texts: list[str], extra: dict) -> dict:
    import httpx

    url = f"{base}/v1/completions"
    limits = httpx.Limits(max_connections=len(texts) + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, url, {
            "model": "bench", "prompt": t, "max_tokens": NEW_TOKENS, "temperature": 0,
            "stream": True, **extra}) for t in texts))
    wall = max(end for _, _, end in results) - started
    return {"tok_s": sum(n for _, n, _ in results) / wall,
            "ttft_p50": statistics.median(ttft for ttft, _, _ in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmcloud-bench-"))
    folder = work / "bench-llama"
    build_model(folder)
    port = free_port()
    server = Server("llmcloud-server", [
        sys.executable, "-m", "llmcloud.inference_image.server", "--model", str(folder),
        "--served-model-name", "bench", "--port", str(port), "--device", "cpu",
        "--log-level", "error"], "/health/ready", port, "bench", work / "server.log")
    base = f"http://127.0.0.1:{port}"
    texts = prompts(args.requests, PROMPT_TOKENS)
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    try:
        for extra in WAYS.values():  # warm-up: each way's shapes and code paths once
            asyncio.run(load(base, texts[:4], extra))
        for number in range(args.rounds):
            ways = list(WAYS)
            for way in ways[number % len(ways):] + ways[:number % len(ways)]:
                results[way].append(asyncio.run(load(base, texts, WAYS[way])))
    finally:
        server.stop()
    report(results, args)


def report(results: dict[str, list[dict]], args) -> None:
    print(f"\n{args.requests} concurrent streams, {PROMPT_TOKENS} prompt tokens, {NEW_TOKENS} "
          f"new tokens; {args.rounds} rounds (median of rounds)\n")
    print("| request fields       | tok/s | TTFT p50 | tok/s against plain, per round    |")
    print("|----------------------|------:|---------:|-----------------------------------|")
    for way, runs in results.items():
        ratios = [r["tok_s"] / p["tok_s"] for r, p in zip(runs, results["plain"], strict=True)]
        print(f"| {way:<20} | {statistics.median(r['tok_s'] for r in runs):5.0f} "
              f"| {statistics.median(r['ttft_p50'] for r in runs) * 1000:5.0f} ms "
              f"| {' '.join(f'{x:.2f}' for x in ratios)}, median "
              f"{statistics.median(ratios):.2f}x |")


if __name__ == "__main__":
    main()
