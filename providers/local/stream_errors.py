"""Whether a replica's event stream says its generation failed on the server's side.

The runtime answers a stream 200 at its headers; when generation fails after that it ends
the stream with an error event, then `data: [DONE]`:

- `/v1/chat/completions`, `/v1/completions` (`inference_image/serving.py`, `stream_sse`):
  `data: {"error": {"message": ..., "type": "server_error", ...}}` for a 500 or a 503 (an
  engine abort, a drain that ran out), `"type": "rate_limit_error"` for a 429;
- `/v1/responses` (`inference_image/responses_api.py`, `stream`): `event: error`, then
  `response.failed`, whose response carries `"error": {"code": "server_error", ...}`
  (`"rate_limit_exceeded"` for a 429).

The runtime writes each event with `json.dumps`'s default separators, and every string the
model wrote (content, reasoning, a call's arguments) is JSON-quoted inside it, its quotes
escaped: the signs below cannot occur in an answer's own text. The gateway looks for them in
the bytes it forwards, without holding or parsing any event; an event split across chunks
is found by keeping the last few bytes of the chunk before.
"""

from __future__ import annotations

#: the server's failure as the runtime's streams say it (a 429 is not one)
SIGNS = (b'"type": "server_error"', b'"error": {"code": "server_error"')
_KEEP = max(len(sign) for sign in SIGNS) - 1


class ServerErrorEvents:
    """Fed a stream's chunks in order (`feed`), tells when a server-error event went by."""

    def __init__(self) -> None:
        self._tail = b""  # the last bytes of the chunks so far, for a sign split between two
        self.seen = False

    def feed(self, chunk: bytes) -> bool:
        """True for the chunk in which the stream's first server-error event shows (its
        sign's last byte); False for every other chunk, before and after."""
        if self.seen or not chunk:
            return False
        seam = self._tail + chunk[:_KEEP]
        self.seen = any(sign in seam or sign in chunk for sign in SIGNS)
        self._tail = chunk[-_KEEP:] if len(chunk) >= _KEEP else (self._tail + chunk)[-_KEEP:]
        return self.seen
