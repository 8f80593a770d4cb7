"""Giving back the resident pages of a memory-mapped weight that nothing reads any more.

transformers maps safetensors files into memory (private mappings) and a loaded weight is
a view of the file's pages: reading it makes those pages resident, and they count in the
process's memory for as long as the file stays mapped, which is as long as any weight of
the file lives. Once a weight has been copied into another layout (`packed_linear`) its
own pages are never read again; dropping them keeps one copy of the model in memory, not
two. Dropped pages of a private file mapping read back from the file if touched again.
Linux only (elsewhere nothing is dropped).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
from pathlib import Path

import torch

log = logging.getLogger("llmcloud.engine")

Span = tuple[int, int]  # [start, end) addresses


def private_file_mappings(maps: Path = Path("/proc/self/maps")) -> list[Span]:
    """Address ranges of this process's private mappings of regular files."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return []
    spans = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[1][3] != "p" or fields[4] == "0":
            continue
        if not fields[5].startswith("/"):
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        spans.append((start, end))
    return spans


def span_of(tensor: torch.Tensor) -> Span | None:
    """The bytes a dense tensor occupies, or None for tensors without plain storage."""
    if tensor.layout != torch.strided or tensor.device.type != "cpu" or tensor.is_mkldnn:
        return None
    start = tensor.data_ptr()
    return start, start + tensor.numel() * tensor.element_size()


def drop_pages(tensor: torch.Tensor, mappings: list[Span], keep: list[Span]) -> int:
    """Drop the resident pages that lie wholly inside ``tensor`` (a contiguous view of a
    private file mapping) and touch none of the ``keep`` spans. Returns the bytes given
    back (0 when the tensor is not file-mapped)."""
    span = span_of(tensor)
    if span is None or not tensor.is_contiguous():
        return 0
    if not any(start <= span[0] and span[1] <= end for start, end in mappings):
        return 0
    page = mmap.PAGESIZE
    first, last = -(-span[0] // page) * page, span[1] // page * page
    if last <= first or any(start < last and first < end for start, end in keep):
        return 0
    if _madvise(first, last - first) != 0:
        log.debug("madvise failed for %d bytes at %#x", last - first, first)
        return 0
    return last - first


def _madvise(address: int, length: int) -> int:
    return _libc_madvise()(address, length, mmap.MADV_DONTNEED)


@functools.cache
def _libc_madvise():
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise
