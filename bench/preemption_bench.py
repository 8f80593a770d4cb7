"""KV-cache reserve benchmark: `--reserve-new-tokens 256` (the default: admit by what
requests hold, preempt and resume those that outgrow the cache) against
`--reserve-new-tokens all` (reserve every request's whole max_tokens, never preempt).

    python bench/preemption_bench.py [--rounds 3] [--cache 4096]

Both servers serve the runtime benchmark's ~30M Llama on 2 threads with a cache of
`--cache` positions (a stand-in for a GPU's memory), and get the same requests of 64
prompt tokens and max_tokens 512 in two shapes:

- short answers: 24 requests that end after 64 tokens (the client closes the stream, as
  the server does when a stop sequence matches), the common case of a generous max_tokens;
- long answers: 12 requests that use all 512 tokens, the case preemption costs most.

Rounds alternate the two servers (in rotated order), after a warm-up. Prints tokens/s,
the most requests decoding at once, and preemptions per run, and the per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path

from runtime_bench import Server, build_model, free_port, prompts, streamed_texts

PROMPT_TOKENS, MAX_TOKENS, SHORT_ANSWER = 64, 512, 64
SHAPES = {"short answers": (24, SHORT_ANSWER), "long answers": (12, MAX_TOKENS)}


async def stream(client, url: str, prompt: str, keep: int) -> int:
    """Stream one completion, closing it after ``keep`` tokens; the tokens received."""
    body = {"model": "bench", "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0,
            "stream": True}
    received = 0
    async with aclosing(streamed_texts(client, url, body)) as texts:
        async for text in texts:
            received += len(text.split())
            if received >= keep:
                break  # closing the generator closes the connection: the server cancels
    return min(received, keep)


async def metric(client, base: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get(f"{base}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


async def load(base: str, texts: list[str], keep: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=len(texts) + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        preempted = await metric(client, base, "llmcloud:num_preemptions_total")
        peak = 0
        started = time.perf_counter()
        task = asyncio.gather(*(stream(client, f"{base}/v1/completions", t, keep)
                                for t in texts))
        while not task.done():
            running = await metric(client, base, "llmcloud:num_requests_running")
            peak = max(peak, int(running))
            await asyncio.sleep(0.05)
        tokens = sum(await task)
        wall = time.perf_counter() - started
        # the cancelled rows leave the batch at the engine's next step
        await asyncio.sleep(0.5)
        preempted = await metric(client, base, "llmcloud:num_preemptions_total") - preempted
    return {"tok_s": tokens / wall, "peak_running": peak, "preempted": int(preempted)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=int, default=4096,
                        help="--max-batch-tokens of both servers (default: %(default)s)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmcloud-bench-"))
    folder = work / "bench-llama"
    build_model(folder)
    servers = {}
    for reserve in ("256", "all"):
        port = free_port()
        servers[reserve] = Server(
            f"reserve {reserve}",
            [sys.executable, "-m", "llmcloud.inference_image.server", "--model", str(folder),
             "--served-model-name", "bench", "--port", str(port), "--device", "cpu",
             "--max-batch-size", "32", "--max-batch-tokens", str(args.cache),
             "--reserve-new-tokens", reserve, "--log-level", "error",
             # every round repeats the prompts: kept beginnings would serve them
             "--no-prefix-caching"],
            "/health/ready", port, "bench", work / f"reserve-{reserve}.log")
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for server in servers.values():  # warm-up: kernels for these shapes get built
            asyncio.run(load(f"http://127.0.0.1:{server.port}", prompts(8, PROMPT_TOKENS),
                             SHORT_ANSWER))
        for number in range(args.rounds):
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for shape, (count, keep) in SHAPES.items():
                texts = prompts(count, PROMPT_TOKENS)
                for reserve in order:
                    base = f"http://127.0.0.1:{servers[reserve].port}"
                    results.setdefault((shape, reserve), []).append(
                        asyncio.run(load(base, texts, keep)))
    finally:
        for server in servers.values():
            server.stop()
    report(results, args)


def report(results: dict[tuple[str, str], list[dict]], args) -> None:
    print(f"\ncache {args.cache} positions; prompts {PROMPT_TOKENS} tokens, max_tokens "
          f"{MAX_TOKENS}; {args.rounds} rounds (median of rounds)\n")
    print("| requests                  | reserve | tok/s | most running | preempted |")
    print("|---------------------------|--------:|------:|-------------:|----------:|")
    for shape, (count, keep) in SHAPES.items():
        for reserve in ("256", "all"):
            runs = results[(shape, reserve)]
            label = f"{count} x {shape} ({keep})"
            print(f"| {label:<25} | {reserve:>7} "
                  f"| {statistics.median(r['tok_s'] for r in runs):5.0f} "
                  f"| {max(r['peak_running'] for r in runs):12d} "
                  f"| {statistics.median(r['preempted'] for r in runs):9.0f} |")
    for shape in SHAPES:
        ratios = [a["tok_s"] / b["tok_s"] for a, b in
                  zip(results[(shape, "256")], results[(shape, "all")], strict=True)]
        print(f"{shape}: tok/s reserve 256 / reserve all, per round: "
              f"{' '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
