"""Memory stays flat under sustained load: prompts of every length, streams cut short."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from server_process import ServerProcess

WAVES_TO_WARM_UP = 10
WAVES_MEASURED = 12
REQUESTS_PER_WAVE = 12
# Allocator noise and the last few row counts first seen after warm-up (a few MiB each);
# a server that keeps something per prompt length grows by hundreds of MiB here.
ALLOWED_GROWTH_MIB = 48


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def _request(url: str, rng: random.Random, number: int) -> None:
    prompt = [rng.randrange(10, 300) for _ in range(rng.randrange(1, 300))]
    body = {"model": "tiny", "prompt": prompt, "max_tokens": rng.randrange(1, 12),
            "temperature": 0.7, "seed": number}
    with httpx.Client(timeout=60) as client:
        if number % 4 == 0:  # a client that goes away after the first chunk
            with client.stream("POST", f"{url}/v1/completions",
                               json={**body, "stream": True, "max_tokens": 40}) as response:
                assert response.status_code == 200
                next(response.iter_lines())
            return
        response = client.post(f"{url}/v1/completions", json=body)
        assert response.status_code == 200, response.text


def test_memory_stays_flat_under_prompts_of_every_length(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny",
                           "--max-batch-size", "8").wait_ready()
    rng = random.Random(0)
    number = 0

    def wave() -> None:
        nonlocal number
        seeds = [(random.Random(rng.random()), number + i) for i in range(REQUESTS_PER_WAVE)]
        number += REQUESTS_PER_WAVE
        with ThreadPoolExecutor(REQUESTS_PER_WAVE) as pool:
            list(pool.map(lambda args: _request(server.url, *args), seeds))

    try:
        for _ in range(WAVES_TO_WARM_UP):
            wave()
        warm = _rss_mib(server.proc.pid)
        for _ in range(WAVES_MEASURED):
            wave()
        grown = _rss_mib(server.proc.pid) - warm
        assert grown < ALLOWED_GROWTH_MIB, f"RSS grew {grown:.0f} MiB after warm-up"
    finally:
        server.stop()
