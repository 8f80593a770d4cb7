"""``llmcloud-server``'s command line: its flags, their ``LLMCLOUD_*`` variables (SageMaker
passes settings that way; a flag wins) and their defaults. Only argparse is imported."""

from __future__ import annotations

import argparse
import json
import os

# --reasoning-parser's choices, with the names vLLM's command lines use for <think> models.
REASONING_PARSERS = {"auto": "auto", "think": "think", "none": "none",
                     "deepseek_r1": "think", "qwen3": "think"}


#: requests allowed to wait for a batch slot before the server answers 429
DEFAULT_MAX_QUEUE = 256

#: every ``LLMCLOUD_*`` variable the server reads: ``build_parser``'s, and where bucket and
#: hub models are downloaded (``model_source``). Others in its environment are said at start
#: (``unread_variables``); a test keeps this list and the code's reads the same.
VARIABLES = frozenset({
    "LLMCLOUD_MODEL", "LLMCLOUD_MODEL_VERSION", "LLMCLOUD_MODEL_NAME", "LLMCLOUD_TASK",
    "LLMCLOUD_LORA_MODULES", "LLMCLOUD_MAX_LORAS", "LLMCLOUD_PORT",
    "LLMCLOUD_DATA_PARALLEL_SIZE", "LLMCLOUD_DTYPE", "LLMCLOUD_MAX_BATCH_SIZE",
    "LLMCLOUD_MAX_MODEL_LEN", "LLMCLOUD_SCHEDULING_POLICY", "LLMCLOUD_MAX_BATCH_TOKENS",
    "LLMCLOUD_RESERVE_NEW_TOKENS", "LLMCLOUD_MAX_PREFILL_TOKENS", "LLMCLOUD_PREFIX_CACHING",
    "LLMCLOUD_PREFIX_CACHE_SHARE", "LLMCLOUD_DRAIN_TIMEOUT_SECONDS", "LLMCLOUD_LEAVE_SECONDS",
    "LLMCLOUD_KEEP_ALIVE_TIMEOUT_SECONDS", "LLMCLOUD_ALLOWED_ORIGINS",
    "LLMCLOUD_MAX_BODY_BYTES", "LLMCLOUD_STRIP_PATH_PREFIX", "LLMCLOUD_REASONING_PARSER",
    "LLMCLOUD_TRUST_REMOTE_CODE", "LLMCLOUD_CHAT_TEMPLATE", "LLMCLOUD_GENERATION_CONFIG",
    "LLMCLOUD_OVERRIDE_GENERATION_CONFIG", "LLMCLOUD_LOG_FORMAT", "LLMCLOUD_MODEL_CACHE",
})


def server_version() -> str:
    """The llmcloud release this server is installed from (`unknown` outside a package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmcloud")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``llmcloud-server``."""
    p = argparse.ArgumentParser(
        prog="llmcloud-server",
        description="Serve a transformers model behind an OpenAI-compatible HTTP API.",
    )
    env = os.environ  # LLMCLOUD_* set defaults (SageMaker passes settings this way); flags win
    p.add_argument("--version", action="version", version=f"%(prog)s {server_version()}",
                   help="print the llmcloud release this server is from, and exit")
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
    p.add_argument("--lora-modules", nargs="+", metavar="NAME=SRC",
                   # whole: parse_lora_modules splits it (a JSON object keeps its spaces)
                   default=[env["LLMCLOUD_LORA_MODULES"]]
                   if env.get("LLMCLOUD_LORA_MODULES", "").strip() else None,
                   help="LoRA adapters (PEFT folders: local, s3://, gs://, az:// or a hub "
                        "id) served beside the model, each under its own name: a request "
                        "whose `model` is NAME runs with that adapter; requests of every "
                        "adapter and of the model share each batch (vLLM's; causal models; "
                        "also a JSON object with \"name\" and \"path\")")
    p.add_argument("--max-loras", type=_count_or("all"), metavar="N|all",
                   default=env.get("LLMCLOUD_MAX_LORAS", "all"),
                   help="LoRA adapters a batch may hold at once; a request of one more "
                        "adapter waits until one of them has no request running (the model's "
                        "own requests go by it meanwhile): each adapter in a batch costs "
                        "every row of it time (vLLM's; default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=_port, default=env.get("LLMCLOUD_PORT", 8080),
                   help="port (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-parallel-size", type=_count_or("auto"), metavar="N|auto",
                   default=env.get("LLMCLOUD_DATA_PARALLEL_SIZE", "auto"),
                   help="copies of the model, one per GPU, each with its own engine, behind "
                        "this one server; a request goes to one of them (vLLM's); auto: one "
                        "per GPU torch sees when --device is auto or cuda, else one "
                        "(default: %(default)s)")
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
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                   help="requests allowed to wait for a slot; more get 429 "
                        "(default: %(default)s)")
    p.add_argument("--scheduling-policy", choices=["fcfs", "priority"],
                   default=env.get("LLMCLOUD_SCHEDULING_POLICY", "fcfs"),
                   help="fcfs: requests are served in the order they came (those that "
                        "came during one engine step, shortest prompt first); priority: by "
                        "their `priority` field (lower values sooner, vLLM's), and running "
                        "requests of a higher value give way to a waiting one that has no "
                        "room (default: %(default)s)")
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
                   help="prompt tokens prefilled per engine step, padding included (longer "
                        "prompts by chunks, running requests decoding in between); smaller "
                        "steps give earlier first tokens under bursts and shorter stalls, "
                        "larger ones more throughput on big GPUs; auto: 512 on CPU, 2048 on "
                        "a GPU (default: %(default)s)")
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
    p.add_argument("--leave-seconds", type=float,
                   default=env.get("LLMCLOUD_LEAVE_SECONDS", 15.0),
                   help="after SIGUSR1, seconds the server keeps serving new requests while "
                        "readiness is 503, so that a load balancer that has not drained it "
                        "(a spot reclaim, a preemption) sees its checks fail and stops "
                        "sending before requests are refused; then it drains as on SIGTERM, "
                        "which also ends the leave early (default: %(default)s)")
    p.add_argument("--keep-alive-timeout", type=float,
                   default=env.get("LLMCLOUD_KEEP_ALIVE_TIMEOUT_SECONDS", 75.0),
                   help="seconds an idle connection stays open; keep it above the idle timeout "
                        "of the load balancer in front, or it races the balancer reusing the "
                        "connection and clients see 502s (default: %(default)s)")
    p.add_argument("--api-keys-file", metavar="PATH",
                   help="require `Authorization: Bearer <key>`; one sha256:<hex> line per key")
    p.add_argument("--allowed-origins", action=_AppendReplacingDefault,
                   metavar="ORIGIN[,ORIGIN...]",
                   default=[env["LLMCLOUD_ALLOWED_ORIGINS"]]
                   if env.get("LLMCLOUD_ALLOWED_ORIGINS", "").strip() else [],
                   help="answer browsers' cross-origin requests (CORS) from these origins, "
                        "e.g. https://app.example.com (scheme, host and port, no path), or "
                        "* for any; comma-separated or repeated (default: none, browsers "
                        "on other sites cannot call the server)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where bucket and hub models are downloaded "
                        "(default: $LLMCLOUD_MODEL_CACHE or ~/.cache/llmcloud/models)")
    p.add_argument("--max-body-bytes", type=int,
                   default=env.get("LLMCLOUD_MAX_BODY_BYTES", 4 * 1024 * 1024),
                   help="larger request bodies get 413 (default: %(default)s)")
    p.add_argument("--strip-path-prefix", metavar="PREFIX", type=_path_prefix,
                   default=env.get("LLMCLOUD_STRIP_PATH_PREFIX") or None,
                   help="also serve every route under PREFIX (e.g. /api: /api/v1/models as "
                        "/v1/models), for a proxy that puts it before the path, as API "
                        "Gateway's private integrations may with their stage")
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


class _AppendReplacingDefault(argparse.Action):
    """argparse's ``append``, but the flag's first value replaces the default (from an
    ``LLMCLOUD_*`` variable) instead of adding to it: a flag wins."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if given is self.default else given), values])


def parse_allowed_origins(values: list[str]) -> list[str]:
    """``--allowed-origins`` values (each one or more origins, comma-separated) as the
    origins browsers send in ``Origin``: ``scheme://host[:port]`` in lower case, without a
    scheme's default port, or ``*``. ValueError says which value is wrong."""
    from urllib.parse import urlsplit

    origins: list[str] = []
    for value in values:
        parts = [part.strip() for part in value.split(",")]
        if not any(parts):
            raise ValueError(f"expected one or more origins, got {value!r}")
        for part in filter(None, parts):
            if part == "*":
                origins.append(part)
                continue
            try:
                url = urlsplit(part)
                port = url.port
            except ValueError:
                url, port = None, None
            if "*" in part:
                raise ValueError(f"an origin has no wildcard but * alone: list each one, "
                                 f"got {part!r}")
            if url is None or not url.scheme or not url.hostname:
                raise ValueError(f"expected an origin such as https://app.example.com, or "
                                 f"*, got {part!r}")
            if url.path or url.query or url.fragment or part.endswith(("?", "#")):
                raise ValueError(f"an origin has no path: {part!r} never matches what a "
                                 f"browser sends (try {url.scheme}://{url.netloc})")
            if url.username is not None or url.password is not None:
                raise ValueError(f"an origin has no user name or password, got {part!r}")
            scheme, host = url.scheme.lower(), url.hostname  # (urlsplit lowers the host)
            if ":" in host:
                host = f"[{host}]"  # an IPv6 address
            if port is not None and _DEFAULT_PORTS.get(scheme) != port:
                host = f"{host}:{port}"
            origins.append(f"{scheme}://{host}")
    return list(dict.fromkeys(origins))


#: the ports a browser leaves out of an origin
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def _port(value: str) -> int:
    """An argparse type: a TCP port. Checked here: the socket layer takes 70000 as 4464,
    so a server would listen where nobody looks while its log says 70000."""
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value!r}")
    return port


def _path_prefix(value: str) -> str:
    """An argparse type: a path prefix such as /api."""
    from .path_prefix import check_prefix

    try:
        return check_prefix(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def _count_or(word: str):
    """An argparse type: a number of at least 1, or ``word`` (given as None)."""
    number_or_word = _int_or(word)

    def parse(value: str) -> int | None:
        number = number_or_word(value)
        if number is not None and number < 1:
            raise argparse.ArgumentTypeError(
                f"expected {word!r} or a number of at least 1, got {value!r}")
        return number

    return parse


def parse_lora_modules(values: list[str] | None) -> dict[str, str]:
    """``--lora-modules`` values as {name: source}. A value is ``name=source``, several of
    them separated by spaces (as its variable and the spec give them), or vLLM's JSON
    object with ``name`` and ``path``; ValueError says which value is wrong."""
    values = [part for value in values or () for part in (
        [value] if value.lstrip().startswith("{") else value.split())]
    modules: dict[str, str] = {}
    for value in values:
        value = value.strip()
        if value.startswith("{"):
            try:
                given = json.loads(value)
                name, source = str(given["name"]), str(given["path"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"expected a JSON object with \"name\" and \"path\", got "
                                 f"{value!r}") from None
        else:
            name, sep, source = value.partition("=")
            if not sep:
                raise ValueError(f"expected name=source, got {value!r}")
        name, source = name.strip(), source.strip()
        if not name or not source or any(c.isspace() for c in name):
            raise ValueError(f"expected name=source with a name without spaces, got "
                             f"{value!r}")
        if name in modules:
            raise ValueError(f"the adapter name {name!r} is given twice")
        modules[name] = source
    return modules
