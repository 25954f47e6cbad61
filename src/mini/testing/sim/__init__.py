"""A simulated LLM provider (OpenAI, Anthropic and Bedrock wire formats) for tests and benchmarks.

One process (`python -m mini.testing.sim`, or `SimServer` from a test) serves three wire formats on their own
paths: OpenAI (`/v1/chat/completions`, `/v1/embeddings`), Anthropic Messages (`/v1/messages`) and AWS Bedrock
Converse (`/model/{id}/converse[-stream]`). They share the settings, the fault injection (auth, 429 fraction,
a max-in-flight cap answered with 429 + Retry-After, 5xx fraction, slow responses, mid-stream disconnects),
the deterministic answers (also to `mini.eval`'s judge prompts), the scripted replies and the statistics
(`GET /stats`; `GET /arrivals`: every request's arrival, endpoint, status and retry count; `GET /gone`: when
clients went away mid-response; `GET /requests`: the path, query and headers of each request;
`GET /wait`: block until counters reach given values).

Modules: `core` (settings, state, faults, errors), `answers` (what the model says), one per wire format
(`openai`, `anthropic`, `bedrock`), `app` (the ASGI app and command line) and `launcher` (`SimServer`).
"""

from __future__ import annotations

from mini.testing.sim.answers import answer_for, embed_text, judge_reply, relevance_score
from mini.testing.sim.core import SimConfig, max_in_window
from mini.testing.sim.launcher import SimServer

__all__ = [
    "SimConfig",
    "SimServer",
    "answer_for",
    "embed_text",
    "judge_reply",
    "max_in_window",
    "relevance_score",
]
