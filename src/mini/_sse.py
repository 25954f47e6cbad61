"""The one server-sent-events codec: encode events, decode a byte stream incrementally. No I/O.

Every SSE producer (the server's streams, the OpenAI-compatible route, the simulated providers) and every
consumer (the provider clients, the tests) goes through here, so framing rules live in one place: a frame is
`event:`/`data:`/`id:` lines ended by a blank line, multi-line data is split over several `data:` lines,
lines starting with `:` are comments (used as keep-alives), and `\\r\\n`, `\\r` and `\\n` all end a line
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_escape = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept (the C version)

# Sent after this many seconds without an event, so proxies and load balancers that cut idle connections
# (nginx's proxy_read_timeout defaults to 60 s, many LBs to 30-60 s) keep a long generation open.
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One decoded event. `event` is None when the frame named none (the spec's default, "message")."""

    data: str
    event: str | None = None
    id: str | None = None

    def json(self) -> Any:
        """The data parsed as JSON (every producer of ours sends JSON, except OpenAI's `[DONE]`)."""
        return json.loads(self.data)


def encode(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One frame. Newlines inside `data` become several `data:` lines, which a decoder joins back."""
    lines = []
    if event is not None:
        lines.append(f"event: {_one_line(event)}")
    if id is not None:
        lines.append(f"id: {_one_line(id)}")
    lines.extend(f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


# What `json.dumps(payload, ensure_ascii=..., default=str)` would build, made once: `dumps` with any option
# constructs a new encoder per call, and this runs once a token.
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)
_JSON_ASCII = json.JSONEncoder(ensure_ascii=True, default=str)


def encode_json(payload: Any, *, event: str | None = None) -> bytes:
    """One frame whose data is `payload` as compact JSON (non-ASCII kept, unknown types via `str`)."""
    # JSON escapes every control character, so the data is one line: no splitting (this runs once a token).
    data = _JSON.encode(payload)
    head = "" if event is None else f"event: {_one_line(event)}\n"
    try:
        return f"{head}data: {data}\n\n".encode()
    except UnicodeEncodeError:
        # A lone surrogate (a model's half of an emoji, say) has no UTF-8 form; as a JSON escape it travels,
        # and the client's parser decides. Only then: escaping everything makes every frame larger.
        data = _JSON_ASCII.encode(payload)
        return f"{head}data: {data}\n\n".encode()


def encode_text_json(key: str, text: str, *, event: str | None = None) -> bytes:
    """`encode_json({key: text}, event=event)`, the same bytes, without the generic encoder: the shape of a
    streamed token, so the per-token cost is one string escape (measured at 1,000 streams: the encoder's
    call overhead was most of the frame's cost)."""
    head = "" if event is None else f"event: {_one_line(event)}\n"
    try:
        return f"{head}data: {{{_escape(key)}: {_escape(text)}}}\n\n".encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, as encode_json does
        return encode_json({key: text}, event=event)


def comment(text: str = "") -> bytes:
    """A comment frame: ignored by every client, used as a keep-alive."""
    return f": {_one_line(text)}\n\n".encode() if text else b":\n\n"


def _one_line(value: str) -> str:
    # A line break here would end the field early and turn the rest into a field of its own.
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE event name, id or comment is one line: {value!r}")
    return value


class SSEDecoder:
    """Incremental decoder: `feed(bytes)` returns the events completed by that chunk, in order.

    Chunks may split anywhere, even inside a UTF-8 character or between `\\r` and `\\n`; `feed_line` takes
    one already-split text line (for transports that hand out lines).
    """

    def __init__(self) -> None:
        # The unfinished last line, in pieces: joined once its end arrives, so a long line sent in many small
        # chunks costs linear time, not quadratic.
        self._pending: list[bytes] = []
        # The last chunk ended with `\r`: that ended a line at once (no waiting), and a `\n` opening the next
        # chunk is the second half of that `\r\n`, not another (blank) line.
        self._skip_lf = False
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            if chunk:
                self._pending.append(chunk)
            return []
        buffer = b"".join((*self._pending, chunk)) if self._pending else chunk
        self._pending = []
        if b"\r" in buffer:
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        complete, _, rest = buffer.rpartition(b"\n")
        if rest:
            self._pending.append(rest)
        events: list[SSEEvent] = []
        # Whole lines only: a UTF-8 character split between chunks is decoded once both halves are here.
        for line in complete.decode("utf-8", "replace").split("\n"):
            event = self.feed_line(line)
            if event is not None:
                events.append(event)
        return events

    def feed_line(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None

    def close(self) -> None:
        """End of stream; the decoder is empty again. Nothing is left to dispatch: an event not ended by a blank
        line is discarded (the spec's rule: the stream was cut mid-event), and every complete line was handled
        as it arrived."""
        self._pending, self._skip_lf = [], False
        self._data, self._event = [], None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = None
            return None
        event = SSEEvent("\n".join(self._data), self._event, self._id)
        self._data, self._event = [], None
        return event


def decode(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """All events of a finished byte stream (tests, and clients that read a whole body)."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
