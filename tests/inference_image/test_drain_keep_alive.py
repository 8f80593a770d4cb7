"""A drain closes the connections a pool in front keeps: a layer-4 balancer (Azure's) keeps
sending on them after its probe marks the server down, and each such request would be refused
as "draining" instead of going to a ready server."""

from __future__ import annotations

import json
import signal
import socket
import time

from server_process import ServerProcess


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _idle_keep_alive_connection(port: int) -> socket.socket:
    """A connection that has had one answer and stays open, as a client's pool holds it."""
    sock = _connect(port)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.rstrip().endswith(b"}"):
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200")
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_drain_closes_idle_kept_connections_at_once(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--drain-timeout", "10").wait_ready()
    try:
        # a request whose body is still on its way: the drain waits for it, seconds on end
        body = json.dumps({"prompt": "hi", "max_tokens": 2}).encode()
        slow = _connect(server.port)
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body[:5])
        kept = _idle_keep_alive_connection(server.port)
        time.sleep(0.3)  # the slow request is being read
        server.proc.send_signal(signal.SIGTERM)
        begun = time.monotonic()
        assert _closed_within(kept, 4), "an idle kept connection stayed open in the drain"
        assert time.monotonic() - begun < 4
        assert server.proc.poll() is None  # still draining: the slow request holds it
        # the request that was being read when the drain began is still answered, and its
        # connection is closed after the answer rather than kept
        slow.sendall(body[5:])
        answer = b""
        slow.settimeout(30)
        while chunk := slow.recv(65536):
            answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200") and b"connection: close" in head
        assert server.wait_exit(30) == 0
    finally:
        server.stop()
