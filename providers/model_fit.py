"""Whether a model fits the GPUs of the instance type a spec names, before anything runs.

A model too large for its servers' GPUs was created, booted, failed to load on every
server and failed the rollout after the cloud's boot allowance: an hour of GPU cost to
learn what the numbers said. The rule here says it first, from the sizes alone: a local
folder's files, or the version's `manifest.json` in the model store.

What a server needs on each GPU (the server never shards a model: with several GPUs it
loads a whole copy on each, `inference_image/data_parallel.py`, so one GPU's memory is what
counts, whatever the instance's count):

- the weights at `server.dtype`: the files the loader reads, scaled from the checkpoint's
  precision (`config.json`'s `torch_dtype`/`dtype`, else a safetensors header) to the
  served one (auto, bfloat16, float16: 2 bytes a weight; float32: 4). A quantized
  checkpoint is counted as stored. An unknown precision gives a range: the lower end (a
  float32 checkpoint served at 16 bits is half its size) decides a refusal, the upper end
  a warning;
- the CUDA context and allocator (`RUNTIME_GB`, at least);
- the KV cache: the server gives it 80 % of what is left (`kv_budget.CUDA_FRACTION`) and
  refuses to start below room for one request of 256 tokens (`kv_budget.MIN_CONTEXT`);
  below one request of the whole context it serves a shorter one. The bytes per token come
  from `config.json` (layers, key-value heads, head size; an encoder-decoder's decoder
  layers, cross-attention and encoder states), and a request's positions are counted as
  the engine's batches count them (`kv_budget.row_positions`).

GPU memory is the price tables' figure per GPU, in GB (10^9 bytes: a "16 GB" T4 reports
15 GiB, about 16.1 * 10^9 bytes). Imports nothing heavy: the CLI uses it.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmcloud.inference_image import kv_budget
from llmcloud.inference_image.kv_budget import CUDA_FRACTION as CACHE_FRACTION
from llmcloud.inference_image.kv_budget import MIN_CONTEXT
from llmcloud.inference_image.loader import position_limit
from llmcloud.stacks.errors import ConfigError

GB = 10**9
#: the CUDA context, cuBLAS workspace and allocator slack a server holds on each GPU
RUNTIME_GB = 0.5
#: without the model's shape (no config.json), weights over this share of a GPU are close
CLOSE_SHARE = 0.8
#: bytes a weight takes at each `server.dtype` on a GPU (auto: bf16, or fp16 without it)
SERVED_WIDTH = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
#: checkpoint precisions, as config.json and safetensors headers name them
_WIDTHS = {"float32": 4, "float": 4, "f32": 4, "float16": 2, "half": 2, "f16": 2,
           "bfloat16": 2, "bf16": 2, "float64": 8, "f64": 8}
_CONFIG = "config.json"
_SAFETENSORS_INDEX = "model.safetensors.index.json"
_PYTORCH_INDEX = "pytorch_model.bin.index.json"
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")

Verdict = Literal["fits", "close", "too_big"]


@dataclass(frozen=True)
class ModelSize:
    """What the rule needs of a model: its weight files' bytes and its config."""

    weights_bytes: int
    #: bytes a weight takes in the checkpoint (None: unknown)
    stored_width: int | None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        return bool(_text_config(self.config).get("quantization_config")
                    or self.config.get("quantization_config"))


@dataclass(frozen=True)
class Fit:
    """The verdict for one instance type: what a GPU needs, what it has, what would fit."""

    verdict: Verdict
    instance_type: str
    gpu_gb: int
    #: the weights at the served precision, in GB: (lowest, highest) of the estimate
    weights_gb: tuple[float, float]
    #: the least a GPU needs to start a server (weights, runtime, 256 tokens of cache)
    needed_gb: float
    reason: str
    #: cheapest first: instance types of the same table whose GPUs hold it
    fitting: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """As in `plan --json`'s `model_fit`."""
        return {"verdict": self.verdict, "instance_type": self.instance_type,
                "gpu_memory_gb": self.gpu_gb, "needed_gb": round(self.needed_gb, 1),
                "weights_gb": [round(w, 1) for w in self.weights_gb],
                "message": self.reason, "fitting": list(self.fitting)}


# -- what the model weighs --------------------------------------------------------------


def loaded_weight_files(files: Mapping[str, int],
                        lora_modules: Mapping[str, str] = {}) -> int:  # noqa: B006 - read only
    """Bytes of the files the loader reads, of a version's ``files`` (relative path to
    size): the top-level safetensors (preferred), else the pytorch checkpoint, as
    transformers picks them (`model_files.WEIGHT_NAMES`), plus the spec's adapters."""
    top = {path: size for path, size in files.items() if "/" not in path}
    if "model.safetensors" in top or _SAFETENSORS_INDEX in top:
        total = sum(size for path, size in top.items() if path.endswith(".safetensors"))
    else:
        total = sum(size for path, size in top.items()
                    if path.startswith("pytorch_model") and path.endswith(".bin"))
    for folder in lora_modules.values():
        base = folder.strip("/")
        total += sum(files.get(f"{base}/{name}", 0) for name in _ADAPTER_WEIGHTS)
    return total


def stored_width(config: Mapping[str, Any]) -> int | None:
    """Bytes a weight takes in the checkpoint, from config.json (None: it does not say)."""
    for source in (config, _text_config(config)):
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if isinstance(value, str) and value.lower().removeprefix("torch.") in _WIDTHS:
                return _WIDTHS[value.lower().removeprefix("torch.")]
    return None


def safetensors_width(path: Path) -> int | None:
    """Bytes a weight takes in a safetensors file, from its header's first float tensor
    (the header is a JSON object after its 8-byte little-endian length)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 2**20:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    for name, tensor in header.items() if isinstance(header, dict) else ():
        if name != "__metadata__" and isinstance(tensor, dict):
            width = _WIDTHS.get(str(tensor.get("dtype", "")).lower())
            if width is not None:
                return width
    return None


def measure_folder(folder: Path, lora_modules: Mapping[str, str] = {}) -> ModelSize | None:  # noqa: B006
    """The size of a local model folder (None: it holds no weights the loader reads)."""
    from llmcloud.inference_image.manifest import model_files

    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in model_files(folder)}
    weights = loaded_weight_files(files, lora_modules)
    if weights == 0:
        return None
    config = _read_json(folder / _CONFIG)
    width = stored_width(config)
    if width is None:
        first = sorted(p for p in files if "/" not in p and p.endswith(".safetensors"))
        width = safetensors_width(folder / first[0]) if first else None
    return ModelSize(weights, width, config)


def measure_manifest(manifest: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                     lora_modules: Mapping[str, str] = {}) -> ModelSize | None:  # noqa: B006
    """The size of a stored version, from its manifest's file sizes and (when read) its
    config.json (None: the manifest lists no weights the loader reads)."""
    files = {str(e.get("path")): int(e.get("size") or 0) for e in manifest.get("files", [])
             if isinstance(e, dict) and isinstance(e.get("size"), int)}
    weights = loaded_weight_files(files, lora_modules)
    if weights == 0:
        return None
    config = dict(config or {})
    return ModelSize(weights, stored_width(config), config)


# -- the rule ---------------------------------------------------------------------------


def kv_bytes_per_token(config: Mapping[str, Any], width: int) -> int | None:
    """The KV cache's bytes per token position at ``width`` bytes a value, as the engine
    measures a row's (None: config.json does not say): keys and values of every layer's
    key-value heads. An encoder-decoder (T5, BART) holds them for its decoder's layers:
    per position of the output its self-attention's, per position of the prompt its
    cross-attention's and the encoder's state; the engine counts the larger of the two
    for every position (`Seq2SeqBatch.slot_bytes`)."""
    text = _text_config(config)
    seq2seq = bool(text.get("is_encoder_decoder"))
    layers = _first_int(text, *(("num_decoder_layers", "decoder_layers") if seq2seq else ()),
                        "num_hidden_layers", "n_layer", "num_layers")
    heads = _first_int(text, *(("decoder_attention_heads",) if seq2seq else ()),
                       "num_attention_heads", "n_head", "num_heads")
    hidden = _first_int(text, "hidden_size", "n_embd", "d_model")
    if not layers or not heads or (seq2seq and not hidden):
        return None
    kv_heads = _first_int(text, "num_key_value_heads") or heads
    # (T5 names its head size d_kv, which need not be d_model / num_heads: t5-3b's is not)
    head_dim = _first_int(text, "head_dim", "d_kv") or (hidden // heads if hidden else None)
    if not head_dim:
        return None
    per_token = 2 * layers * kv_heads * head_dim * width
    return per_token + hidden * width if seq2seq else per_token


def context_wanted(config: Mapping[str, Any], max_model_len: int | None) -> int | None:
    """The context one request may fill: `server.max_model_len`, else the model's
    position limit, as the server reads it (`loader.position_limit`)."""
    if max_model_len:
        return max_model_len
    return position_limit(_text_config(config))


def row_positions(config: Mapping[str, Any], context: int) -> int:
    """The cache positions one request of ``context`` tokens takes in the engine."""
    return kv_budget.row_positions(context, bool(_text_config(config).get("is_encoder_decoder")))


def judge(size: ModelSize, spec: Any, instance_type: str,
          table: Mapping[str, tuple[int, int, float]]) -> Fit | None:
    """The verdict for ``spec``'s servers on ``instance_type``; ``table`` maps instance
    types to (GPUs, GB per GPU, USD per hour). None: a type the table does not know."""
    if instance_type not in table:
        return None
    gpu_gb = table[instance_type][1]
    verdict, low, high, needed, reason = _verdict(size, spec, gpu_gb)
    fitting: tuple[str, ...] = ()
    if verdict != "fits":
        wanted = "fits" if verdict == "close" else ("fits", "close")
        fitting = tuple(sorted(
            (t for t, row in table.items() if _verdict(size, spec, row[1])[0] in wanted),
            key=lambda t: (table[t][2], t)))
    return Fit(verdict, instance_type, gpu_gb, (low, high), needed, reason, fitting)


def _verdict(size: ModelSize, spec: Any,
             gpu_gb: int) -> tuple[Verdict, float, float, float, str]:
    served = SERVED_WIDTH.get(spec.server.dtype, 2)
    if size.quantized:
        low = high = size.weights_bytes / GB
    elif size.stored_width is None:  # float32 at most: a 16-bit serve halves it at best
        low = size.weights_bytes * served / max(4, served) / GB
        high = size.weights_bytes * served / min(2, served) / GB
    else:
        low = high = size.weights_bytes * served / size.stored_width / GB
    per_token = kv_bytes_per_token(size.config, served)
    context = context_wanted(size.config, spec.server.max_model_len)
    shortest = min(MIN_CONTEXT, context or MIN_CONTEXT)
    # the least that starts: the cache's share of what is left must hold one short request
    needed = low + RUNTIME_GB + (row_positions(size.config, shortest) * per_token / GB
                                 / CACHE_FRACTION if per_token else 0.0)
    at = f"{spec.server.dtype} weights" if spec.server.dtype != "auto" else "16-bit weights"
    weights = f"{low:.1f} GB" if low == high else f"{low:.1f}-{high:.1f} GB"
    if needed > gpu_gb:
        return ("too_big", low, high, needed,
                f"the model needs at least {needed:.1f} GB on each GPU ({weights} of {at}, "
                f"the CUDA runtime and the smallest KV cache); a GPU has {gpu_gb} GB")
    cache_gb = (gpu_gb - high - RUNTIME_GB) * CACHE_FRACTION
    if cache_gb <= 0:
        return ("close", low, high, needed,
                f"the weights may take {weights} ({at}{_unknown(low, high)}) of a GPU's "
                f"{gpu_gb} GB, leaving no room for the KV cache")
    if per_token is None:
        if high > CLOSE_SHARE * gpu_gb:
            return ("close", low, high, needed,
                    f"the weights take {weights} ({at}) of a GPU's {gpu_gb} GB, leaving "
                    f"{cache_gb:.1f} GB for the KV cache")
        return "fits", low, high, needed, f"{weights} of weights on a {gpu_gb} GB GPU"
    positions = int(cache_gb * GB // per_token)
    batch_tokens = spec.server.max_batch_tokens
    if batch_tokens and batch_tokens > positions:
        return ("close", low, high, needed,
                f"server.max_batch_tokens {batch_tokens} needs "
                f"{batch_tokens * per_token / GB:.1f} GB of KV cache; about {cache_gb:.1f} GB "
                f"({positions} tokens) is left beside {weights} of weights on a GPU of "
                f"{gpu_gb} GB: the servers may run out of memory under load")
    if context and positions < row_positions(size.config, context) and not batch_tokens:
        return ("close", low, high, needed,
                f"after {weights} of weights a GPU of {gpu_gb} GB leaves room for about "
                f"{positions} tokens of KV cache, less than one request of the model's "
                f"{context}: the servers would serve a shorter context")
    return ("fits", low, high, needed,
            f"{weights} of weights and room for about {positions} tokens of KV cache on a "
            f"{gpu_gb} GB GPU")


# -- the instance types a spec may run on ----------------------------------------------


def gpu_table(spec: Any) -> tuple[str, dict[str, tuple[int, int, float]]] | None:
    """The instance type `spec`'s servers run on and its provider's priced types, as
    (GPUs, GB per GPU, USD per hour); None off the clouds (local replicas are CPU ones)."""
    from llmcloud.providers.registry import provider_defaults

    if spec.provider not in ("aws", "gcp", "azure"):
        return None
    chosen = spec.compute.instance_type or provider_defaults(spec.provider)["compute"][
        "instance_type"]
    if spec.provider == "aws":
        from llmcloud.providers.aws import prices

        if spec.compute.kind == "sagemaker":
            from llmcloud.providers.aws.endpoint_config import DEFAULT_ML_INSTANCE_TYPE

            if not chosen.startswith("ml."):  # the group's default maps to SageMaker's
                chosen = DEFAULT_ML_INSTANCE_TYPE
            return chosen, dict(prices.ML_INSTANCES)
        return chosen, dict(prices.GPU_INSTANCES)
    if spec.provider == "azure":
        from llmcloud.providers.azure.prices import GPU_SIZES

        return chosen, dict(GPU_SIZES)
    from llmcloud.providers.gcp.prices import GPU_MACHINES

    return chosen, {name: (m.gpus_per_instance(spec.compute.gpus), m.gpu_memory_gb,
                           m.instance_hourly(spec.compute.gpus))
                    for name, m in GPU_MACHINES.items()}


def fit_for(spec: Any, size: ModelSize | None) -> Fit | None:
    """The verdict for `spec`'s instance type (None: no size, or a type not priced)."""
    table = gpu_table(spec) if size is not None else None
    if table is None or size is None:
        return None
    return judge(size, spec, *table)


def enforce(fit: Fit | None, what: str, *, warn: bool = True) -> None:
    """Refuse a model that cannot fit (`ConfigError`, exit 2, both numbers, the types that
    would fit); print a warning on stderr for one that is close."""
    if fit is None or fit.verdict == "fits":
        return
    if fit.verdict == "too_big":
        raise ConfigError(
            f"{what} does not fit the GPUs of {fit.instance_type}: it needs at least "
            f"{fit.needed_gb:.1f} GB on a GPU, which has {fit.gpu_gb} GB",
            context=f"{fit.reason}; each GPU holds a whole copy of the model (the server "
                    "does not shard a model over GPUs), and every server would fail to "
                    "load it after the cloud's boot allowance",
            hint=_hint(fit))
    if warn:
        print(f"warning: {what} is close to the GPU memory of {fit.instance_type}: "
              f"{fit.reason}. {_hint(fit)}", file=sys.stderr, flush=True)


def _hint(fit: Fit) -> str:
    if not fit.fitting:
        return ("no priced instance type holds it: pick a smaller model, or a quantized "
                "checkpoint")
    return (f"set compute.instance_type to one whose GPUs hold it (cheapest first): "
            f"{', '.join(fit.fitting[:5])}; or a smaller server.dtype, model or "
            "server.max_model_len")


# -- where the numbers are known --------------------------------------------------------


def local_folder(source: str) -> Path | None:
    """`model.source` as a local folder (None: a hub id or a store URI)."""
    if "://" in source:
        return None
    path = Path(os.path.expanduser(source))
    return path if path.is_dir() else None


def read_store_config(version_uri: str) -> dict[str, Any]:
    """A stored version's config.json ({} when it cannot be read: the estimate then
    gives a range)."""
    from llmcloud.providers.model_stores import open_writable_store

    try:
        store, prefix = open_writable_store(version_uri)
        config = json.loads(store.read_bytes(prefix + _CONFIG))
    except Exception:  # the SDKs' own errors too, at their boundary: estimate without it
        return {}
    return config if isinstance(config, dict) else {}


def config_reader(store_uri: str, name: str, version: str) -> Callable[[], dict[str, Any]]:
    """The stored version's config.json (`read_store_config`), read from the store at the
    first call only: the checks before an update (the task, the fit) share one read."""
    read: list[dict[str, Any]] = []

    def config() -> dict[str, Any]:
        if not read:
            from llmcloud.providers.model_upload import version_uri

            read.append(read_store_config(version_uri(store_uri, name, version)))
        return read[0]

    return config


def check_stored_version(spec: Any, store_uri: str, name: str, version: str,
                         manifest: Mapping[str, Any],
                         config: Callable[[], dict[str, Any]] | None = None) -> None:
    """Refuse (or warn of) a stored version that cannot fit `spec`'s GPUs. `config`: its
    config.json as a `config_reader` gives it, when another check reads it too."""
    table = gpu_table(spec)
    size = measure_manifest(manifest, None, spec.server.lora_modules)
    if table is None or size is None or table[0] not in table[1]:
        return
    # The config (precision, KV cache per token) is one more read of the store: worth it
    # only where the weights, at their largest, take a good part of a GPU.
    if _verdict(size, spec, table[1][table[0]][1])[2] > 0.4 * table[1][table[0]][1]:
        read = config or config_reader(store_uri, name, version)
        size = measure_manifest(manifest, read(), spec.server.lora_modules)
    enforce(fit_for(spec, size), f"version {version} of {name}")


def check_before_up(ctx: Any, outputs: Mapping[str, Any]) -> None:
    """Before `up` on a deployed cloud stack (its `outputs`): the version the spec names,
    in the stack's store, against the instance type's GPUs and the spec's `model.task`. A
    stack without a store yet, or a version not uploaded yet, has nothing to check."""
    from llmcloud.providers.rollout import check_task, check_version_in_store

    spec, store_uri = ctx.spec, outputs.get("model_store_uri")
    if not store_uri or gpu_table(spec) is None:
        return
    try:
        manifest = check_version_in_store(str(store_uri), spec.model.name, spec.model.version)
    except Exception:  # the SDKs' own errors too, at their boundary: a check that cannot
        # read the store (not there yet, not uploaded, unreachable) leaves `up` to the update
        return
    if isinstance(manifest, dict):
        config = config_reader(str(store_uri), spec.model.name, spec.model.version)
        check_task(spec, str(store_uri), spec.model.version, config)
        check_stored_version(spec, str(store_uri), spec.model.name, spec.model.version,
                             manifest, config)


def warn_for_upload(spec: Any, folder: Path) -> None:
    """`model upload --stack`: a warning (never a refusal: the version may be meant for
    another instance type) when the folder cannot fit, or barely fits, the stack's GPUs."""
    fit = fit_for(spec, measure_folder(folder, spec.server.lora_modules))
    if fit is None or fit.verdict == "fits":
        return
    try:
        enforce(fit, f"the model in {folder}")
    except ConfigError as refused:
        print(f"warning: {refused.message}. {refused.hint}", file=sys.stderr, flush=True)


# -- helpers ----------------------------------------------------------------------------


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's part of a config (multimodal ones nest it as text_config)."""
    nested = config.get("text_config")
    return nested if isinstance(nested, dict) else config


def _first_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _unknown(low: float, high: float) -> str:
    return "; the checkpoint's precision is unknown" if low != high else ""
