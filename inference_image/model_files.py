"""Which model folders the server can load: the one rule `model upload` and the loader share.

transformers' ``from_pretrained`` on a folder reads ``config.json`` and one of four weight
files at the folder's top level, and nothing else: ``model.safetensors``, the sharded
``model.safetensors.index.json`` (with the shards it names), ``pytorch_model.bin`` or the
sharded ``pytorch_model.bin.index.json``. A folder of ``.pt``, ``.gguf`` or differently named
files, or with its weights in a subfolder, fails at every server's start. Imports nothing
heavy: the CLI checks folders with it.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_NAME = "config.json"
#: the weight files transformers looks for, in its order (safetensors first)
SAFETENSORS_NAMES = ("model.safetensors", "model.safetensors.index.json")
PYTORCH_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
WEIGHT_NAMES = SAFETENSORS_NAMES + PYTORCH_NAMES
#: what looks like weights, to say what a refused folder holds instead
_WEIGHT_LIKE = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
_NEEDED = ("model.safetensors (or model.safetensors.index.json and its shards) or "
           "pytorch_model.bin (or pytorch_model.bin.index.json and its shards)")


def weights_file(folder: Path) -> Path | None:
    """The weight file transformers loads from ``folder``, or None where there is none."""
    for name in WEIGHT_NAMES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def has_safetensors(folder: Path) -> bool:
    """Whether ``folder`` is loaded from safetensors (preferred over a .bin beside them)."""
    found = weights_file(folder)
    return found is not None and found.name in SAFETENSORS_NAMES


def unloadable_reason(folder: Path) -> str | None:
    """Why the server could not load ``folder`` as a model, or None where it can."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        return f"{folder} is not a model folder: it has no {CONFIG_NAME}"
    found = weights_file(folder)
    if found is None:
        return (f"{folder} holds no weights the server can load: it needs {_NEEDED} beside "
                f"{CONFIG_NAME}{_what_is_there(folder)}")
    if found.name.endswith(".index.json"):
        missing = _missing_shards(found)
        if missing:
            return (f"{found} names weight shards that are not in {folder}: "
                    f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return None


def _what_is_there(folder: Path) -> str:
    """`; found X` with the first few weight-like files, top level or deeper."""
    try:
        found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.suffix in _WEIGHT_LIKE and p.is_file())
    except OSError:
        return ""
    if not found:
        return ""
    return f"; found {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}"


def _missing_shards(index: Path) -> list[str]:
    """The shards a sharded checkpoint's index names that are not beside it (an index
    that cannot be read is left to transformers, which says why)."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(weight_map, dict):
        return []
    shards = sorted({str(name) for name in weight_map.values()})
    return [name for name in shards if not (index.parent / name).is_file()]
