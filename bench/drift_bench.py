"""Drift benchmark: does a server that has run for a while serve as fast as a fresh one?

    python bench/drift_bench.py [--rounds 14] [--requests 16]

One llmcloud-server on the runtime benchmark's ~30M Llama is kept for the whole run; each
round it serves the runtime benchmark's burst (16 streaming requests of 64 prompt and 64
new tokens, new prompts every round), and so does a server started fresh for that round
alone, the two in alternating order. Anything that builds up in a long-lived server (caches,
fragmented memory, growing lists) shows as the kept server's ratio to the fresh one falling
round after round, while a slow spell of the machine hits both alike. Prints each round's
ratios and the kept server's resident memory.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from burst import llmcloud_server, setup
from runtime_bench import prompts

PROMPT_TOKENS, NEW_TOKENS = 64, 64


def resident_mib(pid: int) -> float:
    """Resident memory (VmRSS) of a live process now, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    args, work, folder = setup(__doc__, rounds=14)
    kept = llmcloud_server("kept", folder, work)
    batch, tok, ttft = 0, [], []
    try:
        for number in range(args.rounds):
            result = {}
            for who in ("kept", "fresh") if number % 2 == 0 else ("fresh", "kept"):
                batch += 1
                texts = prompts(args.requests, PROMPT_TOKENS, batch)
                if who == "kept":
                    result[who] = kept.measure(texts, NEW_TOKENS)
                    continue
                fresh = llmcloud_server("fresh", folder, work)
                try:
                    result[who] = fresh.measure(texts, NEW_TOKENS)
                finally:
                    fresh.stop()
            tok.append(result["kept"]["tok_s"] / result["fresh"]["tok_s"])
            ttft.append(result["kept"]["ttft_p50"] / result["fresh"]["ttft_p50"])
            print(f"round {number + 1}: kept {result['kept']['tok_s']:.0f} tok/s, fresh "
                  f"{result['fresh']['tok_s']:.0f}: {tok[-1]:.2f}x; TTFT p50 "
                  f"{ttft[-1]:.2f}x; kept server's memory {resident_mib(kept.proc.pid):.0f} MiB",
                  flush=True)
    finally:
        kept.stop()
    print(f"kept/fresh: tok/s median {statistics.median(tok):.2f}x, TTFT p50 median "
          f"{statistics.median(ttft):.2f}x")


if __name__ == "__main__":
    main()
