"""What penalties, logit biases and log probabilities cost: the same 16 streams with and
without them, on one server.

    python bench/sampling_controls_bench.py [--rounds 4] [--requests 16]

One llmcloud-server (prefix caching off: every round repeats the prompts) with the
runtime benchmark's ~30M Llama on 2 threads. Each round sends
16 concurrent streaming completions (64 prompt tokens, 64 new tokens, greedy) four ways, in
rotated order: plain; `logprobs: 5`; `presence_penalty` and `frequency_penalty` 0.5 with a
`logit_bias` of 10 tokens; and all of them. Prints tokens/s and TTFT p50 per way (median of
rounds) and each way's tok/s against the plain run of the same round.
"""

from __future__ import annotations

import statistics

from burst import burst, llmcloud_server, setup
from runtime_bench import prompts

PROMPT_TOKENS, NEW_TOKENS = 64, 64
PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": 0.5,
             "logit_bias": {str(token): -5 for token in range(10, 20)}}
WAYS = {
    "plain": {},
    "logprobs 5": {"logprobs": 5},
    "penalties + bias": PENALTIES,
    "all of them": {**PENALTIES, "logprobs": 5},
}


def main() -> None:
    args, work, folder = setup(__doc__, rounds=4)
    # Every round sends the same prompts: kept prompt beginnings would speed up all the
    # rounds after the first, so the prefix cache is off to measure these fields alone.
    server = llmcloud_server("llmcloud-server", folder, work, "--no-prefix-caching")
    texts = prompts(args.requests, PROMPT_TOKENS)
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    try:
        for extra in WAYS.values():  # warm-up: each way's shapes and code paths once
            burst(server, texts[:4], NEW_TOKENS, **extra)
        for number in range(args.rounds):
            ways = list(WAYS)
            for way in ways[number % len(ways):] + ways[:number % len(ways)]:
                results[way].append(burst(server, texts, NEW_TOKENS, **WAYS[way]))
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
