"""How many KV-cache positions the engine may hold, from the memory left after loading.

The engine admits a request only if the batch's padded cache, at the longest it can grow,
fits in this many positions; so memory is bounded by what the machine has, not by a fixed
token count that is too small for a large GPU and far too large for a small one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: share of the free memory the cache may take; the rest is for activations (a prefill
#: chunk, a long prompt prefilled whole, logits) and, on CPU, everything else on the host
CUDA_FRACTION = 0.8
CPU_FRACTION = 0.5
#: a server that cannot hold this much context for one request refuses to start
MIN_CONTEXT = 256
#: spare room a cache buffer keeps past what it holds: at least this many positions, or a
#: quarter (`kv_cache.capacity`, which the batches count rows with)
MIN_ROOM = 32
#: cgroup v1 reports "no limit" as a page-aligned number near 2**63
_NO_LIMIT = 1 << 60


class CacheTooSmall(RuntimeError):
    """Not even one request of a useful length fits in the memory left for the cache."""


@dataclass(frozen=True)
class CacheBudget:
    """The cache's size: positions, bytes per position, and what it was sized from."""

    slots: int
    slot_bytes: int
    free_bytes: int
    fraction: float

    def describe(self) -> str:
        return (f"{self.slots} token positions ({self.slots * self.slot_bytes / 2**30:.2f} GiB "
                f"at {self.slot_bytes / 1024:.1f} KiB each, {self.fraction:.0%} of "
                f"{self.free_bytes / 2**30:.2f} GiB free)")


def size_cache(free_bytes: int, slot_bytes: int, fraction: float) -> CacheBudget:
    """The budget for ``free_bytes`` of memory at ``slot_bytes`` per position."""
    return CacheBudget(int(free_bytes * fraction) // max(1, slot_bytes), slot_bytes,
                       free_bytes, fraction)


def row_positions(context: int, encoder_decoder: bool) -> int:
    """The cache positions one request filling ``context`` tokens takes, spare room
    included, as the engine's batches count it (`CausalBatch.row_slots`,
    `Seq2SeqBatch.row_slots`): a causal row is its whole sequence; an encoder-decoder row
    holds its prompt (encoder states, cross-attention cache) and, beside it, its output
    after the decoder's start token. Imports nothing heavy: the CLI's model-fit rule uses
    it."""
    def capacity(length: int) -> int:
        return length + max(MIN_ROOM, length // 4)

    return context + capacity(context + 1) if encoder_decoder else capacity(context)


def fitting_context(row_slots: Callable[[int], int], slots: int, max_context: int) -> int:
    """The longest context (up to ``max_context``) for which one request fits in ``slots``;
    ``row_slots`` gives the positions a row filling a context takes (it grows with it)."""
    if row_slots(max_context) <= slots:
        return max_context
    low, high = 0, max_context  # row_slots(low) fits (or low == 0), row_slots(high) does not
    while high - low > 1:
        mid = (low + high) // 2
        if row_slots(mid) <= slots:
            low = mid
        else:
            high = mid
    return low


def free_memory(device) -> tuple[int, float]:
    """Bytes free for the cache on ``device`` and the share of them it may take."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return free, CUDA_FRACTION
    return host_available(), CPU_FRACTION


def host_available(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Memory this process can still use: the kernel's MemAvailable, or less where a
    container's memory limit (cgroup v2 or v1) leaves less."""
    available = _numbers(proc / "meminfo").get("MemAvailable", 0)
    room = _cgroup_room(cgroup, _own_cgroup(proc / "self" / "cgroup"))
    if room is not None:
        available = min(available, room) if available else room
    return available


def _numbers(path: Path) -> dict[str, int]:
    """``name value [kB]`` lines (/proc/meminfo, a cgroup's memory.stat) as bytes by name."""
    values: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            fields = line.replace(":", " ").split()
            if len(fields) >= 2 and fields[1].isdigit():
                values[fields[0]] = int(fields[1]) * (1024 if fields[2:] == ["kB"] else 1)
    except OSError:
        pass
    return values


def _own_cgroup(path: Path) -> dict[str, str]:
    """Controller (or "" for the v2 unified hierarchy) to this process's cgroup path."""
    groups: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            _, controllers, group = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                groups[name] = group
    except (OSError, ValueError):
        pass
    return groups


def _cgroup_room(root: Path, groups: dict[str, str]) -> int | None:
    # Inside a container the cgroup file system is usually mounted at its own group, so the
    # files sit at the root; on a host they sit under the group's path.
    candidates = []
    if "" in groups:
        candidates += [(root / groups[""].lstrip("/"), "memory.max", "memory.current",
                        "inactive_file"), (root, "memory.max", "memory.current", "inactive_file")]
    if "memory" in groups:
        v1 = root / "memory"
        candidates += [(v1 / groups["memory"].lstrip("/"), "memory.limit_in_bytes",
                        "memory.usage_in_bytes", "total_inactive_file"),
                       (v1, "memory.limit_in_bytes", "memory.usage_in_bytes",
                        "total_inactive_file")]
    for folder, limit_file, usage_file, inactive_key in candidates:
        try:
            limit_text = (folder / limit_file).read_text().strip()
            usage = int((folder / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= _NO_LIMIT:
            return None
        # Page cache the kernel can drop is not in use: count it as room, as kubelet does.
        inactive = _numbers(folder / "memory.stat").get(inactive_key, 0)
        return max(0, int(limit_text) - max(0, usage - inactive))
    return None
