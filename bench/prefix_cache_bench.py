"""Prefix caching benchmark: `--prefix-caching` (the default) against `--no-prefix-caching`.

    python bench/prefix_cache_bench.py [--rounds 3] [--requests 16]

Two servers serve the runtime benchmark's ~30M Llama on 2 threads. Each round sends both
the same two loads of 16 concurrent streaming completions (64 new tokens, greedy), in
rotated order:

- shared system prompt: every prompt is the same 512-token system prompt followed by 64
  tokens of its own (a chat service's usual shape);
- distinct prompts: 576 tokens that share nothing, so the cache only costs (hashing,
  storing what it will never use).

Only the system prompt repeats: every round's own parts and distinct prompts are new.

A warm-up request per server comes first (its system prompt is the shared one). Prints
tokens/s and TTFT p50 per run (median of rounds) and each round's ratios.
"""

from __future__ import annotations

import statistics

from burst import burst, llmcloud_server, ratios, setup
from runtime_bench import VOCAB

SYSTEM_TOKENS, OWN_TOKENS, NEW_TOKENS = 512, 64, 64


def words(start: int, count: int, stride: int) -> str:
    return " ".join(f"w{(start + i * stride) % (VOCAB - 4)}" for i in range(count))


def loads(n: int, round_: int) -> dict[str, list[str]]:
    """Each round's prompts; nothing but the system prompt repeats across rounds or loads."""
    system = words(1, SYSTEM_TOKENS, 3)
    fresh = (round_ + 1) * 1000 * n
    return {
        "shared system prompt": [f"{system} {words(fresh + r * 131 + 7, OWN_TOKENS, 7)}"
                                 for r in range(n)],
        "distinct prompts": [words(fresh + r * 977 + 11, SYSTEM_TOKENS + OWN_TOKENS, 5)
                             for r in range(n)],
    }


def main() -> None:
    args, work, folder = setup(__doc__, rounds=3)
    servers = {flag: llmcloud_server(flag, folder, work, flag)
               for flag in ("--prefix-caching", "--no-prefix-caching")}
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for server in servers.values():  # warm-up: shapes built, the system prompt seen once
            burst(server, loads(4, -1)["shared system prompt"], NEW_TOKENS)
        for number in range(args.rounds):
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for name, prompts in loads(args.requests, number).items():
                for flag in order:
                    results.setdefault((name, flag), []).append(
                        burst(servers[flag], prompts, NEW_TOKENS))
    finally:
        for server in servers.values():
            server.stop()
    report(results, args)


def report(results, args) -> None:
    print(f"\n{args.requests} concurrent streams, {NEW_TOKENS} new tokens; {args.rounds} "
          "rounds (median of rounds)\n")
    print("| load                 | server               | tok/s | TTFT p50 |")
    print("|----------------------|----------------------|------:|---------:|")
    names = list(dict.fromkeys(name for name, _ in results))
    for name in names:
        for flag in ("--prefix-caching", "--no-prefix-caching"):
            runs = results[(name, flag)]
            print(f"| {name:<20} | {flag:<20} "
                  f"| {statistics.median(r['tok_s'] for r in runs):5.0f} "
                  f"| {statistics.median(r['ttft_p50'] for r in runs) * 1000:5.0f} ms |")
    for name in names:
        on, off = results[(name, "--prefix-caching")], results[(name, "--no-prefix-caching")]
        print(f"{name}: caching / not, per round: {ratios(on, off)}")


if __name__ == "__main__":
    main()
