"""Gateway overhead: added latency (p50/p99) over calling a replica directly, and requests per
second on tiny responses, for the local provider's gateway and (where installed) nginx as a
reverse proxy to the same replica, measured side by side in one run.

    python bench/gateway_bench.py [--requests 2000] [--seconds 3] [--connections 16] [--json]

The replica is the fake server of the tests (tiny JSON answers, no model), so the numbers are
the proxies' own cost. Everything listens on 127.0.0.1 and stops when the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

ROOT = Path(__file__).resolve().parents[1]
FAKE_SERVER = ROOT / "tests" / "local" / "fake_server.py"
BODY = b'{"prompt": "hi", "max_tokens": 1}'


def _request(key: str | None) -> bytes:
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/completions HTTP/1.1\r\nhost: bench\r\n{auth}content-type: "
            f"application/json\r\ncontent-length: {len(BODY)}\r\n\r\n").encode() + BODY


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("the endpoint closed the connection")
    return data


def _read_response(sock: socket.socket, buffer: bytearray) -> None:
    while b"\r\n\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:80]!r}")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += _recv(sock)
    buffer[:] = rest[length:]


class Target:
    """One keep-alive connection to an endpoint, for sequential latency samples."""

    def __init__(self, name: str, port: int, key: str | None):
        self.name, self.port, self.request = name, port, _request(key)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.samples: list[float] = []

    def call(self) -> None:
        started = time.perf_counter()
        self.sock.sendall(self.request)
        _read_response(self.sock, self.buffer)
        self.samples.append(time.perf_counter() - started)


async def _throughput(port: int, key: str | None, seconds: float, connections: int) -> float:
    request = _request(key)
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - started)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_stack(work: Path):
    """A local-provider stack with one fake replica; yields (gateway port, replica port, key)."""
    sys.path.insert(0, str(ROOT))
    from llmcloud.providers.base import StackContext
    from llmcloud.providers.local.provider import LocalProvider
    from llmcloud.stacks.config import resolve_spec

    model = work / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"bench")
    port = _free_port()
    environ = {**os.environ, "LLMCLOUD_HOME": str(work / "home"),
               "LLMCLOUD_LOCAL_SERVER": f"{sys.executable} {FAKE_SERVER}",
               # the stack stops with this process, even if it is killed
               "LLMCLOUD_LOCAL_OWNER_PID": str(os.getpid())}
    spec = resolve_spec(file_values={}, environ={}, flags={
        "model.source": str(model), "model.name": "bench", "compute.min_replicas": 1,
        "server.port": port, "gateway.rate_limit": 100000, "gateway.burst": 100000})
    provider = LocalProvider()
    ctx = StackContext(project_dir=work, stack="bench", spec=spec, environ=environ, yes=True)
    result = provider.up(ctx)
    try:
        yield port, result["replicas"][0]["port"], result["api_key"]
    finally:
        provider.destroy(ctx)


@contextlib.contextmanager
def nginx(work: Path, upstream: int):
    """nginx as a keep-alive reverse proxy to `upstream`; yields its port, or None."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                        else None)
    if binary is None:
        yield None
        return
    port = _free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  keepalive_requests 1000000;
  upstream replica {{
    server 127.0.0.1:{upstream};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replica;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(work)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def run(requests: int, seconds: float, connections: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="llmcloud-bench-") as folder:
        work = Path(folder)
        with local_stack(work) as (gateway, replica, key), nginx(work, replica) as proxy:
            targets = [Target("direct", replica, None), Target("gateway", gateway, key)]
            if proxy is not None:
                targets.append(Target("nginx", proxy, None))
            for _ in range(200):  # warm up connections, caches and the JIT-less loops
                for target in targets:
                    target.call()
            for target in targets:
                target.samples.clear()
            for _ in range(requests):  # interleaved, so drift hits every target alike
                for target in targets:
                    target.call()
            ports = {"direct": (replica, None), "gateway": (gateway, key), "nginx": (proxy, None)}
            results = {}
            for target in targets:
                port, auth = ports[target.name]
                results[target.name] = {
                    "p50_ms": _percentile(target.samples, 0.50),
                    "p99_ms": _percentile(target.samples, 0.99),
                    "mean_ms": statistics.fmean(target.samples) * 1000,
                    "rps": asyncio.run(_throughput(port, auth, seconds, connections)),
                }
    direct = results["direct"]
    for name in ("gateway", "nginx"):
        if name in results:
            results[name]["added_p50_ms"] = results[name]["p50_ms"] - direct["p50_ms"]
            results[name]["added_p99_ms"] = results[name]["p99_ms"] - direct["p99_ms"]
    if "nginx" in results:
        gw, ng = results["gateway"], results["nginx"]
        # Ratios of whole latencies: nginx's added time is near zero (even negative at
        # p99, within noise), which makes ratios of added time meaningless.
        results["ratios_gateway_to_nginx"] = {
            "p50": gw["p50_ms"] / ng["p50_ms"],
            "p99": gw["p99_ms"] / ng["p99_ms"],
            "rps": gw["rps"] / ng["rps"],
        }
    results["goal_added_p50_ms"] = 2.0
    results["goal_met"] = results["gateway"]["added_p50_ms"] <= 2.0
    results["settings"] = {"requests": requests, "seconds": seconds, "connections": connections,
                           "cpus": os.cpu_count()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="latency samples per target")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput run per target")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on `timeout`
    results = run(args.requests, args.seconds, args.connections)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'target':<10}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'req/s':>9}")
    for name in ("direct", "gateway", "nginx"):
        if name in results:
            r = results[name]
            print(f"{name:<10}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
                  f"{r.get('added_p50_ms', 0):>9.3f}{r.get('added_p99_ms', 0):>9.3f}"
                  f"{r['rps']:>9.0f}")
    if "ratios_gateway_to_nginx" in results:
        ratios = results["ratios_gateway_to_nginx"]
        print("gateway / nginx: p50 x{p50:.2f}, p99 x{p99:.2f}, req/s x{rps:.2f}"
              .format(**ratios))
    else:
        print("nginx is not installed: no reverse-proxy comparison in this run")
    goal = "met" if results["goal_met"] else "NOT met"
    print(f"goal: <= 2 ms added at p50 ({goal})")


if __name__ == "__main__":
    main()
