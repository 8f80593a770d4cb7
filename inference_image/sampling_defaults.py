"""The sampling settings a request gets for the fields it leaves out.

As vLLM's ``--generation-config auto`` and ``transformers serve`` do, the model creator's
recommendations in ``generation_config.json`` (e.g. Llama 3.1's temperature 0.6 and top_p
0.9, Qwen's repetition penalty) come first; the operator's ``--override-generation-config``
wins over them; what neither sets keeps OpenAI's defaults (temperature 1, top_p 1, no top_k,
min_p or repetition penalty). A request's own values always win.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path

log = logging.getLogger("llmcloud.sampling_defaults")

FILE = "generation_config.json"
#: ``--generation-config`` values that take no defaults from any file (vLLM names it vllm)
NEUTRAL = ("none", "vllm")


class SamplingDefaultsError(ValueError):
    """A generation config or override the server cannot take, with the reason."""


def _number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _integer(value: object) -> bool:
    return _number(value) and float(value).is_integer()


#: generation-config key -> (what it must be, the check), the ranges requests are held to
_CHECKS = {
    "temperature": ("a number from 0 to 2", lambda v: _number(v) and 0 <= v <= 2),
    "top_p": ("a number above 0 and at most 1", lambda v: _number(v) and 0 < v <= 1),
    "top_k": ("a whole number, -1 or 0 for all tokens", lambda v: _integer(v) and v >= -1),
    "min_p": ("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1),
    "repetition_penalty": ("a number above 0 and at most 10",
                           lambda v: _number(v) and 0 < v <= 10),
    "max_new_tokens": ("a whole number of at least 1", lambda v: _integer(v) and v >= 1),
}
KEYS = tuple(_CHECKS)


@dataclass(frozen=True)
class SamplingDefaults:
    """What a request that leaves a field out gets. ``max_tokens`` (a generation config's
    ``max_new_tokens``) caps the answer's length only when the request sets none."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: all tokens
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_tokens: int | None = None

    def changed(self) -> dict[str, float | int]:
        """The settings that differ from OpenAI's defaults, by name."""
        neutral = SamplingDefaults()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(neutral, f.name)}

    def answer_length(self, request_default: int | None) -> int | None:
        """The answer's length when the request sets none: the API's own default (16 for
        completions, None for chat: the rest of the context), capped by ``max_tokens``."""
        if self.max_tokens is None:
            return request_default
        return min(request_default or self.max_tokens, self.max_tokens)


def parse_override(text: str | None) -> dict[str, float | int]:
    """``--override-generation-config``: a JSON object of generation-config keys."""
    if not text:
        return {}
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SamplingDefaultsError(f"--override-generation-config is not JSON: {exc}") from exc
    if not isinstance(given, dict):
        raise SamplingDefaultsError("--override-generation-config must be a JSON object, e.g. "
                                    '\'{"temperature": 0.7}\'')
    unknown = sorted(set(given) - set(KEYS))
    if unknown:
        raise SamplingDefaultsError(
            f"--override-generation-config cannot set {', '.join(unknown)}; it takes "
            f"{', '.join(KEYS)}")
    for key, value in given.items():
        what, ok = _CHECKS[key]
        if not ok(value):
            raise SamplingDefaultsError(
                f"--override-generation-config: {key} must be {what}, got {value!r}")
    return given


def _from_file(path: Path) -> dict[str, float | int]:
    """The sampling keys of a generation config file; a value out of range is left out
    with a warning (the model still serves, with the API's default for it)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SamplingDefaultsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise SamplingDefaultsError(f"{path} is not a JSON object")
    taken = {}
    for key in KEYS:
        value = config.get(key)
        if value is None:
            continue
        what, ok = _CHECKS[key]
        if ok(value):
            taken[key] = value
        else:
            log.warning("%s: %s must be %s, got %r; requests get the API's default for it",
                        path, key, what, value)
    return taken


def read_defaults(model_folder: Path | None, source: str = "auto",
                  override: dict[str, float | int] | None = None) -> SamplingDefaults:
    """The defaults for a model: ``source`` is ``auto`` (the model folder's generation
    config, if it has one), ``none``/``vllm`` (no file) or a folder holding a
    generation_config.json; ``override`` (``parse_override``'s) wins over the file."""
    if source in NEUTRAL:
        given: dict[str, float | int] = {}
    elif source == "auto":
        path = Path(model_folder) / FILE if model_folder is not None else None
        given = _from_file(path) if path is not None and path.is_file() else {}
    else:
        path = Path(source)
        path = path / FILE if path.is_dir() else path
        if not path.is_file():
            raise SamplingDefaultsError(f"--generation-config {source}: no {FILE} there")
        given = _from_file(path)
    given = {**given, **(override or {})}
    top_k = int(given.get("top_k", 0))
    max_new = given.get("max_new_tokens")
    return SamplingDefaults(
        temperature=float(given.get("temperature", 1.0)),
        top_p=float(given.get("top_p", 1.0)),
        top_k=max(top_k, 0),
        min_p=float(given.get("min_p", 0.0)),
        repetition_penalty=float(given.get("repetition_penalty", 1.0)),
        max_tokens=int(max_new) if max_new is not None else None,
    )
