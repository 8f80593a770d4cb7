"""The last layer's MLP run for the position whose logits a prefill keeps, not for all.

A prefill keeps one position's logits per row (those of the next token), yet a model runs
every layer for every position. Below the last layer every position's output feeds the
next layer's attention, and the last layer's attention writes every position's keys and
values into the cache, so those run whole. But the last layer's MLP (two thirds of a Llama
layer's products) feeds only the final norm and the output layer, position by position,
and only the last position reaches them. So during a prefill it runs for that position
only (llama.cpp does the same with its `inp_out_ids`): 11 % of a prefill's products for
the benchmark's 6-layer model, 3 % for a 22-layer one.

This relies on the model adding the MLP's output to each position on its own, which is
what decoder layers do; the first prefill checks it (`LastPositionMLP.check`) on a short
probe, and a model whose last logits it would change keeps running its MLP whole.
"""

from __future__ import annotations

import logging
import threading
import weakref

import torch

log = logging.getLogger("llmcloud.engine")

_OF_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class LastPositionMLP:
    """Hooks on the last decoder layer's ``mlp`` that, while ``enabled``, run it for the
    last position of each row only and return zeros for the others (nothing reads them)."""

    def __init__(self, mlp: torch.nn.Module):
        self.checked: bool | None = None  # None until `check` ran; then whether it holds
        # Per thread: what the engine's thread enables leaves the model as it is for any
        # other thread that runs it meanwhile (a test's reference run, say).
        self._thread = threading.local()
        mlp.register_forward_pre_hook(self._before)
        mlp.register_forward_hook(self._after)

    @property
    def enabled(self) -> bool:
        """Whether the MLP runs for the last position only (in this thread)."""
        return getattr(self._thread, "enabled", False)

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._thread.enabled = value

    def _before(self, module, args):
        hidden = args[0] if args else None
        if (not self.enabled or not isinstance(hidden, torch.Tensor) or hidden.dim() != 3
                or hidden.shape[1] == 1):
            self._thread.length = None
            return None
        self._thread.length = hidden.shape[1]
        return (hidden[:, -1:], *args[1:])

    def _after(self, module, args, output):
        length, self._thread.length = getattr(self._thread, "length", None), None
        if length is None:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the last layer's MLP returned {type(output).__name__}, not a "
                            "tensor")
        whole = output.new_zeros((output.shape[0], length, *output.shape[2:]))
        whole[:, -1:] = output
        return whole

    def check(self, run) -> bool:
        """Whether ``run()`` (the model on a short probe, its logits [B, L, V] or [B, 1, V])
        gives the same last logits with the MLP cut to the last position as whole."""
        try:
            whole = run()[:, -1].float()
            self.enabled = True
            cut = run()[:, -1].float()
        except Exception as exc:  # e.g. an MLP that returns a tuple (mixtures of experts)
            log.info("the last layer's MLP runs for every position: %s", exc)
            self.checked = False
            return False
        finally:
            self.enabled = False
        rounding = 1e-5 if whole.dtype == torch.float32 else 5e-2
        scale = float(whole.abs().max()) or 1.0
        self.checked = float((whole - cut).abs().max()) <= rounding * scale
        if not self.checked:
            log.info("the last layer's MLP runs for every position: cut to the last one, it "
                     "changed the probe's logits")
        return self.checked


def for_model(model: torch.nn.Module) -> LastPositionMLP | None:
    """The model's `LastPositionMLP` (made once per model), or None when its last decoder
    layer has no ``mlp`` module to cut."""
    if model in _OF_MODEL:
        return _OF_MODEL[model]
    mlp = _last_layer_mlp(model)
    hooks = None if mlp is None else LastPositionMLP(mlp)
    _OF_MODEL[model] = hooks
    return hooks


def _last_layer_mlp(model: torch.nn.Module) -> torch.nn.Module | None:
    base = getattr(model, "base_model", model)
    layers = [child for child in base.children()
              if isinstance(child, torch.nn.ModuleList) and len(child)]
    if len(layers) != 1:  # none, or more than one stack: which is the decoder's is unclear
        return None
    mlp = getattr(layers[0][-1], "mlp", None)
    return mlp if isinstance(mlp, torch.nn.Module) else None
