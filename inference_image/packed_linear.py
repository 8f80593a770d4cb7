"""Linear layers with weights packed for oneDNN, for decoding on CPU.

A decode step multiplies a few rows (one per running request) by every weight matrix of
the model. torch's default for float32 on CPU, MKL's sgemm on the plain row-major weight,
runs such short products far below the cores' peak; oneDNN with the weight reordered once
into its blocked layout runs them about twice as fast (16 rows of the benchmark model: a
step's matrix products went from ~18 ms to ~10 ms) and is as fast on long prefills. The
packed weight replaces the plain one, and the pages of a memory-mapped plain weight are
given back (`file_pages`), so memory stays as it was.

oneDNN builds (JIT-compiles) a primitive for every row count it is given and keeps it in a
cache of 1 024: ~0.5 MiB of code each, plus a scratch buffer the size of the output for
long products. Prompts of every length would make a new primitive almost every prefill,
so the server's memory grew with each new prompt length until the cache was full
(+220 MiB over 480 requests of random lengths on the benchmark model, still growing).
So products run at a bounded set of row counts (`run_rows`): up to the decode batch
exactly, longer ones rounded up and cut into blocks of `ROW_BLOCK`.
"""

from __future__ import annotations

import logging

import torch

from . import file_pages

log = logging.getLogger("llmcloud.engine")

#: longer products run as blocks of this many rows (oneDNN is at full speed by then)
ROW_BLOCK = 512
#: row counts run exactly up to the decode batch, never beyond this
MAX_EXACT_ROWS = 64


class PackedLinear(torch.nn.Module):
    """``y = x @ W.T + b`` with ``W`` held in oneDNN's layout (an opaque mkldnn tensor).

    ``weight`` keeps its name, shape and dtype, so model code that reads them still works;
    its values are only reachable through this module's forward.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, batch_size: int):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.exact_rows = max(1, min(batch_size, MAX_EXACT_ROWS))
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_size)
        self.weight = torch.nn.Parameter(packed, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach(),
                                                                 requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        if rows <= self.exact_rows:
            return _linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        outputs = []
        for start in range(0, rows, ROW_BLOCK):
            block = flat[start:start + ROW_BLOCK]
            count = block.shape[0]
            run = run_rows(count, self.exact_rows)
            if run != count:  # zero rows, not stale memory: no NaN or denormal slows it
                block = torch.cat([block, block.new_zeros(run - count, self.in_features)])
            outputs.append(_linear(block, self.weight, self.bias)[:count])
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def run_rows(rows: int, exact_rows: int) -> int:
    """The row count a product of ``rows`` (at most `ROW_BLOCK`) rows runs at: ``rows``
    itself up to ``exact_rows``, then a multiple of 8 up to 64, then one of eight steps
    per doubling (72, 80, .., 128, 144, ..; at most 1/8 more rows than asked for): about
    45 row counts in all."""
    if rows <= exact_rows:
        return rows
    if rows <= 64:
        return -(-rows // 8) * 8
    step = 1 << (rows.bit_length() - 4)
    return -(-rows // step) * step


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def pack_linear_layers(model: torch.nn.Module, batch_size: int) -> int:
    """Replace the model's float32 CPU linear layers by `PackedLinear`s, in place.

    ``batch_size`` is the number of rows the products are tuned for (the engine's batch
    size). Layers whose weight another module shares (tied input/output embeddings) keep
    their plain weight: packing those would hold the matrix twice. Also packs
    transformers' ``Conv1D`` (GPT-2's linear layers, weight stored transposed). Returns
    how many layers were packed; 0 where torch has no oneDNN or it cannot pack them (the
    model then runs on its plain weights).
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    users: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        users[id(param)] = users.get(id(param), 0) + 1
    chosen = [(parent, name, child) for parent in model.modules()
              for name, child in parent.named_children() if _packable(child, users)]
    packed_weights = {id(child.weight) for _, _, child in chosen}
    kept = [file_pages.span_of(t) for t in [*model.parameters(), *model.buffers()]
            if id(t) not in packed_weights]
    kept = [span for span in kept if span is not None]
    mappings = file_pages.private_file_mappings()
    given_back = 0
    packed = 0
    for parent, name, child in chosen:
        weight, bias = _plain_weight(child)
        try:
            layer = PackedLinear(weight, bias, batch_size)
        except RuntimeError as exc:  # a oneDNN build that cannot pack this (CPU, dtype)
            log.warning("keeping plain linear weights: oneDNN cannot pack them here (%s)", exc)
            break
        setattr(parent, name, layer)
        given_back += file_pages.drop_pages(child.weight, mappings, kept)
        packed += 1
    if packed:
        log.info("packed %d linear layers for oneDNN (tuned for %d rows); %.0f MiB of mapped "
                 "plain weights given back", packed, batch_size, given_back / 2**20)
    return packed


def _packable(module: torch.nn.Module, users: dict[int, int]) -> bool:
    if not (type(module) is torch.nn.Linear or is_conv1d(module)):
        return False
    weight = module.weight
    return (users.get(id(weight), 0) == 1 and weight.dtype == torch.float32
            and weight.device.type == "cpu" and weight.layout == torch.strided)


def is_conv1d(module: torch.nn.Module) -> bool:
    """transformers' ``Conv1D``: a linear layer with its weight stored [in, out]."""
    kind = type(module)
    return kind.__name__ == "Conv1D" and kind.__module__.startswith("transformers")


def _plain_weight(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [out, in], bias) of a linear layer `_packable` chose."""
    if is_conv1d(module):
        return module.weight.t().contiguous(), module.bias
    return module.weight, module.bias
