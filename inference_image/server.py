"""``llmcloud-server``: the command line, model loading in the background, graceful drain.

The HTTP server listens at once (liveness answers, readiness is 503 until the model is
loaded). On SIGTERM readiness turns 503, in-flight requests get ``--drain-timeout``
seconds to finish, streams still open then end with an error event and ``[DONE]``, and the
process exits 0. On SIGUSR1 it leaves first: readiness turns 503 but new requests are still
served for ``--leave-seconds`` (or until SIGTERM), then it drains the same way. Only
argparse is imported until the command line is parsed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from .server_options import REASONING_PARSERS, build_parser

log = logging.getLogger("llmcloud.server")

def served_context(model_context: int, max_model_len: int | None) -> int:
    """The context served: ``--max-model-len`` when given, which cannot exceed the model's
    own (positions it was never trained on would give garbage, not an error)."""
    from .loader import ModelLoadError

    if max_model_len is None:
        return model_context
    if max_model_len > model_context:
        raise ModelLoadError(f"--max-model-len {max_model_len} is longer than the model's "
                             f"context of {model_context} tokens")
    return max_model_len


def prefix_cache_share(given: float | None, device_type: str) -> float | None:
    """``--prefix-cache-share``, or the device's default: all the free room on a GPU (its
    memory is the server's either way); on CPU None, room for one request of the whole
    context (what kept beginnings hold there is memory an idle server would give back)."""
    if given is not None:
        return given
    return 1.0 if device_type == "cuda" else None


#: prompt tokens per prefill step by device: 512 measured best on CPU (bench/runtime_bench.py,
#: bench/long_prompt_bench.py); 2048 is vLLM's budget for latency on GPUs, where a
#: 512-token step would leave the chip mostly idle
PREFILL_TOKENS = {"cpu": 512, "cuda": 2048}


def prefill_tokens(given: int | None, device_type: str) -> int:
    """The per-step prefill budget: ``--max-prefill-tokens``, or the device's default."""
    return given or PREFILL_TOKENS.get(device_type, PREFILL_TOKENS["cpu"])


#: OpenMP spin iterations before a waiting worker sleeps (libgomp's default is 300000);
#: a few milliseconds on current x86 cores
SPIN_BEFORE_SLEEP = "100000"


def set_cpu_waits(environ: dict[str, str]) -> None:
    """How torch's OpenMP workers wait between ops, unless the environment already says.

    Workers that spin without end starve the event loop and the engine's own Python, and
    collapse when other processes share the cores (25-40 tok/s spinning against ~170
    sleeping, on a loaded 2-core box). Workers that sleep at once pay a wake-up at each of
    the ~50 parallel ops of a decode step (a third of the step on a small model). So: spin
    for a few milliseconds, enough to bridge the gaps within a decode step and most of
    those between two steps (where the engine's Python may wait for the event loop), then
    sleep (side by side, 100 000 spins decoded ~10 % faster than 10 000). `OMP_WAIT_POLICY`
    or `GOMP_SPINCOUNT` in the environment wins; the local provider sets
    `OMP_WAIT_POLICY=PASSIVE` for its replicas, which share the machine.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return
    environ["OMP_WAIT_POLICY"] = "PASSIVE"  # runtimes other than GNU's: sleep
    environ["GOMP_SPINCOUNT"] = SPIN_BEFORE_SLEEP  # GNU libgomp (torch's wheels): this wins


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``llmcloud-server`` console script."""
    args = build_parser().parse_args(argv)
    from .log_format import configure as configure_logging

    configure_logging(args.log_level, args.log_format, os.environ)
    from .unread_variables import warn_unread_variables

    warn_unread_variables(os.environ, log)

    def fail(message: str):
        """Stop with status 1 and ``message``: in JSON, as the last record, so that a log
        pipeline that reads JSON lines sees why the server did not start."""
        if args.log_format == "json":
            log.critical("%s", message)
            sys.exit(1)
        sys.exit(message)

    for name, value in (("--max-batch-size", args.max_batch_size),
                        ("--max-queue", args.max_queue),
                        ("--max-batch-tokens", args.max_batch_tokens),
                        ("--reserve-new-tokens", args.reserve_new_tokens),
                        ("--max-prefill-tokens", args.max_prefill_tokens),
                        ("--max-model-len", args.max_model_len),
                        ("--max-body-bytes", args.max_body_bytes)):
        if value is not None and value < 1:
            fail(f"error: {name} must be at least 1")
    # (written so that NaN fails too)
    if not args.keep_alive_timeout > 0:
        fail("error: --keep-alive-timeout must be more than 0 seconds")
    if not args.drain_timeout >= 0:
        fail("error: --drain-timeout must be 0 seconds or more")
    if not args.leave_seconds >= 0:
        fail("error: --leave-seconds must be 0 seconds or more")
    from .chat_prompt import ChatTemplateError, read_template
    from .sampling_defaults import SamplingDefaultsError, parse_override
    from .server_options import parse_allowed_origins, parse_lora_modules

    try:  # a typo here should stop the server now, not after the model has loaded
        parse_lora_modules(args.lora_modules)
    except ValueError as exc:
        fail(f"error: --lora-modules: {exc}")
    try:
        allowed_origins = parse_allowed_origins(args.allowed_origins)
    except ValueError as exc:
        fail(f"error: --allowed-origins: {exc}")
    try:
        args.override_generation_config = parse_override(args.override_generation_config)
        if args.chat_template is not None:
            args.chat_template = read_template(args.chat_template)
    except (SamplingDefaultsError, ChatTemplateError) as exc:
        fail(f"error: {exc}")
    set_cpu_waits(os.environ)  # before torch is imported: OpenMP reads it when it loads

    from .api_keys import ApiKeys
    from .router import ServerState, create_app

    api_keys = None
    if args.api_keys_file:
        try:
            api_keys = ApiKeys.from_file(args.api_keys_file)
        except (OSError, ValueError) as exc:
            fail(f"error: cannot read --api-keys-file: {exc}")
    state = ServerState(api_keys=api_keys)
    app = create_app(state, max_body_bytes=args.max_body_bytes,
                     strip_path_prefix=args.strip_path_prefix,
                     allowed_origins=allowed_origins)
    config = uvicorn_config(args, app)
    server = _server_class()(config, state, args)
    server.run()
    if server.engine is not None:
        if server.force_exit:
            _stop_at_once(server.engine, 1 if server.failure else 0)
        else:
            server.engine.shutdown()
    if server.failure:
        fail(f"error: {server.failure}")


#: how long a drain that ran out waits for the requests it ended to send their error event
ABORT_WAIT_S = 5.0
#: how long uvicorn then waits for the connections to close (its graceful shutdown)
CLOSE_WAIT_S = 5


#: how long a second signal waits for the engine to stop before the process goes without it
FORCED_STOP_S = 2.0


def _stop_at_once(engine, status: int) -> None:
    """After a second signal: stop the engine, but not wait for a step that a hung device
    may never end (its shutdown waits up to 30 s for it); then the process ends at once,
    without the interpreter's teardown, which would abort under a thread still in torch."""
    stopping = threading.Thread(target=engine.shutdown, name="llmcloud-stop", daemon=True)
    stopping.start()
    stopping.join(FORCED_STOP_S)
    if stopping.is_alive():
        log.warning("the engine did not stop within %.0fs of the second signal; exiting "
                    "without it", FORCED_STOP_S)
        logging.shutdown()
        os._exit(status)


def uvicorn_config(args, app):
    """uvicorn's settings for the parsed arguments (no access log: the server logs a line per
    request of its own)."""
    import uvicorn

    # In JSON, uvicorn's loggers install no text handlers of their own: the root's writes them.
    own_config = {} if args.log_format == "text" else {"log_config": None}
    return uvicorn.Config(app, host=args.host, port=args.port, lifespan="off",
                          log_level=args.log_level, timeout_graceful_shutdown=CLOSE_WAIT_S,
                          timeout_keep_alive=args.keep_alive_timeout, access_log=False,
                          **own_config)


def _load(args, state) -> object:
    """Resolve, verify and load the model, then publish the serving layer on ``state``."""
    from pathlib import Path

    from .model_source import resolve, resolve_adapter
    from .server_options import parse_lora_modules

    # Fetch and verify before importing torch, so a bad model fails in a second, not ten.
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    resolved = resolve(args.model, version=args.model_version, cache_dir=cache_dir)
    adapter_sources = parse_lora_modules(args.lora_modules)
    adapter_folders = {name: resolve_adapter(resolved.folder, source, cache_dir)
                       for name, source in adapter_sources.items()}

    from . import data_parallel
    from .engine import ModelInfo
    from .loader import ModelLoadError, declared_context, gpu_count, idle_gpus, load_model
    from .lora import load_adapters
    from .metrics import ServerMetrics
    from .sampling_defaults import read_defaults
    from .serving import OpenAIServing
    from .torch_engine import EngineLimits, TorchEngine

    defaults = read_defaults(resolved.folder, args.generation_config,
                             args.override_generation_config)
    declared = declared_context(resolved.folder)
    if declared is not None:  # a bad --max-model-len fails now, not after a long load
        served_context(declared, args.max_model_len)
    try:
        places = data_parallel.devices(args.data_parallel_size, args.device, gpu_count())
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    copies = [load_model(resolved.folder, task=args.task, device=place, dtype=args.dtype,
                         pack_for_batch=args.max_batch_size if args.pack_weights else None,
                         trust_remote_code=args.trust_remote_code) for place in places]
    loaded = copies[0]
    if args.chat_template is not None:
        for copy in copies:
            copy.tokenizer.chat_template = args.chat_template
        log.info("chats are rendered with the --chat-template given, not the model's")
    name = args.served_model_name or resolved.name
    adapters = [load_adapters(copy.model, copy.task, name, adapter_folders, adapter_sources)
                for copy in copies]
    version = args.model_version or resolved.version or "unversioned"
    info = ModelInfo(name=name, version=version, task=loaded.task,
                     max_context=served_context(loaded.max_context, args.max_model_len))
    limits = EngineLimits(max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                          max_batch_tokens=args.max_batch_tokens,
                          reserve_new_tokens=args.reserve_new_tokens,
                          max_prefill_tokens=prefill_tokens(args.max_prefill_tokens,
                                                            loaded.device.type),
                          prefix_caching=args.prefix_caching,
                          prefix_cache_share=prefix_cache_share(args.prefix_cache_share,
                                                                loaded.device.type),
                          priority_scheduling=args.scheduling_policy == "priority",
                          max_loras=args.max_loras)
    engines = [TorchEngine(copy.model, copy.tokenizer, info, copy.device, limits, own)
               for copy, own in zip(copies, adapters, strict=True)]
    engine = engines[0] if len(engines) == 1 else data_parallel.DataParallelEngine(engines)
    adapters = adapters[0]
    metrics = ServerMetrics(name, version, loaded.task, lambda: engine.num_running,
                            lambda: engine.num_waiting, cache_usage=lambda: engine.cache_usage,
                            cache_tokens=engine.limits.max_batch_tokens,
                            preemptions=lambda: engine.preemptions,
                            prefix_cache=engine.prefixes,
                            max_context=engine.info.max_context,
                            lora_names=tuple(adapters.infos) if adapters is not None else (),
                            lora_in_use=engine.adapters_in_use if adapters is not None
                            else None, max_loras=args.max_loras)
    state.serving = OpenAIServing(engine, metrics, REASONING_PARSERS[args.reasoning_parser],
                                  defaults)
    if defaults.changed():
        log.info("requests that leave them out get %s (the model's generation config, "
                 "--override-generation-config; --generation-config none for OpenAI's)",
                 ", ".join(f"{k} {v}" for k, v in defaults.changed().items()))
    if state.serving.thinks:
        log.info("chat answers: the model's <think> part is returned as `reasoning`")
    places = ", ".join(str(copy.device) for copy in copies)
    log.info("serving %s version %s (%s) on %s, context %d tokens", name, version,
             loaded.task, places, engine.info.max_context)
    if idle := idle_gpus(loaded.device, len(copies)):
        log.warning("torch sees %d more GPUs, which this server leaves idle: it runs the "
                    "model on %s only (--device auto or cuda with --data-parallel-size auto "
                    "puts a copy on each)", idle, places)
    return engine


def _server_class():
    import contextlib
    import signal

    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server with background model loading, a drain on SIGTERM/SIGINT and a
        leave, then a drain, on SIGUSR1."""

        def __init__(self, config, state, args):
            super().__init__(config)
            self.state = state
            self.args = args
            self.engine = None
            self.failure: str | None = None
            self._loop = None
            self._stop_signals = 0

        @contextlib.contextmanager
        def capture_signals(self):
            # SIGUSR1 (leave, then drain) beside uvicorn's SIGTERM and SIGINT; without a
            # handler it would end the process, or do nothing at all as a container's PID 1
            with super().capture_signals():
                if threading.current_thread() is not threading.main_thread():
                    yield  # (only the main thread may set handlers, as uvicorn's)
                    return
                previous = signal.signal(signal.SIGUSR1, self.handle_leave)
                try:
                    yield
                finally:
                    signal.signal(signal.SIGUSR1, previous)

        async def serve(self, sockets=None) -> None:
            import asyncio

            self._loop = asyncio.get_running_loop()
            # Torch work stays off the event loop's thread, and the loader thread exits, so
            # the engine's is the only OpenMP team. A second live team makes libgomp see more
            # threads than cores and cut its spinning to 1 000 turns: prefill and decode
            # steps ran ~40 % slower side by side (a team outlives a thread's torch calls).
            threading.Thread(target=self._load_in_background, name="llmcloud-loader",
                             daemon=True).start()
            await super().serve(sockets)

        def _load_in_background(self) -> None:
            try:
                self.engine = _load(self.args, self.state)
                self.engine.on_dead = self._engine_died
            except Exception as exc:  # any load failure must stop the process with its reason
                log.error("cannot start: %s", exc)
                self.failure = str(exc)
                self.should_exit = True

        def _engine_died(self, reason: str) -> None:
            # A server whose model no longer runs only fails requests while its health
            # checks still pass; exiting non-zero lets its supervisor (docker's restart
            # policy, the local provider's) start a fresh process on a fresh device.
            self.failure = f"the engine stopped: {reason}"
            self.should_exit = True

        def handle_exit(self, sig, frame) -> None:
            # Not calling super(): uvicorn would stop at once and re-raise the signal at exit,
            # which turns a clean drain into a non-zero exit status.
            self._stop_signals += 1
            if self._stop_signals > 1:
                self.should_exit = True
                self.force_exit = True
                return
            # the first stop ends a leave early; a drain the leave already began goes on
            self._begin_drain()

        def handle_leave(self, sig, frame) -> None:
            """SIGUSR1: leave the balancer before draining, for a server the balancer did
            not drain (a reclaimed spot VM): readiness turns 503 at once, so its checks
            fail, but new requests are still served until it has stopped sending them."""
            if self.state.leaving or self.state.draining:
                return
            self.state.leaving = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._start_leave)
            else:
                self._begin_drain()

        def _begin_drain(self) -> None:
            if self.state.draining:
                return
            self.state.draining = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._start_drain)
            else:
                self.should_exit = True

        def _start_leave(self) -> None:
            import asyncio

            asyncio.ensure_future(self._leave())

        async def _leave(self) -> None:
            import asyncio

            log.info("leaving: readiness is now 503; serving new requests for %.1fs more, "
                     "then draining", self.args.leave_seconds)
            await asyncio.sleep(self.args.leave_seconds)
            self._begin_drain()

        def _start_drain(self) -> None:
            import asyncio

            asyncio.ensure_future(self._drain())

        async def _drain(self) -> None:
            import asyncio
            import time

            serving = self.state.serving
            timeout = self.args.drain_timeout
            log.info("draining: readiness is now 503; waiting up to %.1fs for %d requests",
                     timeout, serving.busy if serving else 0)
            self._close_kept_connections()
            if serving is not None:
                deadline = time.monotonic() + timeout
                while serving.busy and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if serving.busy:
                    log.warning("drain timeout: ending %d requests", serving.busy)
                    serving.engine.abort_all(
                        f"the server is shutting down (drain timeout of {timeout:g}s reached)")
                    deadline = time.monotonic() + ABORT_WAIT_S
                    while serving.in_flight and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)
            self.should_exit = True

        def _close_kept_connections(self) -> None:
            # A layer-4 balancer (Azure's) keeps sending on a connection it already holds
            # after the probe marks the server down, and a pool in front (API Management's)
            # reuses it: each such request would get "draining". Closed, idle ones now and
            # busy ones after their response, they make the pool reconnect to a ready server.
            for connection in list(self.server_state.connections):
                connection.shutdown()


    return _Server


if __name__ == "__main__":
    run()
