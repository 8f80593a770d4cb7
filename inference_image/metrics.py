"""Prometheus metrics, named like vLLM's (``vllm:`` -> ``llmcloud:``) so dashboards port."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

# vLLM's (vllm/v1/metrics/loggers.py), which reach 2560 s for the first token: a long prompt
# on slow hardware, or one that waited in a long queue, takes more than 80 s.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
_N_BUCKETS = (1, 2, 5, 10, 20)


def token_buckets(max_context: int) -> tuple[int, ...]:
    """vLLM's 1-2-5 buckets for token counts: 1, 2, 5, 10, 20, 50, ... up to the context."""
    buckets, scale = [], 1
    while True:
        for step in (1, 2, 5):
            if step * scale > max_context:
                return tuple(buckets)
            buckets.append(step * scale)
        scale *= 10


class ServerMetrics:
    """All of one server's metrics, in a registry of its own (not the process-global one)."""

    def __init__(self, model_name: str, model_version: str, task: str,
                 running: Callable[[], int], waiting: Callable[[], int],
                 cache_usage: Callable[[], float] | None = None,
                 cache_tokens: int | None = None,
                 preemptions: Callable[[], int] | None = None,
                 prefix_cache=None, max_context: int = 4096, lora_names: tuple[str, ...] = (),
                 lora_in_use: Callable[[], tuple[list[str], list[str]]] | None = None,
                 max_loras: int | None = None):
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self._model = {"model_name": model_name}
        reg = self.registry
        Info("llmcloud:model", "The model this server serves.", registry=reg).info(
            {"model_name": model_name, "model_version": model_version, "task": task})
        self.requests = Counter(
            "llmcloud:requests", "HTTP requests to the API, by endpoint and status code.",
            labels + ["endpoint", "status"], registry=reg)
        self.request_success = Counter(
            "llmcloud:request_success", "Finished generations, by finish reason.",
            labels + ["finished_reason"], registry=reg)
        self.lora_requests = Counter(
            "llmcloud:lora_requests", "Finished API requests that named a LoRA adapter as "
            "their model, by adapter.", labels + ["lora_name"], registry=reg)
        for name in lora_names:  # each adapter's series exists from the start, at 0
            self.lora_requests.labels(**self._model, lora_name=name)
        if lora_in_use is not None:
            reg.register(_LoraInfo(min(max_loras or len(lora_names), len(lora_names)),
                                   lora_in_use))
        self.prompt_tokens = Counter(
            "llmcloud:prompt_tokens", "Prompt tokens processed.", labels, registry=reg
        ).labels(**self._model)
        self.generation_tokens = Counter(
            "llmcloud:generation_tokens", "Tokens generated.", labels, registry=reg
        ).labels(**self._model)
        self.ttft = Histogram(
            "llmcloud:time_to_first_token_seconds", "Time from request to first token.",
            labels, buckets=_TTFT_BUCKETS, registry=reg).labels(**self._model)
        self.itl = Histogram(
            "llmcloud:inter_token_latency_seconds", "Time between consecutive output tokens.",
            labels, buckets=_ITL_BUCKETS, registry=reg).labels(**self._model)
        self.e2e = Histogram(
            "llmcloud:e2e_request_latency_seconds", "Time from request to last token.",
            labels, buckets=_E2E_BUCKETS, registry=reg).labels(**self._model)
        # vLLM's per-request histograms, which its dashboard's queue, prefill/decode and
        # token-count panels read (each answer of an `n` request is a request there too).
        def phase(name: str, doc: str):
            return Histogram(name, doc, labels, buckets=_E2E_BUCKETS,
                             registry=reg).labels(**self._model)

        self.queue_time = phase("llmcloud:request_queue_time_seconds",
                                "Time a request waited for a batch slot.")
        self.prefill_time = phase("llmcloud:request_prefill_time_seconds",
                                  "Time from a batch slot to the first token.")
        self.decode_time = phase("llmcloud:request_decode_time_seconds",
                                 "Time from the first token to the last.")
        self.inference_time = phase("llmcloud:request_inference_time_seconds",
                                    "Time from a batch slot to the last token.")
        counts = token_buckets(max_context)
        self.request_prompt_tokens = Histogram(
            "llmcloud:request_prompt_tokens", "Prompt tokens of each request.", labels,
            buckets=counts, registry=reg).labels(**self._model)
        self.request_generation_tokens = Histogram(
            "llmcloud:request_generation_tokens", "Tokens each request generated.", labels,
            buckets=counts, registry=reg).labels(**self._model)
        self.request_max_tokens = Histogram(
            "llmcloud:request_params_max_tokens", "The new tokens each request might have "
            "(its max_tokens, or what the context left).", labels, buckets=counts,
            registry=reg).labels(**self._model)
        self.request_n = Histogram(
            "llmcloud:request_params_n", "The answers each API request asked for per prompt.",
            labels, buckets=_N_BUCKETS, registry=reg).labels(**self._model)
        Gauge("llmcloud:num_requests_running", "Requests in the running batch.", labels,
              registry=reg).labels(**self._model).set_function(running)
        Gauge("llmcloud:num_requests_waiting", "Requests waiting for a batch slot.", labels,
              registry=reg).labels(**self._model).set_function(waiting)
        if cache_usage is not None:
            Gauge("llmcloud:kv_cache_usage_perc",
                  "Share of the KV cache's token positions the running requests hold "
                  "(1 = full).", labels, registry=reg
                  ).labels(**self._model).set_function(cache_usage)
        if cache_tokens is not None:
            Gauge("llmcloud:kv_cache_capacity_tokens",
                  "Token positions the KV cache may hold (--max-batch-tokens).", labels,
                  registry=reg).labels(**self._model).set(cache_tokens)
        if preemptions is not None:
            reg.register(_CounterOf(
                "llmcloud:num_preemptions", "Running requests preempted because the KV cache "
                "was full, or for a more urgent request under priority scheduling (each is "
                "prefilled again and resumes).", self._model, preemptions))
        if prefix_cache is not None:
            reg.register(_CounterOf(
                "llmcloud:prefix_cache_queries", "Prompt tokens of admitted requests looked up "
                "in the prefix cache.", self._model, lambda: prefix_cache.queries))
            reg.register(_CounterOf(
                "llmcloud:prefix_cache_hits", "Prompt tokens whose states came from the "
                "prefix cache instead of a prefill.", self._model, lambda: prefix_cache.hits))

    def count_request(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status), **self._model).inc()

    def count_lora_request(self, adapter: str) -> None:
        """Count a finished API request that named the LoRA adapter ``adapter``."""
        self.lora_requests.labels(**self._model, lora_name=adapter).inc()

    def count_finished(self, reason: str) -> None:
        self.request_success.labels(finished_reason=reason, **self._model).inc()

    def observe_request(self, choice) -> None:
        """A finished engine request's phases and token counts (a phase it never reached,
        e.g. cancelled while queued, is not observed)."""
        stream = choice.stream
        scheduled, first, last = stream.scheduled_at, choice.first_token_at, choice.last_token_at
        if scheduled is not None:
            self.queue_time.observe(max(0.0, scheduled - stream.queued_at))
            if first is not None:
                self.prefill_time.observe(max(0.0, first - scheduled))
            if last is not None:
                self.inference_time.observe(max(0.0, last - scheduled))
        if first is not None and last is not None:
            self.decode_time.observe(last - first)
        self.request_prompt_tokens.observe(len(stream.prompt_ids))
        self.request_generation_tokens.observe(choice.completion_tokens)
        self.request_max_tokens.observe(stream.params.max_tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition of this server's metrics."""
        return generate_latest(self.registry)


class _LoraInfo(Collector):
    """vLLM's ``lora_requests_info``: the adapters running and waiting requests use, as
    comma-separated labels of one sample valued at the scrape's time (what LoRA-aware
    routers, such as the Gateway API inference extension's, read). ``max_lora``: how many
    adapters a batch may hold (``--max-loras``, at most all of the loaded ones)."""

    def __init__(self, max_lora: int, in_use: Callable[[], tuple[list[str], list[str]]]):
        self._max_lora, self._in_use = max_lora, in_use

    def collect(self):
        running, waiting = self._in_use()
        family = GaugeMetricFamily(
            "llmcloud:lora_requests_info", "The LoRA adapters of running and waiting "
            "requests.", labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"])
        family.add_metric([str(self._max_lora), ",".join(running), ",".join(waiting)],
                          time.time())
        yield family


class _CounterOf(Collector):
    """A counter whose value another component keeps (the engine counts on its thread)."""

    def __init__(self, name: str, doc: str, labels: dict[str, str], read: Callable[[], int]):
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self):
        family = CounterMetricFamily(self._name, self._doc, labels=list(self._labels))
        family.add_metric(list(self._labels.values()), self._read())
        yield family
