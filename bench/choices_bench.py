"""What the answers to one prompt share: 16 streams answering 4 prompts (`n: 4`) against
16 streams answering 16 prompts, on one server.

    python bench/choices_bench.py [--rounds 3] [--requests 16]

One llmcloud-server (prefix caching off, so that only the answers' shared prefill is
measured) with the runtime benchmark's ~30M Llama on 2 threads. Each round sends, in
rotated order, 16 streamed completions of 448-token prompts, sampled at temperature 1,
64 new tokens each, two ways: 4 requests asking for 4 answers each, and 16 requests asking
for one. Every round has new prompts. Prints tokens/s and TTFT p50 per way (median of
rounds) and the ratios per round.
"""

from __future__ import annotations

import statistics

from burst import burst, llmcloud_server, setup
from runtime_bench import prompts

PROMPT_TOKENS, NEW_TOKENS, N = 448, 64, 4


def main() -> None:
    args, work, folder = setup(__doc__, rounds=3)
    server = llmcloud_server("llmcloud-server", folder, work, "--no-prefix-caching")
    sampled = {"temperature": 1.0, "seed": 1, "ignore_eos": True}
    results: dict[str, list[dict]] = {"n=4": [], "n=1": []}
    try:
        warm = prompts(4, PROMPT_TOKENS, -1)
        burst(server, warm[:1], NEW_TOKENS, n=N, **sampled)
        burst(server, warm, NEW_TOKENS, **sampled)
        for number in range(args.rounds):
            texts = prompts(args.requests, PROMPT_TOKENS, number)
            ways = {"n=4": lambda t=texts: burst(server, t[:args.requests // N], NEW_TOKENS,
                                                 n=N, **sampled),
                    "n=1": lambda t=texts: burst(server, t, NEW_TOKENS, **sampled)}
            order = list(ways) if number % 2 == 0 else list(reversed(ways))
            for way in order:
                results[way].append(ways[way]())
    finally:
        server.stop()
    print(f"\n{args.requests} streams of {NEW_TOKENS} new tokens from {PROMPT_TOKENS}-token "
          f"prompts; {args.rounds} rounds (median of rounds)\n")
    print("| requests                  | tok/s | TTFT p50 |")
    print("|---------------------------|------:|---------:|")
    for way, label in (("n=4", f"{args.requests // N} asking n={N}"),
                       ("n=1", f"{args.requests} asking n=1")):
        runs = results[way]
        print(f"| {label:<25} | {statistics.median(r['tok_s'] for r in runs):5.0f} "
              f"| {statistics.median(r['ttft_p50'] for r in runs) * 1000:5.0f} ms |")
    tok = [a["tok_s"] / b["tok_s"] for a, b in zip(results["n=4"], results["n=1"], strict=True)]
    ttft = [a["ttft_p50"] / b["ttft_p50"]
            for a, b in zip(results["n=4"], results["n=1"], strict=True)]
    print(f"\nn=4 against n=1, per round: tok/s {' '.join(f'{x:.2f}' for x in tok)} (median "
          f"{statistics.median(tok):.2f}x); TTFT p50 {' '.join(f'{x:.2f}' for x in ttft)} "
          f"(median {statistics.median(ttft):.2f}x)")


if __name__ == "__main__":
    main()
