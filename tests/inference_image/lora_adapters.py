"""LoRA adapters for the tiny Llama, in PEFT's format, and the merged models they equal."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.down_proj")


def build_adapter(folder: Path, base: Path, seed: int, rank: int = 4, alpha: int = 8,
                  targets: tuple[str, ...] = TARGETS, **config) -> Path:
    """A random LoRA adapter of the model in ``base`` (its B matrices nonzero, unlike a
    fresh PEFT adapter's, so that it changes the answers) on ``targets`` of every layer,
    saved as peft saves one."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(base)
    generator = torch.Generator().manual_seed(seed)
    shapes = {"q_proj": (model_config.hidden_size, model_config.hidden_size),
              "o_proj": (model_config.hidden_size, model_config.hidden_size),
              "v_proj": (model_config.num_key_value_heads * model_config.hidden_size
                         // model_config.num_attention_heads, model_config.hidden_size),
              "gate_proj": (model_config.intermediate_size, model_config.hidden_size),
              "down_proj": (model_config.hidden_size, model_config.intermediate_size)}
    tensors = {}
    for layer in range(model_config.num_hidden_layers):
        for target in targets:
            out, inp = shapes[target.rsplit(".", 1)[1]]
            key = f"base_model.model.model.layers.{layer}.{target}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, inp, generator=generator) * 0.3
            tensors[f"{key}.lora_B.weight"] = torch.randn(out, rank, generator=generator) * 0.3
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "bias": "none",
        "target_modules": sorted({t.rsplit(".", 1)[1] for t in targets}),
        "base_model_name_or_path": str(base), "task_type": "CAUSAL_LM", **config}))
    return folder


def merge(base: Path, adapter: Path, folder: Path) -> Path:
    """The base model with the adapter's ``W + alpha / r * B A`` folded into its weights:
    what serving the adapter must answer like."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((adapter / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    model = AutoModelForCausalLM.from_pretrained(base)
    tensors = load_file(adapter / "adapter_model.safetensors")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, a in tensors.items():
            if ".lora_A." not in key:
                continue
            name = key.removeprefix("base_model.model.").split(".lora_A.")[0]
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            modules[name].weight += scale * b @ a
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder
