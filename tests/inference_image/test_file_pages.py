"""Pages of a memory-mapped weight that packing copied are given back, and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from llmcloud.inference_image import file_pages
from llmcloud.inference_image.loader import load_model
from llmcloud.inference_image.packed_linear import PackedLinear

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")

MAPS = """\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000400000 r--p 00000000 08:01 1234                       /models/m/model.safetensors
7f0000400000-7f0000500000 rw-s 00000000 08:01 99                         /dev/shm/shared
7f0000500000-7f0000600000 rw-p 00000000 00:00 0
7f0000600000-7f0000601000 r-xp 00000000 08:01 77                         /usr/lib/libc.so.6
"""


def test_only_private_mappings_of_files_are_listed(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    assert file_pages.private_file_mappings(maps) == [
        (0x7F0000000000, 0x7F0000400000), (0x7F0000600000, 0x7F0000601000)]
    assert file_pages.private_file_mappings(tmp_path / "missing") == []


def test_memory_that_is_not_a_file_mapping_is_left_alone():
    tensor = torch.arange(1 << 20, dtype=torch.float32)
    assert file_pages.drop_pages(tensor, file_pages.private_file_mappings(), []) == 0
    assert torch.equal(tensor, torch.arange(1 << 20, dtype=torch.float32))


def _mapped_rss_kib(path: Path) -> int | None:
    """Resident KiB of this process's mappings of ``path``; None when it is not mapped."""
    total, found, inside = 0, False, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5 and ":" not in line[:20]:
            inside = line.rstrip().endswith(str(path))
            found = found or inside
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total if found else None


def _save_model(folder: Path) -> Path:
    from tiny_models import build_causal

    # 2 layers whose linear weights come to ~8 MiB, beside ~0.3 MiB of embeddings
    return build_causal(folder, hidden_size=256, intermediate_size=1024,
                        num_attention_heads=4, num_key_value_heads=4)


@linux_only
def test_packing_a_mapped_model_gives_its_linear_weights_pages_back(tmp_path):
    folder = _save_model(tmp_path / "model")
    weights = folder / "model.safetensors"
    packed = load_model(folder, task=None, device="cpu", dtype="auto", pack_for_batch=8)
    linear_kib = sum(m.weight.numel() * 4 for m in packed.model.modules()
                     if isinstance(m, PackedLinear)) // 1024
    assert linear_kib > 7000
    resident = _mapped_rss_kib(weights)
    assert resident is not None, "transformers no longer maps safetensors files"
    # the embeddings, norms and a few boundary pages stay; the linear weights do not
    assert resident < linear_kib / 4

    plain = load_model(folder, task=None, device="cpu", dtype="auto")
    ids = torch.randint(5, 300, (2, 7))
    with torch.inference_mode():
        assert torch.allclose(packed.model(input_ids=ids).logits,
                              plain.model(input_ids=ids).logits, atol=1e-4)


@linux_only
def test_only_pages_wholly_inside_the_tensor_and_no_kept_tensor_are_dropped(tmp_path):
    path = tmp_path / "weights.bin"
    torch.arange(1 << 20, dtype=torch.float32).numpy().tofile(path)
    mapped = torch.from_file(str(path), shared=False, size=1 << 20, dtype=torch.float32)
    mappings = file_pages.private_file_mappings()
    assert any(s <= mapped.data_ptr() < e for s, e in mappings), "from_file did not map"
    weight = mapped[1000:300_000]  # starts and ends inside a page
    before = weight.clone()
    assert file_pages.drop_pages(weight, mappings, [file_pages.span_of(mapped[5000:5001])]) == 0
    given_back = file_pages.drop_pages(weight, mappings, [file_pages.span_of(mapped[:1000])])
    start, end = file_pages.span_of(weight)
    assert given_back == (end // 4096 - -(-start // 4096)) * 4096
    # a dropped page of a private file mapping reads back from the file
    assert torch.equal(weight, before)
    assert torch.equal(mapped[:1000], torch.arange(1000, dtype=torch.float32))
