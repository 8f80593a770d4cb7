"""Shared by the feature benchmarks: an llmcloud-server on the benchmark model, and a burst
of concurrent streamed completions measured for tokens/s and TTFT."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runtime_bench import Server, build_model, free_port, streamed_texts


def setup(doc: str, rounds: int, *, requests: bool = True
          ) -> tuple[argparse.Namespace, Path, Path]:
    """Parse ``--rounds`` (and ``--requests``, for a benchmark whose burst size may be
    chosen), build the benchmark model in a fresh folder; returns the arguments, the work
    folder and the model folder."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    if requests:
        parser.add_argument("--requests", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmcloud-bench-"))
    build_model(work / "bench-llama")
    return args, work, work / "bench-llama"


def llmcloud_server(name: str, folder: Path, work: Path, *flags: str) -> Server:
    """llmcloud-server serving ``folder`` as `bench` on a free port, on CPU, with ``flags``;
    its log goes to ``work``."""
    port = free_port()
    return Server(name, [
        sys.executable, "-m", "llmcloud.inference_image.server", "--model", str(folder),
        "--served-model-name", "bench", "--port", str(port), "--device", "cpu",
        "--log-level", "error", *flags], "/health/ready", port, "bench",
        work / f"{name.strip('-')}.log")


async def timed_stream(client, url: str, body: dict) -> tuple[float, int, float]:
    """One streamed completion: (time to its first token, its tokens, when it ended)."""
    started, first, tokens = time.perf_counter(), None, 0
    async for text in streamed_texts(client, url, body):
        first = first or time.perf_counter()
        tokens += len(text.split())  # one word per token in the benchmark's vocabulary
    return first - started, tokens, time.perf_counter()


async def _burst(server: Server, bodies: list[dict]) -> dict:
    import httpx

    url = f"http://127.0.0.1:{server.port}/v1/completions"
    limits = httpx.Limits(max_connections=len(bodies) + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(timed_stream(client, url, body) for body in bodies))
    wall = max(end for _, _, end in results) - started
    return {"tok_s": sum(n for _, n, _ in results) / wall,
            "ttft_p50": statistics.median(ttft for ttft, _, _ in results)}


def burst(server: Server, prompts: list[str], new_tokens: int,
          models: list[str] | None = None, **fields) -> dict:
    """Stream one greedy completion per prompt, all at once; tokens/s and TTFT p50 (s).
    ``models``: the model each request names (default: the served model, `bench`)."""
    models = models or ["bench"] * len(prompts)
    bodies = [{"model": m, "prompt": p, "max_tokens": new_tokens, "temperature": 0,
               "stream": True, **fields} for p, m in zip(prompts, models, strict=True)]
    return asyncio.run(_burst(server, bodies))


def ratios(runs: list[dict], against: list[dict]) -> str:
    """tok/s and TTFT p50 of ``runs`` against ``against`` (the same rounds), per round and
    their medians."""
    tok = [a["tok_s"] / b["tok_s"] for a, b in zip(runs, against, strict=True)]
    ttft = [a["ttft_p50"] / b["ttft_p50"] for a, b in zip(runs, against, strict=True)]
    return (f"tok/s {' '.join(f'{r:.2f}' for r in tok)} (median "
            f"{statistics.median(tok):.2f}x); TTFT p50 {' '.join(f'{r:.2f}' for r in ttft)} "
            f"(median {statistics.median(ttft):.2f}x)")
