"""What structured outputs cost: the same 16 requests with and without a JSON schema, on
one server.

    python bench/structured_bench.py [--rounds 4] [--requests 16]

The runtime benchmark's ~30M Llama (random weights), but with a byte-level BPE tokenizer of
12 000 tokens trained here on JSON-like text, since JSON needs punctuation that the runtime
benchmark's word vocabulary lacks. One llmcloud-server (prefix caching off), 2 threads.
Each round sends 16 concurrent completions (40-word prompts, sampled, 64 new tokens, past
end-of-sequence), in rotated order: plain, and held to a schema (an array of 100 integers,
so no answer closes before its 64 tokens). Prints tokens/s per way (median of rounds) and
the schema's tok/s against the plain run of the same round.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time

from burst import llmcloud_server, setup
from runtime_bench import VOCAB

NEW_TOKENS = 64
SCHEMA = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999},
          "minItems": 100, "maxItems": 100}
WAYS = {"plain": {},
        "json_schema": {"response_format": {"type": "json_schema",
                                            "json_schema": {"name": "numbers",
                                                            "schema": SCHEMA}}}}


def byte_level_tokenizer(folder) -> None:
    """Replace the model folder's word-level tokenizer with a byte-level BPE of the same
    size, trained on JSON-like text (nothing downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    corpus = [json.dumps({rng.choice(words): [rng.randrange(1000) for _ in range(8)],
                          "text": " ".join(rng.choices(words, k=12))}) for _ in range(4000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, show_progress=False,
                                  special_tokens=["<pad>", "</s>", "<unk>", "<s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>", bos_token="<s>").save_pretrained(folder)


async def _round(port: int, prompts: list[str], fields: dict) -> float:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/completions"
    bodies = [{"model": "bench", "prompt": p, "max_tokens": NEW_TOKENS, "temperature": 1.0,
               "seed": i, "ignore_eos": True, **fields} for i, p in enumerate(prompts)]
    async with httpx.AsyncClient(timeout=600,
                                 limits=httpx.Limits(max_connections=len(bodies) + 2)) as c:
        started = time.perf_counter()
        answers = await asyncio.gather(*(c.post(url, json=body) for body in bodies))
        wall = time.perf_counter() - started
    tokens = 0
    for answer in answers:
        answer.raise_for_status()
        tokens += answer.json()["usage"]["completion_tokens"]
    return tokens / wall


def main() -> None:
    args, work, folder = setup(__doc__, rounds=4)
    byte_level_tokenizer(folder)
    server = llmcloud_server("llmcloud-server", folder, work, "--no-prefix-caching")
    rng = random.Random(1)
    prompts = [" ".join(f"w{rng.randrange(3000)}" for _ in range(40))
               for _ in range(args.requests)]
    results: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        for fields in WAYS.values():  # warm-up, and the schema's first compile
            asyncio.run(_round(server.port, prompts[:2], fields))
        for number in range(args.rounds):
            ways = list(WAYS) if number % 2 == 0 else list(reversed(WAYS))
            for way in ways:
                results[way].append(asyncio.run(_round(server.port, prompts, WAYS[way])))
    finally:
        server.stop()
    ratios = [s / p for s, p in zip(results["json_schema"], results["plain"], strict=True)]
    print(f"\n{args.requests} concurrent completions, {NEW_TOKENS} new tokens each; "
          f"{args.rounds} rounds (median of rounds)\n")
    for way, runs in results.items():
        print(f"{way:<12} {statistics.median(runs):5.0f} tok/s")
    print(f"json_schema against plain, per round: {' '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
