"""SIGUSR1: leave the balancer, then drain. A reclaimed spot VM (or a preempted one) is not
drained by its balancer first: readiness turns 503 at once so that the balancer's checks
fail, but new requests are still served until it stops sending them; only then does the
drain refuse them. SIGTERM keeps its meaning, and ends a leave early."""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx
from server_process import ServerProcess


def _ready(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.url}/health/ready", timeout=5)


def _complete(server: ServerProcess) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/completions",
                      json={"prompt": "hi", "max_tokens": 2}, timeout=30)


def _wait_for_status(server: ServerProcess, status: str, timeout: float) -> float:
    """Seconds until readiness reports `status`."""
    begun = time.monotonic()
    while time.monotonic() - begun < timeout:
        if _ready(server).json() == {"status": status}:
            return time.monotonic() - begun
        time.sleep(0.05)
    raise AssertionError(f"readiness never said {status!r} in {timeout}s")


def _slow_request(port: int) -> tuple[socket.socket, bytes]:
    """A request whose body is still on its way: a drain waits for it (and its rest)."""
    body = json.dumps({"prompt": "hi", "max_tokens": 2}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body[:5])
    return sock, body[5:]


def _answer(sock: socket.socket, rest: bytes) -> bytes:
    sock.sendall(rest)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_a_leave_serves_new_requests_with_readiness_503_then_drains(causal_dir):
    # what a boot script does on a spot reclaim: SIGUSR1, a wait as long as the leave,
    # then `docker stop` (SIGTERM)
    server = ServerProcess("--model", str(causal_dir), "--leave-seconds", "2",
                           "--drain-timeout", "30").wait_ready()
    try:
        slow, rest = _slow_request(server.port)  # in flight: it holds the drain open
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGUSR1)
        begun = time.monotonic()
        _wait_for_status(server, "leaving", 1.5)
        assert _ready(server).status_code == 503
        # the balancer has not stopped sending yet: what it sends is still answered
        served = _complete(server)
        assert served.status_code == 200, served.text
        assert httpx.get(f"{server.url}/health/live", timeout=5).status_code == 200
        assert time.monotonic() - begun < 2  # (all of it within the leave)
        # then the drain, as on SIGTERM: new requests refused
        _wait_for_status(server, "draining", 10)
        assert time.monotonic() - begun >= 1.9
        refused = _complete(server)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        # the stop that follows is the first stop, not a second signal that would end the
        # requests still in flight at once
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.proc.poll() is None, "the stop cut the drain short"
        assert _answer(slow, rest).startswith(b"HTTP/1.1 200")
        assert server.wait_exit(30) == 0
    finally:
        server.stop()


def test_sigterm_ends_a_leave_with_the_drain_at_once(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--leave-seconds", "60",
                           "--drain-timeout", "30").wait_ready()
    try:
        slow, rest = _slow_request(server.port)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGUSR1)
        _wait_for_status(server, "leaving", 1.5)
        server.proc.send_signal(signal.SIGTERM)
        _wait_for_status(server, "draining", 1.5)
        assert _complete(server).status_code == 503
        assert _answer(slow, rest).startswith(b"HTTP/1.1 200")
        assert server.wait_exit(15) == 0
    finally:
        server.stop()
