"""LoRA adapters served beside their base model (vLLM's ``--lora-modules``).

A LoRA adapter is a fine-tune stored as two small matrices per adapted layer: the layer
computes ``W x + s B (A x)``, ``A`` [r, in] and ``B`` [out, r] of a low rank ``r``. One
server holds the base weights once and any number of adapters beside them; a request
picks one by naming it as its ``model``. Rows of different adapters (and of the base
model) share every batch: each adapted layer runs the base product for all rows, then the
low-rank products of the adapters in the batch stacked side by side (``[A1, A2, ..]``,
``[B1; B2; ..]``) for all rows at once, each row's columns of other adapters zeroed before
the up projection: three ops whatever the number of adapters in the batch. Each row runs
every present adapter's small products, k times the FLOPs of its own (about 5 % of the
model's per adapter at rank 16 on every projection of the benchmark model); a gather and a
scatter of each adapter's rows instead ran the same prefills no faster on CPU (products
only 16 columns wide run far below the cores' peak) and decode steps slower (four ops per
adapter and layer).

Adapters are read in PEFT's format (``adapter_config.json`` and
``adapter_model.safetensors``, what ``peft``'s ``save_pretrained`` writes). What this
server cannot apply exactly (DoRA, trained biases, whole modules saved beside the adapter,
adapted embeddings) is refused at start with a message, never served approximately.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .model_files import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHT_NAMES
from .packed_linear import is_conv1d

log = logging.getLogger("llmcloud.engine")

CONFIG_NAME = ADAPTER_CONFIG_NAME
# PEFT's key of a layer's matrices: base_model.model.<module>.lora_A.weight (older saves
# put the adapter's own name before .weight)
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])"
                  r"(?:\.[^.]+)?\.weight$")


class AdapterError(RuntimeError):
    """An adapter that cannot be served on this model; the message says why."""


@dataclass(frozen=True)
class AdapterInfo:
    """What ``GET /v1/models`` reports of an adapter."""

    name: str
    slot: int  # 1, 2, ...: its index in every adapted layer (0 is the base model)
    source: str
    rank: int
    layers: int  # how many of the model's layers it adapts


class LoraLinear(torch.nn.Module):
    """A linear layer (any module mapping [..., in] to [..., out]) with adapters' low-rank
    updates added to the rows that use them (``Adapters.use`` says which)."""

    def __init__(self, base: torch.nn.Module, adapters: Adapters):
        super().__init__()
        self.base = base
        self._adapters = [adapters]  # in a list: not a child module of this one
        # slot -> (A transposed [in, r], B transposed and scaled [r, out])
        self.updates: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # The updates of the adapters in the batch stacked: (slots, A's [in, R], B's
        # [R, out], the slot each of the R columns belongs to [R], and that as (slot, rank)
        # pairs); rebuilt when the batch's adapters change.
        self._stacked: tuple | None = None

    @property
    def weight(self) -> torch.Tensor:  # model code that reads a layer's weight still works
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        batch = self._adapters[0]
        if not batch.present:
            return y
        if batch.row_slots is None:  # every row runs one adapter
            update = self.updates.get(batch.present[0])
            if update is None:  # which leaves this layer as it is
                return y
            down, up = update
            return _add_product(y, x @ down, up)
        down, up, owner, layout = self._stack(batch.present)
        if owner is None:  # none of them adapts this layer
            return y
        if x.dim() < 2 or x.shape[0] != batch.row_slots.shape[0]:
            # e.g. an expert's layer fed a flat list of tokens: whose rows they are is lost
            raise RuntimeError(f"LoRA: a layer's input [{', '.join(map(str, x.shape))}] does "
                               "not keep the batch's rows apart; this model's requests of "
                               "different adapters cannot share a batch")
        # each row keeps its own adapter's columns only
        return _add_product(y, (x @ down).mul_(batch.columns_of_rows(layout, owner)), up)

    def _stack(self, present: tuple[int, ...]):
        if self._stacked is None or self._stacked[0] != present:
            slots = [slot for slot in present if slot in self.updates]
            if not slots:
                self._stacked = (present, None, None, None, None)
            else:
                downs, ups = zip(*(self.updates[slot] for slot in slots), strict=True)
                owner = torch.cat([torch.full((d.shape[1],), slot, device=d.device)
                                   for slot, d in zip(slots, downs, strict=True)])
                layout = tuple((slot, d.shape[1]) for slot, d in zip(slots, downs,
                                                                      strict=True))
                self._stacked = (present, torch.cat(downs, 1), torch.cat(ups, 0), owner,
                                 layout)
        return self._stacked[1:]


def _add_product(y: torch.Tensor, t: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``y + t @ up``, into ``y`` (a fresh output of the base layer) when it allows: one op
    instead of two and no new tensor, which a decode step's small products feel."""
    try:
        flat = y.view(-1, y.shape[-1])
    except RuntimeError:  # not viewable flat
        return y + t @ up
    flat.addmm_(t.reshape(-1, t.shape[-1]), up)
    return y


class Adapters:
    """The adapters loaded into one model, by name, and which rows of the batch about to
    run use which (set by the batch before each forward pass)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.infos: dict[str, AdapterInfo] = {}
        # For the next forward: the adapters its rows use (empty: the model alone), and
        # each row's [B, 1, 1] (None when every row uses the one adapter in ``present``).
        self.present: tuple[int, ...] = ()
        self.row_slots: torch.Tensor | None = None
        self._columns: dict[tuple, torch.Tensor] = {}  # this forward's masks, by layout
        self._device = next(model.parameters()).device
        self._dtype = _float_dtype(model)

    def names(self, slots: set[int]) -> list[str]:
        """The names of the adapters in these slots (0, the model itself, has none)."""
        return [info.name for info in self.infos.values() if info.slot in slots]

    def slot(self, name: str) -> int | None:
        info = self.infos.get(name)
        return None if info is None else info.slot

    def load(self, name: str, folder: Path, source: str) -> AdapterInfo:
        """Read the PEFT adapter in ``folder`` and add it to the model's layers."""
        config = _read_config(folder, name)
        pairs = _read_pairs(folder, name)
        modules = dict(self.model.named_modules())
        slot = len(self.infos) + 1
        updates = []
        for module_name, (a, b) in sorted(pairs.items()):
            layer = modules.get(module_name)
            if layer is None:
                raise AdapterError(f"LoRA adapter {name!r} adapts {module_name}, which this "
                                   "model does not have: it was trained for another base "
                                   "model")
            base = layer.base if isinstance(layer, LoraLinear) else layer
            shape = _linear_shape(base)
            if shape is None:
                raise AdapterError(f"LoRA adapter {name!r} adapts {module_name}, a "
                                   f"{type(base).__name__}: only linear layers can be adapted "
                                   "here")
            rank = a.shape[0]
            if b.shape[1] != rank or (b.shape[0], a.shape[1]) != shape:
                raise AdapterError(
                    f"LoRA adapter {name!r} does not fit {module_name}: its matrices are "
                    f"{tuple(a.shape)} and {tuple(b.shape)}, the layer maps {shape[1]} to "
                    f"{shape[0]} features; it was trained for another base model")
            scale = _scale(config, module_name, rank)
            updates.append((module_name, layer, a, b * scale))
        for module_name, layer, a, b in updates:
            if not isinstance(layer, LoraLinear):
                layer = self._wrap(module_name, layer)
            layer.updates[slot] = (a.t().to(self._device, self._dtype).contiguous(),
                                   b.t().to(self._device, self._dtype).contiguous())
        info = AdapterInfo(name, slot, source, rank=max(a.shape[0] for _, _, a, _ in updates),
                           layers=len(updates))
        self.infos[name] = info
        return info

    def use(self, slots: list[int] | None) -> None:
        """Set which adapter each row of the next forward pass uses (0: none)."""
        self._columns = {}
        present = tuple(sorted({slot for slot in slots or () if slot}))
        self.present = present
        if not present or (len(present) == 1 and all(slots)):
            self.row_slots = None
            return
        self.row_slots = torch.tensor(slots, device=self._device)[:, None, None]

    def columns_of_rows(self, layout: tuple, owner: torch.Tensor) -> torch.Tensor:
        """[B, 1, R]: 1 where a stacked column (of the adapter ``owner`` says) is the row's
        own adapter's, else 0; made once per forward for each ``layout`` of the stacked
        columns ((slot, rank) pairs: layers adapted alike share one)."""
        mask = self._columns.get(layout)
        if mask is None:
            mask = (self.row_slots == owner).to(self._dtype)
            self._columns[layout] = mask
        return mask

    def _wrap(self, module_name: str, layer: torch.nn.Module) -> LoraLinear:
        parent_name, _, child = module_name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        wrapped = LoraLinear(layer, self)
        setattr(parent, child, wrapped)
        return wrapped


def _read_config(folder: Path, name: str) -> dict:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise AdapterError(f"LoRA adapter {name!r}: no {CONFIG_NAME} in {folder} (a PEFT "
                           "adapter folder, as peft's save_pretrained writes it)")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise AdapterError(f"LoRA adapter {name!r}: {path} is not valid JSON ({exc})") from None
    kind = str(config.get("peft_type", "LORA")).upper()
    refused = {
        "peft_type": kind != "LORA" and f"it is a {kind} adapter, not LoRA",
        "use_dora": config.get("use_dora") and "it is a DoRA adapter",
        "bias": config.get("bias", "none") != "none" and "it trains biases",
        "modules_to_save": config.get("modules_to_save") and
        f"it saves whole modules ({', '.join(config['modules_to_save'])})",
    }
    for reason in refused.values():
        if reason:
            raise AdapterError(f"LoRA adapter {name!r} cannot be served: {reason}")
    return config


def _read_pairs(folder: Path, name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module name: (A, B)} of the adapter's weights file."""
    tensors = _read_weights(folder, name)
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterError(f"LoRA adapter {name!r} holds {key}, which is not a LoRA "
                               "matrix of a linear layer (adapted embeddings and other "
                               "weights are not served)")
        found.setdefault(match["module"], {})[match["which"]] = tensor.float()
    pairs = {}
    for module_name, matrices in found.items():
        if set(matrices) != {"A", "B"} or matrices["A"].dim() != 2:
            raise AdapterError(f"LoRA adapter {name!r}: {module_name} lacks its lora_A or "
                               "lora_B matrix")
        pairs[module_name] = (matrices["A"], matrices["B"])
    if not pairs:
        raise AdapterError(f"LoRA adapter {name!r} in {folder} holds no LoRA weights")
    return pairs


def _read_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    safetensors_name, bin_name = ADAPTER_WEIGHT_NAMES
    if (folder / safetensors_name).is_file():
        from safetensors.torch import load_file

        return load_file(folder / safetensors_name)
    if (folder / bin_name).is_file():
        return torch.load(folder / bin_name, map_location="cpu", weights_only=True)
    raise AdapterError(f"LoRA adapter {name!r}: no {safetensors_name} (or .bin) in {folder}")


def _scale(config: dict, module_name: str, rank: int) -> float:
    """``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), with PEFT's per-module patterns."""
    alpha = config.get("lora_alpha", 8)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module_name):
            alpha = value
            break
    return alpha / (rank ** 0.5 if config.get("use_rslora") else rank)


def _linear_shape(layer: torch.nn.Module) -> tuple[int, int] | None:
    """(out, in) of a linear layer: torch's, a packed one, or transformers' Conv1D."""
    if isinstance(layer, torch.nn.Linear) or hasattr(layer, "out_features"):
        return layer.out_features, layer.in_features
    if is_conv1d(layer):  # weight stored [in, out]
        return layer.nf, layer.weight.shape[0]
    return None


def _float_dtype(model: torch.nn.Module) -> torch.dtype:
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.float32


def load_adapters(model: torch.nn.Module, task: str, model_name: str,
                  folders: dict[str, Path], sources: dict[str, str]) -> Adapters | None:
    """The LoRA adapters in ``folders`` (by name; ``sources`` says where each came from)
    loaded into ``model``, or None when there are none."""
    if not folders:
        return None
    if task != "text-generation":
        raise AdapterError("--lora-modules needs a causal model (text-generation); this one "
                           f"is {task}")
    if model_name in folders:
        raise AdapterError(f"the LoRA adapter name {model_name!r} is the served model's own "
                           "name")
    adapters = Adapters(model)
    for name, folder in folders.items():
        info = adapters.load(name, folder, sources[name])
        log.info("LoRA adapter %s (rank %d, %d layers) from %s", name, info.rank,
                 info.layers, sources[name])
    return adapters
