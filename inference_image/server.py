"""``llmcloud-server``: the command line, model loading in the background, graceful drain.

The HTTP server listens at once (liveness answers, readiness is 503 until the model is
loaded). On SIGTERM readiness turns 503, in-flight requests get ``--drain-timeout``
seconds to finish, streams still open then end with an error event and ``[DONE]``, and the
process exits 0. Only argparse is imported until the command line is parsed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

log = logging.getLogger("llmcloud.server")

# --reasoning-parser's choices, with the names vLLM's command lines use for <think> models.
REASONING_PARSERS = {"auto": "auto", "think": "think", "none": "none",
                     "deepseek_r1": "think", "qwen3": "think"}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``llmcloud-server``."""
    p = argparse.ArgumentParser(
        prog="llmcloud-server",
        description="Serve a transformers model behind an OpenAI-compatible HTTP API.",
    )
    env = os.environ  # LLMCLOUD_* set defaults (SageMaker passes settings this way); flags win
    p.add_argument("serve", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    p.add_argument("--model", required="LLMCLOUD_MODEL" not in env,
                   default=env.get("LLMCLOUD_MODEL"), metavar="SRC",
                   help="local folder, s3://, gs:// or az:// folder written by "
                        "`llmcloud model upload`, or a Hugging Face hub id")
    p.add_argument("--model-version", metavar="V", default=env.get("LLMCLOUD_MODEL_VERSION"),
                   help="version to serve; must match the manifest when there is one")
    p.add_argument("--served-model-name", metavar="NAME",
                   default=env.get("LLMCLOUD_MODEL_NAME"),
                   help="name clients pass as `model` (default: manifest name or folder name)")
    p.add_argument("--task", choices=["text-generation", "text2text-generation"],
                   default=env.get("LLMCLOUD_TASK"),
                   help="default: from the model config (is_encoder_decoder)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=env.get("LLMCLOUD_PORT", 8080),
                   help="port (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default=env.get("LLMCLOUD_DTYPE", "auto"),
                   help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, float16, bfloat16")
    p.add_argument("--max-batch-size", type=int, default=env.get("LLMCLOUD_MAX_BATCH_SIZE", 32),
                   help="requests decoded together (default: %(default)s)")
    p.add_argument("--pack-weights", action=argparse.BooleanOptionalAction, default=True,
                   help="on CPU, pack float32 linear weights for oneDNN: faster decoding, but "
                        "each server process holds its own copy of them instead of sharing "
                        "the model file's pages (default: on)")
    p.add_argument("--max-model-len", type=int, metavar="N",
                   default=env.get("LLMCLOUD_MAX_MODEL_LEN"),
                   help="the longest prompt plus answer served, below the model's own "
                        "context: a long-context model then needs less KV-cache memory per "
                        "request (default: the model's context)")
    p.add_argument("--max-queue", type=int, default=256,
                   help="requests allowed to wait for a slot; more get 429 "
                        "(default: %(default)s)")
    p.add_argument("--max-batch-tokens", type=_int_or("auto"),
                   default=env.get("LLMCLOUD_MAX_BATCH_TOKENS", "auto"),
                   help="KV-cache positions the running batch may hold (its rows padded "
                        "to the longest); auto sizes it from the memory left after loading: "
                        "80%% of the GPU's free memory, 50%% of the host's available memory "
                        "on CPU (default: %(default)s)")
    p.add_argument("--reserve-new-tokens", type=_int_or("all"), metavar="N|all",
                   default=env.get("LLMCLOUD_RESERVE_NEW_TOKENS", "256"),
                   help="a request is admitted only if the cache keeps room for every "
                        "running request's next N tokens; requests that outgrow it later "
                        "are preempted and resumed. 'all': room for each one's whole "
                        "max_tokens, never preempted, fewer requests at once "
                        "(default: %(default)s)")
    p.add_argument("--max-prefill-tokens", type=_int_or("auto"),
                   default=env.get("LLMCLOUD_MAX_PREFILL_TOKENS", "auto"),
                   help="prompt tokens prefilled per engine step (longer prompts by chunks, "
                        "running requests decoding in between); smaller steps give earlier "
                        "first tokens under bursts and shorter stalls, larger ones more "
                        "throughput on big GPUs; auto: 512 on CPU, 2048 on a GPU "
                        "(default: %(default)s)")
    p.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction,
                   default=env.get("LLMCLOUD_PREFIX_CACHING", "1") not in ("0", "false", "off"),
                   help="keep the states of prompt beginnings in free KV-cache room, so "
                        "prompts that start alike (a system prompt, earlier turns) prefill "
                        "only the rest; given back whenever requests need the room "
                        "(causal models; default: on)")
    p.add_argument("--prefix-cache-share", type=_share, metavar="F|auto",
                   default=env.get("LLMCLOUD_PREFIX_CACHE_SHARE", "auto"),
                   help="the share (0 to 1) of the KV cache's positions kept prompt "
                        "beginnings may hold (0: no prefix caching); auto: all the free room "
                        "on a GPU, whose memory the server holds anyway; on CPU, where it is "
                        "memory an idle server would otherwise give back, as much as one "
                        "request of the whole context (default: %(default)s)")
    p.add_argument("--drain-timeout", type=float,
                   default=env.get("LLMCLOUD_DRAIN_TIMEOUT_SECONDS", 30.0),
                   help="seconds in-flight requests get after SIGTERM (default: %(default)s)")
    p.add_argument("--keep-alive-timeout", type=float,
                   default=env.get("LLMCLOUD_KEEP_ALIVE_TIMEOUT_SECONDS", 75.0),
                   help="seconds an idle connection stays open; keep it above the idle timeout "
                        "of the load balancer in front, or it races the balancer reusing the "
                        "connection and clients see 502s (default: %(default)s)")
    p.add_argument("--api-keys-file", metavar="PATH",
                   help="require `Authorization: Bearer <key>`; one sha256:<hex> line per key")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where bucket and hub models are downloaded "
                        "(default: $LLMCLOUD_MODEL_CACHE or ~/.cache/llmcloud/models)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024,
                   help="larger request bodies get 413 (default: %(default)s)")
    p.add_argument("--reasoning-parser", choices=REASONING_PARSERS,
                   default=env.get("LLMCLOUD_REASONING_PARSER", "auto"),
                   help="split a reasoning model's <think>...</think> from its chat answers "
                        "into `reasoning`: auto when the model's vocabulary and template have "
                        "the markers; think always; none never; vLLM's deepseek_r1 and qwen3 "
                        "are think (default: %(default)s)")
    p.add_argument("--trust-remote-code", action="store_true",
                   default=env.get("LLMCLOUD_TRUST_REMOTE_CODE", "0") in ("1", "true"),
                   help="load a model whose architecture is Python code in its folder "
                        "(config.json's auto_map): that code runs in the server, so give "
                        "it only for models whose files you trust (a manifest pins them)")
    p.add_argument("--chat-template", metavar="PATH|TEMPLATE",
                   default=env.get("LLMCLOUD_CHAT_TEMPLATE"),
                   help="the Jinja chat template to render chats with, instead of the "
                        "model's (or for a model without one): a file, or the template "
                        "itself")
    p.add_argument("--generation-config", metavar="auto|none|FOLDER",
                   default=env.get("LLMCLOUD_GENERATION_CONFIG", "auto"),
                   help="sampling defaults for requests that leave them out: auto takes the "
                        "model creator's from its generation_config.json (temperature, "
                        "top_p, top_k, min_p, repetition_penalty, max_new_tokens), as vLLM "
                        "and transformers serve do; none (or vLLM's vllm) keeps OpenAI's; or "
                        "a folder with a generation_config.json (default: %(default)s)")
    p.add_argument("--override-generation-config", metavar="JSON",
                   default=env.get("LLMCLOUD_OVERRIDE_GENERATION_CONFIG"),
                   help="defaults that win over the generation config's, as a JSON object "
                        "of the same keys, e.g. '{\"temperature\": 0.5}'")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"],
                   default=env.get("LLMCLOUD_LOG_FORMAT", "text"),
                   help="text lines, or one JSON object a line with each request's counts "
                        "and timings as fields, for log pipelines (default: %(default)s)")
    return p


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


def _share(value: str) -> float | None:
    """An argparse type: a share from 0 to 1, or ``auto`` (given as None)."""
    if value == "auto":
        return None
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a share from 0 to 1, got "
                                         f"{value!r}")
    return share


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


def _int_or(word: str):
    """An argparse type: a number, or ``word`` (given as None)."""

    def parse(value: str) -> int | None:
        if value == word:
            return None
        try:
            return int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {word!r} or a number, got {value!r}") from None

    return parse


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``llmcloud-server`` console script."""
    args = build_parser().parse_args(argv)
    from .log_format import configure as configure_logging

    configure_logging(args.log_level, args.log_format, os.environ)
    for name, value in (("--max-batch-size", args.max_batch_size),
                        ("--max-queue", args.max_queue),
                        ("--max-batch-tokens", args.max_batch_tokens),
                        ("--reserve-new-tokens", args.reserve_new_tokens),
                        ("--max-prefill-tokens", args.max_prefill_tokens),
                        ("--max-model-len", args.max_model_len)):
        if value is not None and value < 1:
            sys.exit(f"error: {name} must be at least 1")
    if args.keep_alive_timeout <= 0:
        sys.exit("error: --keep-alive-timeout must be more than 0 seconds")
    from .chat_prompt import ChatTemplateError, read_template
    from .sampling_defaults import SamplingDefaultsError, parse_override

    try:  # a typo here should stop the server now, not after the model has loaded
        args.override_generation_config = parse_override(args.override_generation_config)
        if args.chat_template is not None:
            args.chat_template = read_template(args.chat_template)
    except (SamplingDefaultsError, ChatTemplateError) as exc:
        sys.exit(f"error: {exc}")
    set_cpu_waits(os.environ)  # before torch is imported: OpenMP reads it when it loads

    from .api_keys import ApiKeys
    from .router import ServerState, create_app

    api_keys = None
    if args.api_keys_file:
        try:
            api_keys = ApiKeys.from_file(args.api_keys_file)
        except (OSError, ValueError) as exc:
            sys.exit(f"error: cannot read --api-keys-file: {exc}")
    state = ServerState(api_keys=api_keys)
    app = create_app(state, max_body_bytes=args.max_body_bytes)
    config = uvicorn_config(args, app)
    server = _server_class()(config, state, args)
    server.run()
    if server.engine is not None:
        server.engine.shutdown()
    if server.failure:
        if args.log_format == "json":  # the last line a log pipeline reads is JSON too
            log.critical("error: %s", server.failure)
            sys.exit(1)
        sys.exit(f"error: {server.failure}")


def uvicorn_config(args, app):
    """uvicorn's settings for the parsed arguments (no access log: the server logs a line per
    request of its own)."""
    import uvicorn

    # In JSON, uvicorn's loggers install no text handlers of their own: the root's writes them.
    own_config = {} if args.log_format == "text" else {"log_config": None}
    return uvicorn.Config(app, host=args.host, port=args.port, lifespan="off",
                          log_level=args.log_level, timeout_graceful_shutdown=5,
                          timeout_keep_alive=args.keep_alive_timeout, access_log=False,
                          **own_config)


def _load(args, state) -> object:
    """Resolve, verify and load the model, then publish the serving layer on ``state``."""
    from pathlib import Path

    from .model_source import resolve

    # Fetch and verify before importing torch, so a bad model fails in a second, not ten.
    resolved = resolve(args.model, version=args.model_version,
                       cache_dir=Path(args.cache_dir) if args.cache_dir else None)

    from .engine import ModelInfo
    from .loader import declared_context, load_model
    from .metrics import ServerMetrics
    from .sampling_defaults import read_defaults
    from .serving import OpenAIServing
    from .torch_engine import EngineLimits, TorchEngine

    defaults = read_defaults(resolved.folder, args.generation_config,
                             args.override_generation_config)
    declared = declared_context(resolved.folder)
    if declared is not None:  # a bad --max-model-len fails now, not after a long load
        served_context(declared, args.max_model_len)
    loaded = load_model(resolved.folder, task=args.task, device=args.device, dtype=args.dtype,
                        pack_for_batch=args.max_batch_size if args.pack_weights else None,
                        trust_remote_code=args.trust_remote_code)
    if args.chat_template is not None:
        loaded.tokenizer.chat_template = args.chat_template
        log.info("chats are rendered with the --chat-template given, not the model's")
    name = args.served_model_name or resolved.name
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
                                                                loaded.device.type))
    engine = TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device, limits)
    metrics = ServerMetrics(name, version, loaded.task, lambda: engine.num_running,
                            lambda: engine.num_waiting, cache_usage=lambda: engine.cache_usage,
                            cache_tokens=engine.limits.max_batch_tokens,
                            preemptions=lambda: engine.preemptions,
                            prefix_cache=engine.prefixes,
                            max_context=engine.info.max_context)
    state.serving = OpenAIServing(engine, metrics, REASONING_PARSERS[args.reasoning_parser],
                                  defaults)
    if defaults.changed():
        log.info("requests that leave them out get %s (the model's generation config, "
                 "--override-generation-config; --generation-config none for OpenAI's)",
                 ", ".join(f"{k} {v}" for k, v in defaults.changed().items()))
    if state.serving.thinks:
        log.info("chat answers: the model's <think> part is returned as `reasoning`")
    log.info("serving %s version %s (%s) on %s, context %d tokens", name, version,
             loaded.task, loaded.device, engine.info.max_context)
    return engine


def _server_class():
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server with background model loading and a drain on SIGTERM/SIGINT."""

        def __init__(self, config, state, args):
            super().__init__(config)
            self.state = state
            self.args = args
            self.engine = None
            self.failure: str | None = None
            self._loop = None

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
            if self.state.draining:
                self.should_exit = True
                self.force_exit = True
                return
            self.state.draining = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._start_drain)
            else:
                self.should_exit = True

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
            if serving is not None:
                deadline = time.monotonic() + timeout
                while serving.busy and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if serving.busy:
                    log.warning("drain timeout: ending %d requests", serving.busy)
                    serving.engine.abort_all(
                        f"the server is shutting down (drain timeout of {timeout:g}s reached)")
                    deadline = time.monotonic() + 5
                    while serving.in_flight and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)
            self.should_exit = True


    return _Server


if __name__ == "__main__":
    run()
