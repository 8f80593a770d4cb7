"""Runtime benchmark: llmcloud-server vs `transformers serve --continuous-batching` vs a
static batch through model.generate, on one machine, one run, the same generated model.

    python bench/runtime_bench.py [--requests 16] [--prompt-tokens 64] [--new-tokens 64]
    python bench/runtime_bench.py --device cuda        # a GPU machine: the ~1.1B model

The model is a Llama with random weights and a word-level tokenizer, built here (nothing is
downloaded): ~30M parameters in float32 on CPU, TinyLlama's shape (~1.1B) in bfloat16 on
CUDA. Every request streams; each server gets one warm-up request first. Torch uses 2 CPU
threads everywhere. Prints tokens/s (wall clock, and per CPU-second of the serving
process), TTFT p50/p90, inter-token p50, peak RSS of the serving process (on CUDA also the
GPU memory each run holds), and the ratios against the goals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREADS = "2"
OURS, PEER, STATIC = "llmcloud-server", "transformers serve --cb", "static batch (generate)"
VOCAB = 12000  # the words prompts are made of; every model's vocabulary has them
SIZES = {
    "30m": dict(vocab_size=VOCAB, hidden_size=512, intermediate_size=1376, num_hidden_layers=6,
                num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024),
    # TinyLlama-1.1B's shape
    "1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
               num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
               max_position_embeddings=2048),
}
# Every run gets the same environment. How OpenMP workers wait is left to each run's own
# default unless --omp-wait-policy passive gives all of them passive waits.
ENV = {**os.environ, "OMP_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS,
       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
for _name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
    ENV.pop(_name, None)


def build_model(folder: Path, size: str = "30m", device: str = "cpu") -> None:
    """A Llama-style model of ``size`` (SIZES), random weights, word-level tokenizer; made
    on ``device`` and saved in float32 for CPU, bfloat16 for CUDA."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shape = SIZES[size]
    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    words = [f"w{i}" for i in range(shape["vocab_size"] - 4)]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                        eos_token="</s>", unk_token="<unk>", bos_token="<s>")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}")
    torch.manual_seed(0)
    config = LlamaConfig(**shape, pad_token_id=0, eos_token_id=1, bos_token_id=3,
                         tie_word_embeddings=False)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(model_dtype(device))
    with torch.no_grad():
        # A zero output row never wins the argmax: every request runs to its max_tokens.
        model.lm_head.weight[1].zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f}M parameters in {folder}", file=sys.stderr)


def model_dtype(device: str):
    """What each run computes in: float32 on CPU, bfloat16 on CUDA (the servers' defaults)."""
    import torch

    return torch.bfloat16 if device == "cuda" else torch.float32


def prompts(n: int, length: int, batch: int = 0) -> list[str]:
    """``n`` different prompts of ``length`` words (one token each); another ``batch``
    number gives ``n`` others, so no round repeats an earlier round's prompts (a server
    with a prefix cache would find their beginnings kept)."""
    start = batch * n * 131 + (0 if batch >= 0 else 5)
    return [" ".join(f"w{(start + r * 131 + i * 7) % (VOCAB - 4)}" for i in range(length))
            for r in range(n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    """Peak resident set (VmHWM) of a live process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def streamed_texts(client, url: str, body: dict):
    """The text of each chunk of a streamed completion, as it comes (raises on an HTTP
    error or an error event). Close it (``contextlib.aclosing``) to leave early."""
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            for choice in chunk.get("choices", []):
                text = choice.get("text") or (choice.get("delta") or {}).get("content")
                if text:
                    yield text


async def one_stream(client, url: str, body: dict) -> dict:
    started = time.perf_counter()
    stamps: list[float] = []
    async for text in streamed_texts(client, url, body):
        # A chunk can carry more than one token when the client lags.
        stamps.extend([time.perf_counter()] * max(1, len(text.split())))
    return {"started": started, "stamps": stamps}


async def load_test(base: str, model: str, texts: list[str], new_tokens: int) -> dict:
    import httpx

    url = f"{base}/v1/completions"

    def body(prompt: str) -> dict:
        # No ignore_eos: the peer rejects unknown fields, and the model's EOS cannot win.
        return {"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0,
                "stream": True}

    limits = httpx.Limits(max_connections=len(texts) + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        warm_up = prompts(1, len(texts[0].split()), batch=-1)[0]  # none of the measured
        await one_stream(client, url, body(warm_up))
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, url, body(t)) for t in texts))
        wall = time.perf_counter() - started
    tokens = sum(len(r["stamps"]) for r in results)
    ttft = [r["stamps"][0] - r["started"] for r in results if r["stamps"]]
    itl = [b - a for r in results for a, b in zip(r["stamps"], r["stamps"][1:], strict=False)]
    return {"tokens": tokens, "wall": wall, "tok_s": tokens / wall,
            "ttft_p50": _pct(ttft, 50), "ttft_p90": _pct(ttft, 90), "itl_p50": _pct(itl, 50)}


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def gpu_mib(pid: int) -> float:
    """GPU memory a process holds now (nvidia-smi), MiB; NaN where that cannot be read."""
    try:
        table = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                "--format=csv,noheader,nounits"], capture_output=True,
                               text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return float("nan")
    used = [float(fields[1]) for line in table.splitlines()
            if len(fields := line.split(",")) == 2 and fields[0].strip() == str(pid)]
    return sum(used) if used else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process under test; measured with ``load_test`` while it runs."""

    def __init__(self, name: str, command: list[str], ready_path: str, port: int,
                 model: str, log: Path, on_gpu: bool = False):
        self.name, self.port, self.model, self.on_gpu = name, port, model, on_gpu
        with open(log, "w") as out:
            self.proc = subprocess.Popen(command, env=ENV, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{port}{ready_path}", self.proc)

    def measure(self, texts: list[str], new_tokens: int) -> dict:
        cpu = cpu_seconds(self.proc.pid)
        result = asyncio.run(load_test(f"http://127.0.0.1:{self.port}", self.model, texts,
                                       new_tokens))
        result["cpu_s"] = cpu_seconds(self.proc.pid) - cpu
        result["rss_mib"] = peak_rss_mib(self.proc.pid)
        if self.on_gpu:
            result["gpu_mib"] = gpu_mib(self.proc.pid)
        return result

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def static_batch(folder: str, n: int, prompt_tokens: int, new_tokens: int,
                 device: str = "cpu") -> None:
    """Child mode: one model.generate over the whole batch; prints JSON."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(int(THREADS))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=model_dtype(device))
    model = model.to(device).eval()
    batch = tokenizer(prompts(n, prompt_tokens), return_tensors="pt", padding=True).to(device)
    warm_up = tokenizer(prompts(1, prompt_tokens), return_tensors="pt").to(device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=0)
    on_gpu = device == "cuda"
    with torch.inference_mode():
        model.generate(**warm_up, **kwargs)
        if on_gpu:
            torch.cuda.synchronize()
        started, cpu = time.perf_counter(), time.process_time()
        out = model.generate(**batch, **kwargs)
        if on_gpu:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    tokens = (out.shape[1] - batch["input_ids"].shape[1]) * n
    result = {"tokens": tokens, "wall": wall, "tok_s": tokens / wall, "cpu_s": cpu,
              "rss_mib": peak_rss_mib(os.getpid())}
    if on_gpu:
        result["gpu_mib"] = torch.cuda.max_memory_reserved() / 2**20
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where all three runs compute (default: cpu)")
    parser.add_argument("--model-size", choices=sorted(SIZES),
                        help="the generated model (default: 30m on cpu, 1b on cuda)")
    parser.add_argument("--static-child", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=6,
                        help="interleaved rounds; each run keeps its best (default: 6)")
    parser.add_argument("--omp-wait-policy", choices=["as-shipped", "passive"],
                        default="as-shipped",
                        help="as-shipped: OpenMP settings unset, each run waits as it does by "
                             "default (the peer and the static batch spin, llmcloud-server "
                             "spins 100 000 times then sleeps); passive: "
                             "OMP_WAIT_POLICY=PASSIVE for every run (default: as-shipped)")
    parser.add_argument("--keep", action="store_true", help="keep the model folder")
    args = parser.parse_args()
    if args.omp_wait_policy == "passive":
        ENV["OMP_WAIT_POLICY"] = "PASSIVE"
    if args.static_child:
        static_batch(args.static_child, args.requests, args.prompt_tokens, args.new_tokens,
                     args.device)
        return
    args.model_size = args.model_size or ("1b" if args.device == "cuda" else "30m")
    on_gpu = args.device == "cuda"

    work = Path(tempfile.mkdtemp(prefix="llmcloud-bench-"))
    folder = work / "bench-llama"
    build_model(folder, args.model_size, args.device)
    port = free_port()
    servers = [Server(OURS,
                      [sys.executable, "-m", "llmcloud.inference_image.server", "--model",
                       str(folder), "--served-model-name", "bench", "--port", str(port),
                       "--device", args.device, "--max-batch-size", str(args.requests),
                       "--log-level", "warning"],
                      "/health/ready", port, "bench", work / "llmcloud.log", on_gpu)]
    transformers_cli = shutil.which("transformers")
    if transformers_cli is None:
        print("peer skipped: the `transformers` CLI is not installed", file=sys.stderr)
    else:
        port = free_port()
        try:
            servers.append(Server(
                PEER,
                [transformers_cli, "serve", str(folder), "--continuous-batching", "--device",
                 args.device, "--host", "127.0.0.1", "--port", str(port)],
                "/health", port, str(folder), work / "peer.log", on_gpu))
        except Exception as exc:  # report and keep the rest of the comparison
            log = (work / "peer.log").read_text()[-2000:]
            print(f"peer failed to start: {exc!r}\n{log}", file=sys.stderr)
    # Rounds interleave the three runs so that load from other processes on a shared
    # machine hits them alike, each round in a rotated order so no run always goes first;
    # each row keeps its best round.
    static_command = [sys.executable, __file__, "--static-child", str(folder),
                      "--device", args.device,
                      "--omp-wait-policy", args.omp_wait_policy, "--requests",
                      str(args.requests), "--prompt-tokens", str(args.prompt_tokens),
                      "--new-tokens", str(args.new_tokens)]
    runs = [(server.name, server) for server in servers]
    runs.append((STATIC, None))
    rows: dict[str, dict] = {}
    rounds: list[dict[str, dict]] = []
    try:
        for number in range(args.rounds):
            rounds.append({})
            turn = number % len(runs)
            # Each round's prompts are new: llmcloud-server keeps prompt beginnings, and
            # the same prompts again would be partly served from that cache.
            texts = prompts(args.requests, args.prompt_tokens, batch=number)
            for name, server in runs[turn:] + runs[:turn]:
                rounds[-1][name] = (server.measure(texts, args.new_tokens) if server
                                    else run_static(static_command))
                done = rounds[-1][name]
                print(f"round {number + 1}: {name}: {done['tok_s']:.0f} tok/s, TTFT p50 "
                      f"{done.get('ttft_p50', float('nan')) * 1000:.0f} ms", file=sys.stderr,
                      flush=True)
                keep_best(rows, name, rounds[-1][name])
    finally:
        for server in servers:
            server.stop()
    report(rows, args)
    report_rounds(rounds)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def run_static(command: list[str]) -> dict:
    """One static-batch run in a child process (its own torch, as a server would have)."""
    child = subprocess.run(command, env=ENV, capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def report_rounds(rounds: list[dict[str, dict]]) -> None:
    """The ratios within each round (its three runs ran minutes apart at most, so a slow
    spell of a shared machine hits them alike) and their medians."""
    nan = float("nan")
    print("\nper round (the median of each ratio last):")
    columns = {"tok/s vs peer": [], "tok/s vs static": [], "TTFT p50 vs peer": []}
    for result in rounds:
        ours, peer, static = result[OURS], result.get(PEER, {}), result[STATIC]
        columns["tok/s vs peer"].append(ours["tok_s"] / peer.get("tok_s", nan))
        columns["tok/s vs static"].append(ours["tok_s"] / static["tok_s"])
        columns["TTFT p50 vs peer"].append(ours["ttft_p50"] / peer.get("ttft_p50", nan))
    for label, values in columns.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"  {label:<18} {shown}  median {statistics.median(values):.2f}")


def keep_best(rows: dict[str, dict], name: str, result: dict) -> None:
    if name not in rows or result["tok_s"] > rows[name]["tok_s"]:
        rows[name] = result


def report(rows: dict[str, dict], args) -> None:
    nan = float("nan")
    on_gpu = args.device == "cuda"
    print(f"\n{args.device}, {args.model_size} model, {args.requests} concurrent streams, "
          f"{args.prompt_tokens} prompt tokens, {args.new_tokens} new tokens, torch "
          f"{THREADS} CPU threads, OpenMP waits {args.omp_wait_policy}, best of "
          f"{args.rounds} rounds\n")
    gpu_head, gpu_rule = (" GPU memory |", "-----------:|") if on_gpu else ("", "")
    print(f"| {'run':<26} | tok/s | tok/CPU-s | TTFT p50 | TTFT p90 | ITL p50 | peak RSS |"
          + gpu_head)
    print(f"|{'-' * 28}|------:|----------:|---------:|---------:|--------:|---------:|"
          + gpu_rule)
    for name, r in rows.items():
        def ms(key, r=r):
            return f"{r[key] * 1000:.0f} ms" if key in r else "-"
        per_cpu = r["tokens"] / r["cpu_s"] if r.get("cpu_s") else nan
        gpu = f" {r.get('gpu_mib', nan):6.0f} MiB |" if on_gpu else ""
        print(f"| {name:<26} | {r['tok_s']:5.0f} | {per_cpu:9.0f} | {ms('ttft_p50'):>8} "
              f"| {ms('ttft_p90'):>8} | {ms('itl_p50'):>7} | {r['rss_mib']:5.0f} MiB |" + gpu)
    ours, peer, static = rows[OURS], rows.get(PEER, {}), rows[STATIC]
    print()
    checks = [
        ("tok/s vs peer", ours["tok_s"] / peer.get("tok_s", nan), ">= 1.5"),
        ("tok/s vs static batch", ours["tok_s"] / static["tok_s"], ">= 0.85"),
        ("TTFT p50 vs peer", ours["ttft_p50"] / peer.get("ttft_p50", nan), "<= 0.5"),
        ("peak RSS vs static batch", ours["rss_mib"] / static["rss_mib"], "<= 1.2"),
    ]
    for label, value, goal in checks:
        print(f"{label:<26} {value:6.2f}x  (goal {goal})")


if __name__ == "__main__":
    main()
