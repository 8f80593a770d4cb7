"""Data parallelism: a copy of the model per GPU, each with its own engine, behind the one
server (vLLM's ``--data-parallel-size``).

An engine runs its model on one device. On a machine with several GPUs and a model that
fits on one, a copy on each multiplies what the machine serves, on the one port its load
balancer knows. Each request goes to one engine: the one the beginning of its prompt points
to, so prompts that start alike meet the same prefix cache and the answers of one request
share a prefill, unless that engine has clearly more work than the least busy one (half a
batch more) or no room in its queue; then the least busy one with room takes it.
"""

from __future__ import annotations

from collections.abc import Callable

from .engine import Engine, GenerationStream, QueueFull, SamplingParams
from .prefix_cache import BLOCK as AFFINITY_TOKENS  # the beginning that picks the engine


def devices(size: int | None, device: str, gpus: int) -> list[str]:
    """The devices of the model's copies: ``size`` of them (None: one per GPU of the
    ``gpus`` torch sees, when ``device`` lets the server choose its GPU; else one).
    Raises ValueError for a size the machine cannot hold."""
    if size is None:
        size = gpus if device in ("auto", "cuda") and gpus > 0 else 1
    if size == 1:
        return [device]
    if device == "cpu":  # the copies share the cores: for tests, not for speed
        return ["cpu"] * size
    if device not in ("auto", "cuda"):
        raise ValueError(f"--data-parallel-size {size} puts a copy of the model on each of "
                         f"{size} GPUs, so --device must be auto or cuda, not {device!r}")
    if size > gpus:
        raise ValueError(f"--data-parallel-size {size} needs {size} GPUs; torch sees "
                         f"{gpus or 'none'}")
    return [f"cuda:{index}" for index in range(size)]


class DataParallelEngine(Engine):
    """Engines of the same model on different devices, seen by the serving layer as one.
    They share the model's tokenizer, adapters and limits (the first one's); the context
    served is the shortest any of them serves (one may have shrunk it to fit its cache)."""

    def __init__(self, engines: list):
        self.engines = engines
        first = engines[0]
        self.info = min((engine.info for engine in engines), key=lambda i: i.max_context)
        self.tokenizer, self.limits = first.tokenizer, first.limits
        self.structured, self.adapters = first.structured, first.adapters
        self.priority_scheduling = first.priority_scheduling
        self.max_queue = (None if any(e.max_queue is None for e in engines)
                          else sum(e.max_queue for e in engines))
        self.prefixes = (None if first.prefixes is None
                         else _PrefixTotals([e.prefixes for e in engines]))
        self._slack = max(1, self.limits.max_batch_size // 2)

    @property
    def ready(self) -> bool:
        return all(engine.ready for engine in self.engines)

    @property
    def num_running(self) -> int:
        return sum(engine.num_running for engine in self.engines)

    @property
    def num_waiting(self) -> int:
        return sum(engine.num_waiting for engine in self.engines)

    @property
    def cache_usage(self) -> float:
        return sum(engine.cache_usage for engine in self.engines) / len(self.engines)

    @property
    def preemptions(self) -> int:
        return sum(engine.preemptions for engine in self.engines)

    @property
    def on_dead(self) -> Callable[[str], None] | None:
        return self.engines[0].on_dead

    @on_dead.setter
    def on_dead(self, callback: Callable[[str], None] | None) -> None:
        # One copy's device lost is the server's: its supervisor starts a fresh one.
        for engine in self.engines:
            engine.on_dead = callback

    def adapters_in_use(self) -> tuple[list[str], list[str]]:
        running: list[str] = []
        waiting: list[str] = []
        for engine in self.engines:
            names = engine.adapters_in_use()
            running += [name for name in names[0] if name not in running]
            waiting += [name for name in names[1] if name not in waiting]
        return running, waiting

    def choose(self, prompt_ids: list[int], priority: int = 0):
        """The engine a request with this prompt goes to (see the module's docstring);
        raises ``QueueFull`` when no engine has room for it."""
        loads = [engine.num_running + engine.num_waiting for engine in self.engines]
        preferred = hash(tuple(prompt_ids[:AFFINITY_TOKENS])) % len(self.engines)
        by_load = sorted(range(len(self.engines)), key=loads.__getitem__)
        # Free room first: a request pushes a less urgent one out of a full queue (priority
        # scheduling) only when no copy has room without that.
        for displacing in (False, True):
            if (loads[preferred] - min(loads) <= self._slack
                    and self.engines[preferred].queue_room(priority, displacing) >= 1):
                return self.engines[preferred]
            for index in by_load:
                if self.engines[index].queue_room(priority, displacing) >= 1:
                    return self.engines[index]
        raise QueueFull(f"{self.num_waiting} requests are already waiting")

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> GenerationStream:
        return self.choose(prompt_ids, params.priority).generate(prompt_ids, params)

    def room_for(self, requests: int, priority: int = 0) -> bool:
        return sum(engine.queue_room(priority) for engine in self.engines) >= requests

    def abort_all(self, reason: str) -> None:
        for engine in self.engines:
            engine.abort_all(reason)

    def shutdown(self) -> None:
        for engine in self.engines:
            engine.shutdown()


class _PrefixTotals:
    """The prefix caches' hit-rate counters, summed over the copies (for the metrics)."""

    def __init__(self, caches: list):
        self._caches = caches

    @property
    def queries(self) -> int:
        return sum(cache.queries for cache in self._caches)

    @property
    def hits(self) -> int:
        return sum(cache.hits for cache in self._caches)
