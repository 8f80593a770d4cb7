"""LoRA benchmark: what serving adapters costs against the same model without them.

    python bench/lora_bench.py [--rounds 3] [--requests 16]

Two servers serve the runtime benchmark's ~30M Llama on 2 threads: one plain, one with
four rank-16 adapters on every projection of every layer (`--lora-modules`, PEFT folders
with random weights, as a fine-tune on all linear layers leaves them). Each round sends 16
concurrent streaming completions (64 prompt tokens, 64 new, greedy), in rotated order:

- plain server;
- adapters server, every request naming the model itself (adapters loaded, none used);
- adapters server, every request naming one adapter;
- adapters server, the requests spread over the four adapters (4 each, in one batch).

A warm-up burst per server and load comes first. Prints tokens/s and TTFT p50 per run
(median of rounds) and each round's ratios against the plain server.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from burst import burst, llmcloud_server, ratios, setup
from runtime_bench import prompts

NEW_TOKENS, PROMPT_TOKENS, RANK = 64, 64, 16
ADAPTERS = ("a1", "a2", "a3", "a4")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_adapter(folder: Path, model: Path, seed: int) -> Path:
    """A rank-16 PEFT adapter on every projection of ``model``, random weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in base.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS:
            out, inp = module.weight.shape
            key = f"base_model.model.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(RANK, inp, generator=generator) * 0.02
            tensors[f"{key}.lora_B.weight"] = torch.randn(out, RANK, generator=generator) * 0.02
    folder.mkdir(parents=True)
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK, "bias": "none",
        "target_modules": list(TARGETS), "task_type": "CAUSAL_LM"}))
    return folder


def main() -> None:
    args, work, folder = setup(__doc__, rounds=3)
    modules = [f"{name}={build_adapter(work / name, folder, seed)}"
               for seed, name in enumerate(ADAPTERS)]
    servers = {"plain": llmcloud_server("plain", folder, work),
               "adapters": llmcloud_server("adapters", folder, work, "--lora-modules",
                                           *modules)}
    n = args.requests
    loads = {  # name: (server, the model each request names)
        "plain server": ("plain", ["bench"] * n),
        "adapters loaded, unused": ("adapters", ["bench"] * n),
        "one adapter": ("adapters", [ADAPTERS[0]] * n),
        "four adapters mixed": ("adapters", [ADAPTERS[i % 4] for i in range(n)]),
    }
    results: dict[str, list[dict]] = {name: [] for name in loads}
    try:
        for server, models in loads.values():  # warm-up
            burst(servers[server], prompts(4, PROMPT_TOKENS, batch=-1), NEW_TOKENS, models[:4])
        for number in range(args.rounds):
            names = list(loads)
            turn = number % len(names)
            texts = prompts(n, PROMPT_TOKENS, batch=number)
            for name in names[turn:] + names[:turn]:
                server, models = loads[name]
                results[name].append(burst(servers[server], texts, NEW_TOKENS, models))
    finally:
        for server in servers.values():
            server.stop()
    report(results, args)


def report(results: dict[str, list[dict]], args) -> None:
    print(f"\n{args.requests} concurrent streams, {PROMPT_TOKENS} prompt tokens, {NEW_TOKENS} "
          f"new tokens, rank-{RANK} adapters on all {len(TARGETS)} projections; "
          f"{args.rounds} rounds (median of rounds)\n")
    print("| load                        | tok/s | TTFT p50 |")
    print("|-----------------------------|------:|---------:|")
    for name, runs in results.items():
        print(f"| {name:<27} | {statistics.median(r['tok_s'] for r in runs):5.0f} "
              f"| {statistics.median(r['ttft_p50'] for r in runs) * 1000:5.0f} ms |")
    plain = results["plain server"]
    for name, runs in list(results.items())[1:]:
        print(f"{name} / plain, per round: {ratios(runs, plain)}")


if __name__ == "__main__":
    main()
