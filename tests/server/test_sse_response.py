"""`SSEResponse` at the ASGI level (no server): frames that are ready together leave in one body message, and
the loop-lag summary counts the samples of the window asked for."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from starlette.types import Message

from mini._sse import encode_json, encode_text_json
from mini.server.monitor import LoopLagMonitor, StreamGauge
from mini.server.sse import SSEResponse


async def test_frames_ready_together_are_sent_as_one_body_message_in_order() -> None:
    async def frames() -> AsyncGenerator[bytes, None]:
        for i in range(3):  # no await between them: all three are ready at once
            yield f"data: {i}\n\n".encode()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await SSEResponse(frames(), keepalive_s=0).stream_response(send)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert [m["body"] for m in bodies] == [b"data: 0\n\ndata: 1\n\ndata: 2\n\n", b""]
    assert bodies[-1]["more_body"] is False


def test_loop_lag_summary_keeps_only_the_samples_of_the_window(monkeypatch: Any) -> None:
    monitor = LoopLagMonitor(interval=0.01)
    # A late loop samples rarely: 3 samples in the last 10 s, not 1,000; the old one must stay out.
    monitor.samples.extend([(100.0, 900.0), (195.0, 5.0), (199.0, 7.0), (200.0, 1.0)])
    monkeypatch.setattr("mini.server.monitor.time.perf_counter", lambda: 200.0)
    assert monitor.summary(10.0)["samples"] == 3 and monitor.summary(10.0)["max_ms"] == 7.0
    assert monitor.summary()["samples"] == 4


def test_stream_gauge_counts_open_streams_and_their_peak() -> None:
    gauge = StreamGauge()
    for _ in range(3):
        gauge.opened()
    gauge.closed()
    gauge.closed()
    assert gauge.summary() == {"open": 1, "peak": 3}
    assert gauge.summary(last_s=60)["peak"] == 3


def test_token_frames_are_the_bytes_of_the_generic_encoder() -> None:
    for text in ["word", ' a "quoted"\\ line\n\t', "é 😀", "\ud83d", "", "\x00"]:
        assert encode_text_json("text", text, event="token") == encode_json({"text": text}, event="token")
