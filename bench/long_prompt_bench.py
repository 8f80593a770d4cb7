"""Long-prompt benchmark: how long running streams stall when a long prompt arrives, with
the prompt prefilled by chunks of `--max-prefill-tokens` (128, and 512, the default)
against prefilled whole (a budget as large as the prompt, as the engine did before).

    python bench/long_prompt_bench.py [--rounds 3]

Each server serves the runtime benchmark's ~30M Llama on 2 threads. In each round, 8
streams of 16 prompt tokens decode 192 tokens; once they are under way, one request of
960 prompt tokens and 16 new tokens arrives, and 30 ms later 4 short requests (16 prompt
tokens, 16 new). Prints the longest gap between two tokens of the running streams after it
arrived, the long request's time to first token, and the short newcomers' median time to
first token (do they wait for the long prompt's whole prefill?), as medians over rounds
(servers in rotated order in each round, after a warm-up round). Each round also runs the
same with a second long prompt (960 tokens) sent 15 ms after the first, so that it is
queued ahead of the newcomers while the first is prefilled by chunks: do they wait behind
it for the first one's last chunk?
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

BUDGETS = {"chunks of 128": 128, "chunks of 512": 512, "whole (budget 1024)": 1024}
RUNNING, RUNNING_PROMPT, RUNNING_TOKENS = 8, 16, 192
LONG_PROMPT, LONG_TOKENS = 960, 16
NEWCOMERS, NEWCOMER_DELAY = 4, 0.03
SECOND_LONG_DELAY = 0.015


async def stream(client, url: str, prompt: str, max_tokens: int, stamps: list[float]) -> None:
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True}
    async for text in streamed_texts(client, url, body):
        stamps.extend([time.perf_counter()] * len(text.split()))


async def one_round(base: str, second_long: bool = False) -> dict:
    """One round; with ``second_long``, a second long prompt comes between the first one
    and the newcomers."""
    import httpx

    url = f"{base}/v1/completions"
    texts = prompts(RUNNING, RUNNING_PROMPT)
    long_text, second_text = prompts(2, LONG_PROMPT)
    async with httpx.AsyncClient(timeout=600) as client:
        stamps: list[list[float]] = [[] for _ in texts]
        running = [asyncio.ensure_future(stream(client, url, t, RUNNING_TOKENS, s))
                   for t, s in zip(texts, stamps, strict=True)]
        while min(len(s) for s in stamps) < 16:  # every stream under way
            await asyncio.sleep(0.005)
        arrived = time.perf_counter()
        long_stamps: list[float] = []
        long = asyncio.ensure_future(stream(client, url, long_text, LONG_TOKENS, long_stamps))
        second: list = []
        if second_long:
            await asyncio.sleep(SECOND_LONG_DELAY)
            second.append(asyncio.ensure_future(
                stream(client, url, second_text, LONG_TOKENS, [])))
        await asyncio.sleep(NEWCOMER_DELAY - SECOND_LONG_DELAY * second_long)
        sent = time.perf_counter()
        newcomers: list[list[float]] = [[] for _ in range(NEWCOMERS)]
        await asyncio.gather(long, *second, *(
            stream(client, url, text, 16, s)
            for text, s in zip(prompts(NEWCOMERS, RUNNING_PROMPT, batch=1), newcomers,
                               strict=True)))
        await asyncio.gather(*running)
    gaps = [b - a for s in stamps for a, b in zip(s, s[1:], strict=False) if b > arrived]
    return {"stall": max(gaps), "long_ttft": long_stamps[0] - arrived,
            "newcomer_ttft": statistics.median(s[0] - sent for s in newcomers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmcloud-bench-"))
    folder = work / "bench-llama"
    build_model(folder)
    servers = {}
    for name, budget in BUDGETS.items():
        port = free_port()
        servers[name] = Server(
            name,
            [sys.executable, "-m", "llmcloud.inference_image.server", "--model", str(folder),
             "--served-model-name", "bench", "--port", str(port), "--device", "cpu",
             "--max-batch-size", "16", "--max-prefill-tokens", str(budget),
             "--log-level", "error",
             # every round repeats the prompts: kept beginnings would serve them
             "--no-prefix-caching"],
            "/health/ready", port, "bench", work / f"budget-{budget}.log")
    results: dict[str, list[dict]] = {name: [] for name in servers}
    behind: dict[str, list[dict]] = {name: [] for name in servers}  # a 2nd long prompt
    try:
        for server in servers.values():  # warm-up: the first long prompt builds kernels
            asyncio.run(one_round(f"http://127.0.0.1:{server.port}"))
        names = list(servers)
        for number in range(args.rounds):
            turn = number % len(names)
            for name in names[turn:] + names[:turn]:
                base = f"http://127.0.0.1:{servers[name].port}"
                results[name].append(asyncio.run(one_round(base)))
                behind[name].append(asyncio.run(one_round(base, second_long=True)))
    finally:
        for server in servers.values():
            server.stop()
    print(f"\n{RUNNING} streams decoding, one prompt of {LONG_PROMPT} tokens arrives; "
          f"median of {args.rounds} rounds\n")
    print("| long prompt prefilled  | longest stall of running streams | its TTFT "
          "| newcomers' TTFT | newcomers' TTFT behind a 2nd long prompt |")
    print("|------------------------|---------------------------------:|---------:"
          "|----------------:|-----------------------------------------:|")
    for name, runs in results.items():
        stall = statistics.median(r["stall"] for r in runs) * 1000
        ttft = statistics.median(r["long_ttft"] for r in runs) * 1000
        newcomer = statistics.median(r["newcomer_ttft"] for r in runs) * 1000
        second = statistics.median(r["newcomer_ttft"] for r in behind[name]) * 1000
        print(f"| {name:<22} | {stall:29.0f} ms | {ttft:5.0f} ms | {newcomer:12.0f} ms "
              f"| {second:37.0f} ms |")
    whole = results["whole (budget 1024)"]
    for name in list(BUDGETS)[:-1]:
        stalls = [a["stall"] / b["stall"] for a, b in zip(results[name], whole, strict=True)]
        ttfts = [a["long_ttft"] / b["long_ttft"] for a, b in
                 zip(results[name], whole, strict=True)]
        newcomers = [a["newcomer_ttft"] / b["newcomer_ttft"] for a, b in
                     zip(results[name], whole, strict=True)]
        print(f"{name} against whole, per round: stall "
              f"{' '.join(f'{r:.2f}' for r in stalls)}, TTFT "
              f"{' '.join(f'{r:.2f}' for r in ttfts)}, newcomers' TTFT "
              f"{' '.join(f'{r:.2f}' for r in newcomers)}")
    for name in BUDGETS:
        ratios = [b["newcomer_ttft"] / a["newcomer_ttft"]
                  for a, b in zip(results[name], behind[name], strict=True)]
        print(f"{name}: newcomers' TTFT behind a 2nd long prompt against without it, per "
              f"round: {' '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
