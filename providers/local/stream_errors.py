"""Whether a replica's event stream says its generation failed on the server's side.

The runtime answers a stream 200 at its headers; when generation fails after that it ends
the stream with an error event, then `data: [DONE]`:

- `/v1/chat/completions`, `/v1/completions` (`inference_image/serving.py`, `stream_sse`):
  `data: {"error": {"message": ..., "type": "server_error", ...}}` for a 500 or a 503 (an
  engine abort, a drain that ran out), `"type": "rate_limit_error"` for a 429;
- `/v1/responses` (`inference_image/responses_api.py`, `stream`): `event: error`, then
  `event: response.failed`, whose response carries `"error": {"code": "server_error", ...}`
  (`"rate_limit_exceeded"` for a 429) before anything else of its own.

Only those two events are judged, by their head: every other event may hold the sign's
text. The Responses API's events echo what the client sent as JSON objects (`metadata`,
`tools`' parameter schemas, `text.format`'s schema), so `"metadata": {"type":
"server_error"}` is no failure. Inside the two events every string is the runtime's own
`json.dumps` (default separators), its quotes escaped, and no raw newline: an event ends
at the first blank line, and the first `"type": "` (chat) or `"error": ` (responses) after
its head is the failure's own. The gateway scans the bytes it forwards without holding an
event or parsing JSON; a head, a mark or a verdict split across chunks, however small, is
found by carrying the few bytes it may continue from.
"""

from __future__ import annotations

_END = b"\n\n"
# (the head an event starts with, the mark after it whose next bytes say what failed,
#  those bytes when the server failed); a head's blank line is the event before's end
_FAILURES = (
    (b'\n\ndata: {"error": {', b'"type": "', b'server_error"'),
    (b'\n\nevent: response.failed\ndata: {', b'"error": ', b'{"code": "server_error"'),
)
_HEAD_CARRY = max(len(head) for head, _, _ in _FAILURES) - 1


class ServerErrorEvents:
    """Fed a stream's chunks in order (`feed`), tells when a server-error event went by."""

    def __init__(self) -> None:
        self._carry = _END  # the stream's first event follows no blank line: as if it did
        self._failure: tuple[bytes, bytes, bytes] | None = None  # the error event we are in
        self.seen = False

    def feed(self, chunk: bytes) -> bool:
        """True for the chunk in which the stream's first server-error event shows (the last
        byte of what says so); False for every other chunk, before and after."""
        if self.seen or not chunk:
            return False
        self.seen = self._scan(self._carry + chunk)
        return self.seen

    def _scan(self, text: bytes) -> bool:
        at = 0
        while True:
            if self._failure is None:
                found = [(i, failure) for failure in _FAILURES
                         if (i := text.find(failure[0], at)) >= 0]
                if not found:
                    self._carry = text[max(at, len(text) - _HEAD_CARRY):]
                    return False
                start, self._failure = min(found, key=lambda pair: pair[0])
                at = start + len(self._failure[0])
                continue
            _, mark, verdict = self._failure
            where, end = text.find(mark, at), text.find(_END, at)
            if end >= 0 and (where < 0 or end < where):
                self._failure, at = None, end  # the event ended saying nothing: no failure
                continue
            if where < 0:
                self._carry = text[max(at, len(text) - len(mark) + 1):]
                return False
            said = where + len(mark)
            if len(text) - said < len(verdict):
                self._carry = text[where:]  # the mark, and the verdict's first bytes
                return False
            if text.startswith(verdict, said):
                return True
            self._failure, at = None, said  # a 429, or another kind of error
