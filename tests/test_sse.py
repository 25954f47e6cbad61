"""The SSE codec (pure, no event loop): frames, comments, multi-line data, `[DONE]`, and chunks split anywhere."""

from __future__ import annotations

import pytest

from mini._sse import KEEPALIVE, SSEDecoder, SSEEvent, comment, decode, encode, encode_json

STREAM = (
    b": keep-alive\r\n"
    b"event: delta\r\n"
    b'data: {"a":\r\n'
    b"data: 1}\r\n"
    b"\r\n" + 'event: token\ndata: {"text": "caf\u00e9 \u2615"}\n\n'.encode() + b"data: [DONE]\r\r"
)
EXPECTED = [
    SSEEvent('{"a":\n1}', "delta"),
    SSEEvent('{"text": "caf\u00e9 \u2615"}', "token"),
    SSEEvent("[DONE]"),
]


def feed_in_pieces(stream: bytes, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events.extend(decoder.feed(stream[start:end]))
    decoder.close()  # end of stream: an event not ended by a blank line is dropped
    return events


def test_whole_stream_decodes_to_events_and_skips_comments() -> None:
    assert list(decode([STREAM])) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_one_split_anywhere_gives_the_same_events(cut: int) -> None:
    # Every position: inside `\r\n`, inside the multi-byte UTF-8 of "é" and "☕", inside a field name.
    assert feed_in_pieces(STREAM, [cut]) == EXPECTED


def test_byte_by_byte_gives_the_same_events() -> None:
    assert feed_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED


def test_an_event_is_returned_by_the_chunk_that_completes_it() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: a\ndata: 1\n") == []
    assert decoder.feed(b"\n") == [SSEEvent("1", "a")]
    # A lone `\r` ends the line at once (no waiting for a possible `\n`), and a `\n` after it is no blank line.
    assert decoder.feed(b"data: 2\r\r") == [SSEEvent("2")]
    assert decoder.feed(b"\ndata: 3\n") == []
    assert decoder.feed(b"\n") == [SSEEvent("3")]


def test_a_stream_cut_mid_event_drops_that_event() -> None:
    assert list(decode([b"data: 1\n\ndata: 2\n"])) == [SSEEvent("1")]
    assert list(decode([b"data: 1\n\ndata: 2"])) == [SSEEvent("1")]


def test_field_rules() -> None:
    stream = (
        b"data\n\nevent: only\n\nid: 7\ndata:no-space\nretry: 5\nunknown: x\n\n: c\n\ndata:  two spaces\n\n"
    )
    assert list(decode([stream])) == [
        SSEEvent(""),  # `data` without a colon is an empty data line
        SSEEvent("no-space", id="7"),  # an event name without data dispatches nothing and is forgotten
        SSEEvent(" two spaces", id="7"),  # only one space after the colon is dropped; the last id persists
    ]


def test_feed_line_for_transports_that_split_lines() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "event: delta", 'data: {"a":', "data: 1}", "", "data: [DONE]", "", ""]
    events = [e for e in (decoder.feed_line(line + "\n") for line in lines) if e is not None]
    assert events == [SSEEvent('{"a":\n1}', "delta"), SSEEvent("[DONE]")]


@pytest.mark.parametrize(
    "data", ["", "one", "two\nlines", "cr\rand\r\ncrlf", "\n", "trailing\n", ": not a comment", "caf\u00e9"]
)
def test_round_trip(data: str) -> None:
    frame = encode(data, event="message", id="42")
    normalised = data.replace("\r\n", "\n").replace("\r", "\n")
    assert list(decode([frame])) == [SSEEvent(normalised, "message", "42")]


def test_json_frames_are_one_line_and_round_trip() -> None:
    payload = {"text": "line\nbreak\r", "n": 1, "s": "\u00e9\u2028"}
    frame = encode_json(payload, event="token")
    assert frame.count(b"\n") == 3  # event, data, blank
    [event] = decode([frame])
    assert event.event == "token" and event.json() == payload
    assert encode_json([1], event=None) == b"data: [1]\n\n"


def test_a_lone_surrogate_in_a_json_frame_travels_as_an_escape() -> None:
    # It has no UTF-8 form: encoding it raw raised inside the server's stream (a model may split an emoji).
    frame = encode_json({"text": "half \ud83d of an emoji, Zürich"}, event="token")
    frame.decode("utf-8")  # valid UTF-8
    [event] = decode([frame])
    assert event.event == "token" and event.json() == {"text": "half \ud83d of an emoji, Zürich"}


def test_comments_and_keepalive_decode_to_nothing() -> None:
    assert list(decode([KEEPALIVE, comment(), comment("hi"), KEEPALIVE])) == []
    assert comment() == b":\n\n" and comment("ping") == b": ping\n\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb"])
def test_names_ids_and_comments_must_be_one_line(bad: str) -> None:
    with pytest.raises(ValueError):
        encode("x", event=bad)
    with pytest.raises(ValueError):
        encode("x", id=bad)
    with pytest.raises(ValueError):
        encode_json({}, event=bad)
    with pytest.raises(ValueError):
        comment(bad)


def test_many_events_in_one_chunk_and_one_line_in_many_chunks() -> None:
    many = b"".join(encode_json({"i": i}, event="token") for i in range(1000))
    assert [e.json()["i"] for e in decode([many])] == list(range(1000))
    long = encode("x" * 100_000)
    assert list(decode(long[i : i + 7] for i in range(0, len(long), 7))) == [SSEEvent("x" * 100_000)]
