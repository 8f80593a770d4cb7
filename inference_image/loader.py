"""Loading a model folder onto a device: task, dtype and context length decided here."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .model_files import has_safetensors, unloadable_reason
from .vocabulary_fit import vocabulary_misfit

log = logging.getLogger("llmcloud.loader")

TASKS = ("text-generation", "text2text-generation")
_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}
_UNBOUNDED = 1_000_000  # tokenizers report "no limit" as a huge model_max_length


class ModelLoadError(RuntimeError):
    """The model folder cannot be served as asked (bad task, device, or files)."""


@dataclass
class LoadedModel:
    """A model ready for an engine."""

    model: object
    tokenizer: object
    task: str
    device: object
    max_context: int


def task_conflict(config: dict, task: str) -> str | None:
    """Why a model whose config.json holds ``config`` cannot be served as ``task``, or
    None where it may be: an encoder-decoder config (T5's ``is_encoder_decoder``) cannot
    load as a causal model, nor a config whose every architecture is a causal one (Llama's
    ``LlamaForCausalLM``) as a sequence-to-sequence model. A config that says neither may
    be served as either: the task is what tells them apart. Imports nothing heavy: promote
    checks a stored version with it."""
    kind = "an encoder-decoder" if config.get("is_encoder_decoder") else None
    architectures = config.get("architectures")
    if (kind is None and isinstance(architectures, list) and architectures
            and all(str(a).endswith("ForCausalLM") for a in architectures)):
        kind = f"a causal ({', '.join(map(str, architectures))})"
    wanted = "text2text-generation" if kind == "an encoder-decoder" else "text-generation"
    if kind is None or task == wanted:
        return None
    return (f"its config.json says it is {kind} model, which loads as {wanted}, "
            f"not {task}")


def detect_task(folder: Path, task: str | None) -> str:
    """``task`` if given (and the model's config.json does not say it is the other kind),
    else ``text2text-generation`` for encoder-decoder configs."""
    if task:
        if task not in TASKS:
            raise ModelLoadError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        conflict = task_conflict(_config(folder), task)
        if conflict is not None:
            raise ModelLoadError(f"{folder} cannot be served as --task {task}: {conflict}; "
                                 "leave --task out to take the task from config.json")
        return task
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a transformers model folder")
    config = json.loads(config_path.read_text())
    return "text2text-generation" if config.get("is_encoder_decoder") else "text-generation"


def pick_device(device: str):
    """Resolve ``auto|cpu|cuda[:N]`` to a torch device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(device)


def gpu_count() -> int:
    """The CUDA devices torch sees (0 where it sees none)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def idle_gpus(device, copies: int = 1) -> int:
    """The GPUs torch sees besides the ``copies`` the model runs on (0 off CUDA), which do
    nothing for this server."""
    return max(0, gpu_count() - copies) if device.type == "cuda" else 0


def pick_dtype(dtype: str, device):
    """``auto`` is bf16 on GPUs that support it (fp16 otherwise) and fp32 on CPU."""
    import torch

    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose auto, float32, float16, bfloat16")
    return getattr(torch, _DTYPES[dtype])


def _config(folder: Path) -> dict:
    """config.json's settings, or none when it is missing or unreadable (loading then
    fails with transformers' own reason)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def needs_remote_code(folder: Path) -> bool:
    """Whether config.json maps the model to code in its own folder (``auto_map``)."""
    return bool(_config(folder).get("auto_map"))


def load_model(folder: Path, *, task: str | None, device: str, dtype: str,
               pack_for_batch: int | None = None,
               trust_remote_code: bool = False) -> LoadedModel:
    """Load tokenizer and model from a local folder, preferring safetensors weights.

    With ``pack_for_batch`` (the engine's batch size), a model on CPU gets its float32
    linear weights packed for oneDNN (`packed_linear`): decode steps run about a third
    faster. A model whose architecture is code in its folder (one transformers does not
    have built in) loads only with ``trust_remote_code``: that code runs in the server."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    task = detect_task(folder, task)
    reason = unloadable_reason(folder)
    if reason is not None:  # transformers' own words name only the first file it missed
        raise ModelLoadError(reason)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    auto = AutoModelForSeq2SeqLM if task == "text2text-generation" else AutoModelForCausalLM
    # (any other *.safetensors beside a pytorch_model.bin, an adapter's say, made it refuse
    # the .bin: only the file transformers would read decides)
    use_safetensors = has_safetensors(folder) or None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **remote)
        model, loading = auto.from_pretrained(folder, dtype=torch_dtype,
                                              use_safetensors=use_safetensors,
                                              output_loading_info=True, **remote)
    except (ValueError, OSError, ImportError) as exc:
        if not trust_remote_code and needs_remote_code(folder):
            raise ModelLoadError(
                f"cannot load {folder}: its architecture is Python code in its own folder "
                "(config.json's auto_map), which transformers does not have built in; that "
                "code would run in this server, so it loads only with --trust-remote-code "
                f"(server.trust_remote_code in the spec). transformers said: {exc}") from exc
        raise ModelLoadError(f"cannot load {folder} as {task}: {exc}") from exc
    missing = missing_weights(loading, model)
    if missing:
        raise ModelLoadError(missing_weights_reason(folder, type(model).__name__, missing))
    misfit = vocabulary_misfit(folder, model, tokenizer)
    if misfit is not None:
        raise ModelLoadError(misfit)
    model.to(torch_device).eval()
    if pack_for_batch and torch_device.type == "cpu":
        from .packed_linear import pack_linear_layers

        pack_linear_layers(model, pack_for_batch)
    return LoadedModel(model, tokenizer, task, torch_device, context_length(model, tokenizer))


def missing_weights(loading: dict, model) -> list[str]:
    """The model's weights that its checkpoint lacks, from ``from_pretrained``'s loading
    info: transformers leaves out those it ties to others (an lm_head tied to the input
    embeddings) or knows to be built at load, so each one left is a random initialisation
    that would generate garbage. Only parameters count: a persistent buffer the checkpoint
    lacks (rotary ``inv_freq`` in remote code, say) is computed by the model's code."""
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return sorted(key for key in loading.get("missing_keys") or () if key in parameters)


def missing_weights_reason(folder: Path, architecture: str, missing: list[str]) -> str:
    """Why a model whose checkpoint lacks the ``missing`` weights is refused."""
    named = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return (f"cannot serve {folder}: its checkpoint has no weights for {len(missing)} of "
            f"{architecture}'s parameters ({named}), which would be random: the weights "
            "files are incomplete, or config.json describes another model than the one "
            "they hold")


#: the settings a config names its position limit by (GPT-2's n_positions, MPT's
#: max_seq_len, ...); `providers/model_fit.py` reads the same ones
POSITION_LIMITS = ("max_position_embeddings", "n_positions", "max_sequence_length",
                   "max_seq_len", "seq_length")


def _position_limit(setting) -> int | None:
    """The first position limit ``setting(name)`` gives, if any."""
    for name in POSITION_LIMITS:
        value = setting(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def position_limit(config: dict) -> int | None:
    """The position limit a config.json's settings declare (None: none; T5's relative
    positions have no limit, and the tokenizer's then applies)."""
    return _position_limit(config.get)


def declared_context(folder: Path) -> int | None:
    """The position limit config.json declares, read without loading anything (None when
    it declares none: the tokenizer's limit then applies, known once it loads)."""
    return position_limit(_config(folder))


def context_length(model, tokenizer) -> int:
    """The longest sequence the model takes: its position limit, else the tokenizer's."""
    limit = _position_limit(lambda name: getattr(model.config, name, None))
    if limit is not None:
        return limit
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _UNBOUNDED:
        return limit
    return 2048
