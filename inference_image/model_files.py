"""Which model folders the server can load: the one rule `model upload` and the loader share.

transformers' ``from_pretrained`` on a folder reads ``config.json`` and one of four weight
files at the folder's top level, and nothing else: ``model.safetensors``, the sharded
``model.safetensors.index.json`` (with the shards it names), ``pytorch_model.bin`` or the
sharded ``pytorch_model.bin.index.json``. A folder of ``.pt``, ``.gguf`` or differently named
files, or with its weights in a subfolder, fails at every server's start. The spec's LoRA
adapters are folders inside the version, each a PEFT folder (``adapter_problems``). Imports
nothing heavy: the CLI checks folders with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
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
    weights = [found]
    if found.name.endswith(".index.json"):
        missing = _missing_shards(found)
        if missing:
            return (f"{found} names weight shards that are not in {folder}: "
                    f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        weights = [found.parent / name for name in _shards(found)]
    # the weights first; then the other files transformers reads at the top level (a
    # `tokenizer.model` or large `tokenizer.json` is in LFS too, and fails every server
    # just the same)
    pointers = [path.name for path in weights if _is_lfs_pointer(path)]
    pointers += sorted(path.name for path in _top_files(folder)
                       if path.name not in pointers and _is_lfs_pointer(path))
    if pointers:
        return (f"{folder} holds Git LFS pointer files, not the files themselves: "
                f"{', '.join(pointers[:3])}{' ...' if len(pointers) > 3 else ''} (fetch "
                "them with git lfs pull, or a checkout with LFS)")
    return None


#: how a Git LFS pointer file begins (a checkout without LFS leaves one in each file's place)
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


#: the largest pointer file (Git LFS's spec: "less than 1024 bytes"): larger files are
#: not read
_LFS_POINTER_MOST = 1024


def _is_lfs_pointer(path: Path) -> bool:
    try:
        if path.stat().st_size >= _LFS_POINTER_MOST:
            return False
        with open(path, "rb") as file:
            return file.read(len(_LFS_POINTER)) == _LFS_POINTER
    except OSError:
        return False


def _top_files(folder: Path) -> list[Path]:
    """The files at `folder`'s top level (none when it cannot be listed)."""
    try:
        return [path for path in folder.iterdir() if path.is_file()]
    except OSError:
        return []


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
    return [name for name in _shards(index) if not (index.parent / name).is_file()]


def _shards(index: Path) -> list[str]:
    """The shard files a sharded checkpoint's index names (none when it cannot be read)."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return []
    return sorted({str(name) for name in weight_map.values()}) \
        if isinstance(weight_map, dict) else []


#: what a PEFT adapter folder holds, as peft's ``save_pretrained`` writes it
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")


def version_files(folder: Path) -> list[str]:
    """The paths (relative, posix) a model version made of ``folder`` holds: what `model
    upload` sends and its manifest lists (hidden files and folders are left out)."""
    from .manifest import MANIFEST_NAME, model_files

    folder = Path(folder)
    return [p.relative_to(folder).as_posix() for p in model_files(folder)
            if p.relative_to(folder).as_posix() != MANIFEST_NAME]


def adapter_problems(files: Iterable[str], lora_modules: Mapping[str, str],
                     model_name: str | None = None) -> list[str]:
    """Why the LoRA adapters of ``lora_modules`` (the spec's `server.lora_modules`: {name:
    folder inside the model version}) cannot be served from a version holding ``files``
    (its paths, relative and posix: a manifest's, or ``version_files``) under
    ``model_name``; empty when every one can. A server finds each adapter in the version's
    folder or fails at its start, on every replica: this says so before anything runs."""
    have = set(files)
    problems = []
    for name, folder in sorted(lora_modules.items()):
        if name == model_name:
            problems.append(f"adapter {name!r} is named as the model itself (a request's "
                            "`model` could not tell them apart)")
        parts = [part for part in folder.split("/") if part not in ("", ".")]
        prefix = "".join(f"{part}/" for part in parts)
        where = f"{folder} ({name})"
        if any(part.startswith(".") for part in parts):
            problems.append(f"{where}: a folder whose name begins with '.' is never part "
                            "of a model version (hidden files are not uploaded)")
        elif not any(path.startswith(prefix) for path in have):
            problems.append(f"{where} is not in the model version")
        elif prefix + ADAPTER_CONFIG_NAME not in have:
            problems.append(f"{where} has no {ADAPTER_CONFIG_NAME}: not a PEFT adapter "
                            "folder, as peft's save_pretrained writes it")
        elif not any(prefix + weights in have for weights in ADAPTER_WEIGHT_NAMES):
            problems.append(f"{where} has no {ADAPTER_WEIGHT_NAMES[0]} (or "
                            f"{ADAPTER_WEIGHT_NAMES[1]})")
    return problems
