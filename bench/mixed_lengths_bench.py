"""Mixed prompt lengths benchmark: a burst of prompts of very different lengths against a
burst of as many equal prompts of the same total length.

    python bench/mixed_lengths_bench.py [--rounds 4]

One llmcloud-server serves the runtime benchmark's ~30M Llama on 2 threads. Each round
sends, in rotated order, 16 concurrent streaming completions (32 new tokens, greedy) of

- mixed lengths: prompts of 16 to 480 tokens (2 324 in all), in an order that puts short
  and long ones side by side, as a chat service's traffic does;
- equal lengths: 16 prompts of 145 tokens (2 320 in all).

The engine prefills arrivals in groups, each left-padded to its longest prompt. Were the
padding free, the mixed burst would get its first tokens as fast as the equal one. Prints,
per load (median of rounds): the prompt tokens prefilled per second up to the last first
token, TTFT p50 and p90, tokens/s; and each round's mixed/equal ratios. Every round's
prompts are new (no prefix is ever found in the cache).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from burst import llmcloud_server, setup, timed_stream
from runtime_bench import prompts

MIXED = [24, 320, 40, 160, 16, 480, 64, 96, 32, 240, 48, 128, 20, 400, 56, 200]
EQUAL = [145] * 16
NEW_TOKENS = 32


def _body(prompt: str) -> dict:
    return {"model": "bench", "prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0,
            "stream": True}


async def _burst(port: int, lengths: list[int], round_: int) -> dict:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/completions"
    texts = [prompts(1, n, batch=1000 * round_ + i + 1)[0] for i, n in enumerate(lengths)]
    async with httpx.AsyncClient(timeout=600,
                                 limits=httpx.Limits(max_connections=len(texts) + 2)) as client:
        await timed_stream(client, url, _body(prompts(1, 64, batch=-1 - round_)[0]))
        started = time.perf_counter()
        results = await asyncio.gather(*(timed_stream(client, url, _body(t))
                                         for t in texts))
    ttfts = sorted(ttft for ttft, _, _ in results)
    wall = max(end for _, _, end in results) - started
    return {"prefill_tok_s": sum(lengths) / ttfts[-1],
            "ttft_p50": statistics.median(ttfts), "ttft_p90": ttfts[int(0.9 * len(ttfts))],
            "tok_s": sum(n for _, n, _ in results) / wall}


def main() -> None:
    args, work, folder = setup(__doc__, rounds=4, requests=False)
    server = llmcloud_server("llmcloud-server", folder, work, "--max-batch-size", "16")
    loads = {"mixed lengths": MIXED, "equal lengths": EQUAL}
    results: dict[str, list[dict]] = {name: [] for name in loads}
    try:
        names = list(loads)
        for number in range(args.rounds):
            turn = number % len(names)
            for name in names[turn:] + names[:turn]:
                results[name].append(asyncio.run(_burst(server.port, loads[name], number)))
    finally:
        server.stop()
    print(f"\n16 concurrent streams, {NEW_TOKENS} new tokens each; median of {args.rounds} "
          "rounds\n")
    print("| load          | prompt tokens/s to the last first token | TTFT p50 | TTFT p90 "
          "| tok/s |")
    print("|---------------|----------------------------------------:|---------:|---------:"
          "|------:|")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {name:<13} | {med['prefill_tok_s']:39.0f} | {med['ttft_p50'] * 1000:5.0f} ms "
              f"| {med['ttft_p90'] * 1000:5.0f} ms | {med['tok_s']:5.0f} |")
    for key in ("prefill_tok_s", "ttft_p50", "ttft_p90", "tok_s"):
        per_round = [m[key] / e[key] for m, e in
                     zip(results["mixed lengths"], results["equal lengths"], strict=True)]
        print(f"mixed/equal {key}: {' '.join(f'{r:.2f}' for r in per_round)} "
              f"(median {statistics.median(per_round):.2f}x)")


if __name__ == "__main__":
    main()
